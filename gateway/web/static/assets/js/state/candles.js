// Candles as `GET /api/markets/{symbol}/candles` and `CANDLE` events send them (`{start, open, high, low,
// close, volume, ...}`, amounts as decimal strings) turned into the chart library's points, and what the chart
// draws over them: the user's fills (markers) and open orders (price lines). The library draws numbers: this is
// the one place amounts become floats, for plotting only.

/** The chart's intervals (the API's), with their length in seconds and a label for the picker. */
export const INTERVALS = [
  { id: "1m", seconds: 60, label: "1 minute" },
  { id: "5m", seconds: 300, label: "5 minutes" },
  { id: "15m", seconds: 900, label: "15 minutes" },
  { id: "1h", seconds: 3600, label: "1 hour" },
  { id: "4h", seconds: 14400, label: "4 hours" },
  { id: "1d", seconds: 86400, label: "1 day" },
];
export const DEFAULT_INTERVAL = "1m";
export const UP = "#2ea043";
export const DOWN = "#da3633";
const UP_VOLUME = "rgba(46, 160, 67, 0.45)";
const DOWN_VOLUME = "rgba(218, 54, 51, 0.45)";

/** Whether `id` is one of the chart's intervals. */
export function isInterval(id) {
  return INTERVALS.some((i) => i.id === id);
}

/** The length of an interval in seconds. */
export function intervalSeconds(id) {
  const found = INTERVALS.find((i) => i.id === id);
  if (!found) throw new RangeError(`unknown interval ${id}`);
  return found.seconds;
}

/** Epoch seconds of the start of the bucket of `interval` holding the instant `ts` (ISO string or ms). */
export function bucketTime(ts, interval) {
  const ms = typeof ts === "number" ? ts : Date.parse(ts);
  const seconds = intervalSeconds(interval);
  return Math.floor(ms / 1000 / seconds) * seconds;
}

/** A chart point `{time (epoch seconds), open, high, low, close}`. */
export function chartPoint(candle) {
  return {
    time: Math.floor(Date.parse(candle.start) / 1000),
    open: Number(candle.open),
    high: Number(candle.high),
    low: Number(candle.low),
    close: Number(candle.close),
  };
}

/** The volume bar of a candle, coloured as the candle (up when it closed at or above its open). */
export function volumePoint(candle) {
  const up = Number(candle.close) >= Number(candle.open);
  return { time: Math.floor(Date.parse(candle.start) / 1000), value: Number(candle.volume ?? 0), color: up ? UP_VOLUME : DOWN_VOLUME };
}

/** Candles by start time, one per time (the later candle of a bucket wins: it is the more complete one). */
export function byTime(candles) {
  const map = new Map();
  for (const c of candles) map.set(Math.floor(Date.parse(c.start) / 1000), c);
  return [...map.entries()].sort((a, b) => a[0] - b[0]).map(([, c]) => c);
}

/** Points by time, one per time. */
export function chartSeries(candles) {
  return byTime(candles).map(chartPoint);
}

/**
 * The request for a page of history: the latest `limit` candles, or (`before`: the oldest candle shown) the
 * `limit` before it. The API pages with `end_time` (exclusive), so pages never overlap.
 */
export function historyPath(symbol, interval, limit, before = null) {
  const query = new URLSearchParams({ interval, limit: String(limit) });
  if (before) query.set("end_time", before);
  return `/api/markets/${encodeURIComponent(symbol)}/candles?${query}`;
}

/** Older candles put in front of the ones held (duplicates dropped): the merged list and how many were new. */
export function prependOlder(held, older) {
  const first = held.length ? Date.parse(held[0].start) : Infinity;
  const added = byTime(older.filter((c) => Date.parse(c.start) < first));
  return { candles: [...added, ...held], added: added.length };
}

/**
 * Markers for the user's fills of `symbol` (`GET /api/trades`, `TRADE` events): each at its candle and its own
 * price, a B or S in the side's colour; several fills of one side in one candle are one marker (their count in
 * the text). Sorted by time, as the library wants them.
 */
export function fillMarkers(fills, symbol, interval) {
  const groups = new Map();
  for (const f of fills) {
    if (f.symbol !== symbol) continue;
    const time = bucketTime(f.ts, interval);
    const key = `${time}:${f.side}`;
    const group = groups.get(key);
    if (group) {
      group.count += 1;
      group.last = f;
    } else {
      groups.set(key, { time, side: f.side, count: 1, last: f });
    }
  }
  return [...groups.values()]
    .sort((a, b) => a.time - b.time || a.side.localeCompare(b.side))
    .map((g) => ({
      time: g.time,
      position: g.side === "BUY" ? "belowBar" : "aboveBar",
      shape: g.side === "BUY" ? "arrowUp" : "arrowDown",
      color: g.side === "BUY" ? UP : DOWN,
      text: `${g.side === "BUY" ? "B" : "S"}${g.count > 1 ? `×${g.count}` : ""}`,
      id: g.last.trade_id,
    }));
}

/**
 * Price lines for the user's open orders of `symbol`: the limit price of priced orders and the stop price of
 * stop orders waiting for their trigger, titled with side and what the line is. Keyed so a redraw can keep lines
 * that did not change.
 */
export function orderLines(orders, symbol) {
  const lines = [];
  for (const o of orders) {
    if (o.symbol !== symbol) continue;
    const color = o.side === "BUY" ? UP : DOWN;
    if (o.price !== null && o.price !== undefined) {
      lines.push({ key: `${o.order_id}:price:${o.price}`, price: Number(o.price), color, title: `${o.side} ${o.quantity}` });
    }
    if (o.stop_price !== null && o.stop_price !== undefined && !o.triggered_at) {
      lines.push({ key: `${o.order_id}:stop:${o.stop_price}`, price: Number(o.stop_price), color, title: `${o.side} stop`, dashed: true });
    }
  }
  return lines;
}

/** How many bars fit a chart `width` pixels wide at a readable bar spacing, within what there is. */
export function barsToShow(width, available, spacing = 7) {
  return Math.max(10, Math.min(available, Math.floor(width / spacing)));
}
