// The account page's pictures and history, without a page: the equity curve's and the daily PnL bars'
// geometry (pixels only; every amount shown stays the API's exact string), and the history requests
// (`GET /api/history/orders|trades` with filters, paging and `format=csv`).

import * as dec from "../decimal.js";

/** The lowest and highest of decimal strings, compared exactly. */
export function extent(values) {
  let lo = null;
  let hi = null;
  for (const v of values) {
    if (lo === null || dec.cmp(v, lo) < 0) lo = v;
    if (hi === null || dec.cmp(v, hi) > 0) hi = v;
  }
  return { lo, hi };
}

/**
 * The equity curve in a `width` x `height` box: `{d, first, last, change, lo, hi}`, with `d` an SVG path (x by
 * time, y by value; a flat curve in the middle), `change` = last - first exactly; null without points.
 */
export function equityCurve(points, width, height, pad = 4) {
  if (!points.length) return null;
  const values = points.map((p) => p.equity);
  const { lo, hi } = extent(values);
  const t0 = Date.parse(points[0].ts);
  const t1 = Date.parse(points[points.length - 1].ts);
  const span = Number(dec.sub(hi, lo));
  const x = (p) => pad + (t1 === t0 ? (width - 2 * pad) / 2 : ((Date.parse(p.ts) - t0) / (t1 - t0)) * (width - 2 * pad));
  const y = (v) => (span === 0 ? height / 2 : pad + (1 - Number(dec.sub(v, lo)) / span) * (height - 2 * pad));
  const d = points.map((p, i) => `${i ? "L" : "M"}${x(p).toFixed(1)} ${y(p.equity).toFixed(1)}`).join(" ");
  const first = values[0];
  const last = values[values.length - 1];
  return { d, first, last, change: dec.sub(last, first), lo, hi };
}

/**
 * Bars for realized PnL per day in a `width` x `height` box around a zero line: `{zero, bars: [{day, x, y, w, h,
 * sign, value}]}` (gains above the line, losses below).
 */
export function pnlBars(days, width, height, pad = 4) {
  const values = days.map((d) => d.realized_pnl);
  const { lo, hi } = extent([...values, "0"]);
  const top = Number(hi);
  const bottom = Number(lo);
  const range = top - bottom || 1;
  const scale = (v) => pad + ((top - Number(v)) / range) * (height - 2 * pad);
  const zero = scale("0");
  const slot = days.length ? (width - 2 * pad) / days.length : 0;
  const w = Math.max(Math.min(slot * 0.7, 40), 1);
  const bars = days.map((d, i) => {
    const yv = scale(d.realized_pnl);
    return {
      day: d.day, value: d.realized_pnl, sign: dec.sign(d.realized_pnl),
      x: pad + i * slot + (slot - w) / 2, y: Math.min(yv, zero), w, h: Math.max(Math.abs(yv - zero), 1),
    };
  });
  return { zero, bars };
}

/**
 * The history request: `kind` "orders" or "trades"; `filters` as the form has them (symbol, side, status,
 * from and to as YYYY-MM-DD days, both inclusive, in UTC); `format` "csv" for the export of the same page.
 */
export function historyPath(kind, filters = {}, { cursor = null, limit = 20, format = null } = {}) {
  const q = new URLSearchParams();
  if (filters.mode) q.set("mode", filters.mode);
  if (filters.symbol) q.set("symbol", filters.symbol);
  if (filters.side) q.set("side", filters.side);
  if (kind === "orders" && filters.status) q.set("status", filters.status);
  if (filters.from) q.set("since", `${filters.from}T00:00:00Z`);
  if (filters.to) q.set("until", `${nextDay(filters.to)}T00:00:00Z`);
  q.set("limit", String(limit));
  if (cursor) q.set("cursor", cursor);
  if (format) q.set("format", format);
  return `/api/history/${kind}?${q}`;
}

/** The day after a YYYY-MM-DD day (the exclusive end of an inclusive range). */
export function nextDay(day) {
  const d = new Date(`${day}T00:00:00Z`);
  d.setUTCDate(d.getUTCDate() + 1);
  return d.toISOString().slice(0, 10);
}

/** A date range the server would refuse, in plain words; null when it is fine. */
export function rangeError(filters) {
  if (filters.from && filters.to && filters.from > filters.to) return "The start date is after the end date.";
  return null;
}
