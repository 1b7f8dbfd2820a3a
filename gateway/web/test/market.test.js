import assert from "node:assert/strict";
import { test } from "node:test";

import { chartPoint, chartSeries } from "../static/assets/js/state/candles.js";
import { barPercent, largestQuantity, pushTrade, spread } from "../static/assets/js/state/market.js";

test("the spread is exact", () => {
  assert.equal(spread({ symbol: "BTCUSDT", asks: [["60000.03", "1"]], bids: [["59999.9", "2"]] }), "0.13");
  assert.equal(spread({ symbol: "BTCUSDT", asks: [], bids: [["1", "1"]] }), null);
});

test("ladder bars are relative to the largest level", () => {
  const levels = [["1", "0.5"], ["2", "2.00"], ["3", "1"]];
  assert.equal(largestQuantity(levels), "2.00");
  assert.equal(largestQuantity([]), null);
  assert.equal(barPercent("1", "2.00"), 50);
  assert.equal(barPercent("1", null), 0);
});

test("market trades: newest first, no duplicates, bounded", () => {
  let trades = [];
  for (const id of ["a", "b", "b", "c"]) trades = pushTrade(trades, { trade_id: id }, 2);
  assert.deepEqual(trades.map((t) => t.trade_id), ["c", "b"]);
});

test("candles become chart points by their start, one per minute", () => {
  const candle = (start, close) => ({ symbol: "BTCUSDT", interval: "1m", start, open: "1", high: "3", low: "0.5", close, volume: "0", trade_count: 0, closed: false });
  assert.deepEqual(chartPoint(candle("2024-05-01T10:01:00+00:00", "2.5")),
    { time: Date.UTC(2024, 4, 1, 10, 1) / 1000, open: 1, high: 3, low: 0.5, close: 2.5 });
  const series = chartSeries([candle("2024-05-01T10:02:00Z", "2"), candle("2024-05-01T10:01:00Z", "1"), candle("2024-05-01T10:02:00Z", "2.2")]);
  assert.deepEqual(series.map((p) => p.close), [1, 2.2]);
});
