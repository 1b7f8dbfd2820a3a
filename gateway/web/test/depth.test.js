import assert from "node:assert/strict";
import { test } from "node:test";

import { cumulative, depthGeometry } from "../static/assets/js/state/depth.js";

test("cumulative totals are exact decimal sums, best level first", () => {
  assert.deepEqual(cumulative([["100", "0.1"], ["99", "0.2"], ["98", "0.7"]]),
    [["100", "0.1", "0.1"], ["99", "0.2", "0.3"], ["98", "0.7", "1.0"]]);
  assert.deepEqual(cumulative([]), []);
});

test("the depth picture: steps outwards from the mid price, both sides to one scale", () => {
  const book = { bids: [["99", "1"], ["98", "2"]], asks: [["101", "0.5"], ["104", "1.5"]] };
  const g = depthGeometry(book, 200, 100);
  // mid 100; the asks reach farther (104), so the axis is 96..104
  assert.deepEqual([g.low, g.mid, g.high, g.total], [96, 100, 104, "3"]);
  const x = (p) => ((p - 96) / 8) * 200;
  const y = (q) => 100 - (q / 3) * 100;
  assert.deepEqual(g.bids, [[x(99), 100], [x(99), y(0)], [x(99), y(1)], [x(98), y(1)], [x(98), y(3)], [0, y(3)], [0, 100]]);
  assert.deepEqual(g.asks, [[x(101), 100], [x(101), y(0)], [x(101), y(0.5)], [x(104), y(0.5)], [x(104), y(2)], [200, y(2)], [200, 100]]);
  for (const [px, py] of [...g.bids, ...g.asks]) assert.ok(px >= 0 && px <= 200 && py >= 0 && py <= 100);
});

test("no picture while a side is empty or the box has no size", () => {
  assert.equal(depthGeometry({ bids: [], asks: [["1", "1"]] }, 100, 100), null);
  assert.equal(depthGeometry({ bids: [["1", "1"]], asks: [["2", "1"]] }, 0, 100), null);
  assert.equal(depthGeometry(null, 100, 100), null);
});
