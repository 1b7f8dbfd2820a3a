// Candle chart on TradingView's lightweight-charts (served from node_modules by the gateway). Candles come
// from `GET /api/markets/{s}/candles` and live `CANDLE` messages; without the candles endpoint the chart
// builds 1-minute candles from the ticker so it is never blank while prices move.

import { publicApi } from "../api.js";
import * as fmt from "../fmt.js";

const LIBRARY = "/assets/vendor/lightweight-charts.mjs";
const MINUTE = 60;

function toSeconds(value) {
  if (value === undefined || value === null) return null;
  if (typeof value === "number") return value > 1e12 ? Math.floor(value / 1000) : Math.floor(value);
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : Math.floor(ms / 1000);
}

export function normalizeCandle(c) {
  const time = toSeconds(c.start ?? c.open_time ?? c.time ?? c.t ?? c.ts);
  const open = Number(c.open ?? c.o);
  const high = Number(c.high ?? c.h);
  const low = Number(c.low ?? c.l);
  const close = Number(c.close ?? c.c);
  if (time === null || ![open, high, low, close].every(Number.isFinite)) return null;
  return { time, open, high, low, close };
}

export class CandleChart {
  constructor(container, note, symbol) {
    this.container = container;
    this.note = note;
    this.symbol = symbol;
    this.series = null;
    this.chart = null;
    this.fromTicks = false;
    this.last = null;
    this.pending = [];
    this.disposed = false;
  }

  async load() {
    let lib;
    try {
      lib = await import(LIBRARY);
    } catch {
      this.note.textContent = "Chart library not installed (run scripts/install).";
      return;
    }
    if (this.disposed) return;
    const m = fmt.market(this.symbol);
    const precision = fmt.decimalsOf(m?.tick_size) ?? 2;
    this.chart = lib.createChart(this.container, {
      autoSize: true,
      layout: { background: { color: "transparent" }, textColor: "#c9d1d9", attributionLogo: false },
      grid: { vertLines: { color: "#1f2630" }, horzLines: { color: "#1f2630" } },
      timeScale: { timeVisible: true, secondsVisible: false, borderColor: "#30363d" },
      rightPriceScale: { borderColor: "#30363d" },
    });
    this.series = this.chart.addSeries(lib.CandlestickSeries, {
      upColor: "#2ea043", downColor: "#da3633", wickUpColor: "#2ea043", wickDownColor: "#da3633", borderVisible: false,
      priceFormat: { type: "price", precision, minMove: Number(m?.tick_size || 0.01) },
    });
    let candles = [];
    try {
      const raw = await publicApi("GET", `/api/markets/${this.symbol}/candles?interval=1m&limit=300`);
      candles = (Array.isArray(raw) ? raw : raw?.items || raw?.candles || []).map(normalizeCandle).filter(Boolean);
    } catch (exc) {
      if (exc.status === 404) this.fromTicks = true;
    }
    if (this.disposed) return;
    candles.sort((a, b) => a.time - b.time);
    const dedup = [];
    for (const c of candles) {
      if (dedup.length && dedup[dedup.length - 1].time === c.time) dedup[dedup.length - 1] = c;
      else dedup.push(c);
    }
    this.series.setData(dedup);
    this.last = dedup[dedup.length - 1] || null;
    for (const item of this.pending.splice(0)) this.apply(item);
    this.note.textContent = this.fromTicks ? "Built from live prices (candle history unavailable)." : "";
    this.container.dataset.ready = "true";
  }

  apply(candle) {
    if (!this.series) { this.pending.push(candle); return; }
    if (this.last && candle.time < this.last.time) return;
    this.series.update(candle);
    this.last = candle;
  }

  onCandle(data) {
    const candle = normalizeCandle(data);
    if (!candle) return;
    this.fromTicks = false;
    this.apply(candle);
  }

  onPrice(price, ts) {
    if (!this.fromTicks && this.series) return;
    const p = Number(price);
    if (!Number.isFinite(p)) return;
    const now = toSeconds(ts) ?? Math.floor(Date.now() / 1000);
    const bucket = now - (now % MINUTE);
    const base = this.pending.length ? this.pending[this.pending.length - 1] : this.last;
    if (base && base.time === bucket) {
      this.apply({ time: bucket, open: base.open, high: Math.max(base.high, p), low: Math.min(base.low, p), close: p });
    } else if (!base || bucket > base.time) {
      this.apply({ time: bucket, open: p, high: p, low: p, close: p });
    }
  }

  dispose() {
    this.disposed = true;
    if (this.chart) this.chart.remove();
    this.chart = null;
    this.series = null;
  }
}
