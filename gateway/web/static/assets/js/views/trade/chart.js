// The 1-minute candle chart on TradingView's lightweight-charts (served from node_modules by the gateway):
// history from `GET /api/markets/{symbol}/candles`, then `CANDLE` events of `candles:{symbol}:1m`.

import { publicApi } from "../../api.js";
import { el } from "../../dom.js";
import * as dec from "../../decimal.js";
import { chartPoint, chartSeries } from "../../state/candles.js";

const LIBRARY = "/assets/vendor/lightweight-charts.mjs";
export const INTERVAL = "1m";
const HISTORY = 300;

export function createChart(market) {
  const { symbol } = market;
  const box = el("div", { class: "chart", id: "chart", role: "img", "aria-label": `${symbol} 1 minute candle chart` });
  const note = el("p", { class: "muted small chart-note", id: "chart-note" });
  let chart = null;
  let series = null;
  let last = null;
  let disposed = false;
  const pending = []; // CANDLE events that came before the history

  function apply(point) {
    if (last && point.time < last.time) return;
    series.update(point);
    last = point;
  }

  function onCandle(candle) {
    if (candle.symbol !== symbol || candle.interval !== INTERVAL) return;
    if (series) apply(chartPoint(candle));
    else pending.push(candle);
  }

  async function load() {
    let lib;
    try {
      lib = await import(LIBRARY);
    } catch {
      note.textContent = "Chart library not installed (run scripts/install).";
      return;
    }
    if (disposed) return;
    chart = lib.createChart(box, {
      autoSize: true,
      layout: { background: { color: "transparent" }, textColor: "#c9d1d9", attributionLogo: false },
      grid: { vertLines: { color: "#1f2630" }, horzLines: { color: "#1f2630" } },
      timeScale: { timeVisible: true, secondsVisible: false, borderColor: "#30363d" },
      rightPriceScale: { borderColor: "#30363d" },
    });
    series = chart.addSeries(lib.CandlestickSeries, {
      upColor: "#2ea043", downColor: "#da3633", wickUpColor: "#2ea043", wickDownColor: "#da3633", borderVisible: false,
      priceFormat: { type: "price", precision: dec.places(market.tick_size), minMove: Number(market.tick_size) },
    });
    let history = [];
    try {
      history = await publicApi("GET", `/api/markets/${symbol}/candles?interval=${INTERVAL}&limit=${HISTORY}`);
    } catch (exc) {
      note.textContent = `Candle history unavailable: ${exc.message}`;
    }
    if (disposed) return;
    const points = chartSeries([...history, ...pending.splice(0)]);
    series.setData(points);
    last = points[points.length - 1] || null;
    box.dataset.ready = "true";
  }

  function dispose() {
    disposed = true;
    chart?.remove();
    chart = null;
    series = null;
  }

  return { node: [box, note], load, onCandle, dispose };
}
