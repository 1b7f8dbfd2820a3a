import assert from "node:assert/strict";
import { test } from "node:test";

import { equityCurve, extent, historyPath, nextDay, pnlBars, rangeError } from "../static/assets/js/state/account.js";

const point = (ts, equity, reason = "interval") => ({ ts, equity, reason, unpriced: [] });

test("extent compares decimal strings exactly, not as floats", () => {
  assert.deepEqual(extent(["10000.000000000000000001", "10000", "9999.99"]), { lo: "9999.99", hi: "10000.000000000000000001" });
  assert.deepEqual(extent([]), { lo: null, hi: null });
});

test("the equity curve spans the box by time and value; the change is exact", () => {
  const curve = equityCurve([
    point("2026-12-03T10:00:00Z", "10000"),
    point("2026-12-03T10:05:00Z", "10050.5", "fill"),
    point("2026-12-03T10:10:00Z", "9990.25"),
  ], 100, 50, 0);
  const [first, mid, last] = curve.d.split(" L").map((p) => p.replace("M", "").split(" ").map(Number));
  assert.deepEqual([first[0], mid[0], last[0]], [0, 50, 100]);
  assert.equal(mid[1], 0); // the high at the top
  assert.equal(last[1], 50); // the low at the bottom
  assert.ok(first[1] > 0 && first[1] < 50);
  assert.equal(curve.change, "-9.75");
  assert.equal(curve.first, "10000");
  assert.equal(curve.last, "9990.25");
  assert.deepEqual([curve.lo, curve.hi], ["9990.25", "10050.5"]);
  assert.equal(equityCurve([], 100, 50), null);
});

test("a single point or a flat curve sits in the middle", () => {
  assert.equal(equityCurve([point("2026-12-03T10:00:00Z", "5")], 100, 50, 0).d, "M50.0 25.0");
  const flat = equityCurve([point("2026-12-03T10:00:00Z", "5"), point("2026-12-03T10:01:00Z", "5.0")], 100, 50, 0);
  assert.equal(flat.d, "M0.0 25.0 L100.0 25.0");
  assert.equal(flat.change, "0.0");
});

test("PnL bars stand on a zero line: gains above, losses below", () => {
  const { zero, bars } = pnlBars([
    { day: "2026-12-01", realized_pnl: "30", fees: "1", trades: 2 },
    { day: "2026-12-02", realized_pnl: "-10", fees: "1", trades: 1 },
  ], 200, 40, 0);
  assert.equal(zero, 30); // 30 of the 40 range above zero
  assert.equal(bars[0].sign, 1);
  assert.equal(bars[0].y + bars[0].h, zero);
  assert.equal(bars[1].sign, -1);
  assert.equal(bars[1].y, zero);
  assert.equal(bars[1].h, 10);
  assert.ok(bars[0].x < bars[1].x);
  assert.deepEqual(pnlBars([], 200, 40).bars, []);
});

test("history requests carry the filters; the end day is inclusive (until = the next day, UTC)", () => {
  assert.equal(historyPath("orders", { mode: "paper", symbol: "BTCUSDT", side: "BUY", status: "FILLED", from: "2026-12-01", to: "2026-12-31" }),
    "/api/history/orders?mode=paper&symbol=BTCUSDT&side=BUY&status=FILLED&since=2026-12-01T00%3A00%3A00Z&until=2027-01-01T00%3A00%3A00Z&limit=20");
  // trades have no status; the export is the same page as CSV
  assert.equal(historyPath("trades", { status: "FILLED" }, { cursor: "42", limit: 5, format: "csv" }),
    "/api/history/trades?limit=5&cursor=42&format=csv");
  assert.equal(nextDay("2028-02-28"), "2028-02-29");
  assert.equal(rangeError({ from: "2026-12-02", to: "2026-12-01" }), "The start date is after the end date.");
  assert.equal(rangeError({ from: "2026-12-01", to: "2026-12-01" }), null);
});
