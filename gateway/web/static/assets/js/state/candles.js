// Candles as `GET /api/markets/{symbol}/candles` and `CANDLE` events send them (`{start, open, high, low,
// close, ...}`, amounts as decimal strings) turned into the chart library's points. The library draws
// numbers: this is the one place amounts become floats, for plotting only.

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

/** Points by time, one per time (the later candle of a minute wins: it is the more complete one). */
export function chartSeries(candles) {
  const byTime = new Map();
  for (const c of candles) {
    const p = chartPoint(c);
    byTime.set(p.time, p);
  }
  return [...byTime.values()].sort((a, b) => a.time - b.time);
}
