import assert from "node:assert/strict";
import { test } from "node:test";

import {
  barsToShow, bucketTime, fillMarkers, historyPath, INTERVALS, intervalSeconds, isInterval, orderLines, prependOlder,
  volumePoint,
} from "../static/assets/js/state/candles.js";

const candle = (start, open = "1", close = "2") => ({ symbol: "BTCUSDT", interval: "1m", start, open, high: "3", low: "0.5", close, volume: "1.5", trade_count: 0, closed: true });

test("the picker offers the API's intervals, shortest first", () => {
  assert.deepEqual(INTERVALS.map((i) => i.id), ["1m", "5m", "15m", "1h", "4h", "1d"]);
  assert.equal(intervalSeconds("4h"), 14400);
  assert.ok(isInterval("15m") && !isInterval("2m"));
  assert.throws(() => intervalSeconds("2m"), RangeError);
});

test("an instant falls in the bucket of its interval, by UTC epoch", () => {
  const ts = "2026-12-03T11:07:31Z";
  assert.equal(bucketTime(ts, "1m"), Date.UTC(2026, 11, 3, 11, 7) / 1000);
  assert.equal(bucketTime(ts, "15m"), Date.UTC(2026, 11, 3, 11, 0) / 1000);
  assert.equal(bucketTime(ts, "4h"), Date.UTC(2026, 11, 3, 8, 0) / 1000);
  assert.equal(bucketTime(Date.parse(ts), "1d"), Date.UTC(2026, 11, 3) / 1000);
});

test("volume bars take the candle's direction", () => {
  assert.deepEqual(volumePoint(candle("2026-12-03T11:07:00Z", "1", "2")),
    { time: Date.UTC(2026, 11, 3, 11, 7) / 1000, value: 1.5, color: "rgba(46, 160, 67, 0.45)" });
  assert.equal(volumePoint(candle("2026-12-03T11:07:00Z", "2", "1")).color, "rgba(218, 54, 51, 0.45)");
});

test("history pages go back with end_time and never overlap", () => {
  assert.equal(historyPath("BTCUSDT", "5m", 500), "/api/markets/BTCUSDT/candles?interval=5m&limit=500");
  assert.equal(historyPath("BTCUSDT", "1h", 100, "2026-12-03T10:00:00+00:00"),
    "/api/markets/BTCUSDT/candles?interval=1h&limit=100&end_time=2026-12-03T10%3A00%3A00%2B00%3A00");
  const held = [candle("2026-12-03T11:02:00Z"), candle("2026-12-03T11:03:00Z")];
  const older = [candle("2026-12-03T11:01:00Z"), candle("2026-12-03T11:00:00Z"), candle("2026-12-03T11:02:00Z")];
  const merged = prependOlder(held, older);
  assert.equal(merged.added, 2);
  assert.deepEqual(merged.candles.map((c) => c.start.slice(11, 16)), ["11:00", "11:01", "11:02", "11:03"]);
  assert.equal(prependOlder(held, []).added, 0);
});

test("fills become markers at their candle: one per side and candle, sorted, other symbols left out", () => {
  const fill = (id, side, ts, symbol = "BTCUSDT") => ({ trade_id: id, symbol, side, price: "65000", quantity: "0.01", ts });
  const markers = fillMarkers([
    fill("3", "SELL", "2026-12-03T11:07:50Z"),
    fill("1", "BUY", "2026-12-03T11:07:10Z"),
    fill("2", "BUY", "2026-12-03T11:07:40Z"),
    fill("4", "BUY", "2026-12-03T11:05:00Z"),
    fill("5", "BUY", "2026-12-03T11:06:00Z", "ETHUSDT"),
  ], "BTCUSDT", "1m");
  const minute = (m) => Date.UTC(2026, 11, 3, 11, m) / 1000;
  assert.deepEqual(markers.map((m) => [m.time, m.text, m.position, m.shape]), [
    [minute(5), "B", "belowBar", "arrowUp"],
    [minute(7), "B×2", "belowBar", "arrowUp"],
    [minute(7), "S", "aboveBar", "arrowDown"],
  ]);
  assert.equal(fillMarkers([fill("1", "BUY", "2026-12-03T11:07:10Z"), fill("2", "BUY", "2026-12-03T11:59:00Z")], "BTCUSDT", "1h").length, 1);
});

test("open orders become price lines: the limit price, and the stop price while it waits", () => {
  const order = (id, extra) => ({ order_id: id, symbol: "BTCUSDT", side: "BUY", quantity: "0.5", price: null, stop_price: null, ...extra });
  const lines = orderLines([
    order("a", { price: "64000.5" }),
    order("b", { side: "SELL", price: "66000", stop_price: "65500", type: "STOP_LOSS_LIMIT" }),
    order("c", { stop_price: "67000", triggered_at: "2026-12-03T11:00:00Z" }),
    order("d", { symbol: "ETHUSDT", price: "3000" }),
  ], "BTCUSDT");
  assert.deepEqual(lines.map((l) => [l.key, l.price, l.title, Boolean(l.dashed)]), [
    ["a:price:64000.5", 64000.5, "BUY 0.5", false],
    ["b:price:66000", 66000, "SELL 0.5", false],
    ["b:stop:65500", 65500, "SELL stop", true],
  ]);
});

test("the first screen shows as many bars as fit, at least ten", () => {
  assert.equal(barsToShow(700, 500), 100);
  assert.equal(barsToShow(330, 500), 47);
  assert.equal(barsToShow(700, 30), 30);
  assert.equal(barsToShow(20, 500), 10);
});
