// The 1-minute candle chart on TradingView's lightweight-charts (served from node_modules by the gateway) of
// the user's venue: history from `GET /api/markets/{symbol}/candles?venue=`, then `CANDLE` events of
// `candles:{symbol}:1m` (paper) or `candles:{symbol}:1m@testnet`; a mode switch reloads the history.

import { publicApi } from "../../api.js";
import { el } from "../../dom.js";
import * as dec from "../../decimal.js";
import { chartPoint, chartSeries } from "../../state/candles.js";
import { isVenue, withVenue } from "../../state/venue.js";
import { setVenueTag, venueTag } from "./venue-tag.js";

const LIBRARY = "/assets/vendor/lightweight-charts.mjs";
export const INTERVAL = "1m";
const HISTORY = 300;

export function createChart(market, { venue: initialVenue }) {
  const { symbol } = market;
  let venue = initialVenue;
  const tag = venueTag("chart-venue", venue);
  const box = el("div", { class: "chart", id: "chart", role: "img", "aria-label": `${symbol} 1 minute candle chart` });
  const note = el("p", { class: "muted small chart-note", id: "chart-note" });
  let chart = null;
  let series = null;
  let last = null;
  let disposed = false;
  let loading = true; // until the current venue's history is drawn
  let generation = 0; // history requests: only the latest one's answer is drawn
  const pending = []; // CANDLE events that came before the history

  function apply(point) {
    if (last && point.time < last.time) return;
    series.update(point);
    last = point;
  }

  function onCandle(candle) {
    if (candle.symbol !== symbol || candle.interval !== INTERVAL || !isVenue(candle, venue)) return;
    if (series && !loading) apply(chartPoint(candle));
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
    await loadHistory();
  }

  async function loadHistory() {
    const mine = ++generation;
    loading = true;
    note.textContent = "";
    let history = [];
    try {
      history = await publicApi("GET", withVenue(`/api/markets/${symbol}/candles?interval=${INTERVAL}&limit=${HISTORY}`, venue));
    } catch (exc) {
      note.textContent = `Candle history unavailable: ${exc.message}`;
    }
    if (disposed || mine !== generation) return;
    const points = chartSeries([...history.filter((c) => isVenue(c, venue)), ...pending.splice(0)]);
    series.setData(points);
    last = points[points.length - 1] || null;
    loading = false;
    box.dataset.venue = venue;
    box.dataset.ready = "true";
  }

  /** Draw another venue's candles (a mode switch): its history, then its events. */
  function setVenue(next) {
    if (next === venue) return;
    venue = next;
    setVenueTag(tag, venue);
    pending.splice(0);
    last = null;
    if (series) {
      series.setData([]);
      loadHistory();
    }
  }

  function dispose() {
    disposed = true;
    chart?.remove();
    chart = null;
    series = null;
  }

  return { node: [tag, box, note], load, onCandle, dispose, setVenue };
}
