// The candle chart on TradingView's lightweight-charts (served from node_modules by the gateway) of the user's
// venue: an interval picker (1m to 1d), candles with volume under them, history from `GET
// /api/markets/{symbol}/candles?venue=` (older pages fetched with `end_time` as the user scrolls back), then
// `CANDLE` events of `candles:{symbol}:{interval}` (`@testnet` for the testnet). Over the candles: the user's own
// fills (markers, `GET /api/trades` and `TRADE`) and open orders (price lines, `GET /api/orders?status=open`
// and `ORDER_UPDATE`). A mode switch or another interval reloads the history.

import { api, publicApi } from "../../api.js";
import { el } from "../../dom.js";
import * as dec from "../../decimal.js";
import {
  barsToShow, byTime, chartPoint, DEFAULT_INTERVAL, DOWN, fillMarkers, historyPath, INTERVALS, orderLines,
  prependOlder, UP, volumePoint,
} from "../../state/candles.js";
import { isOpen, mergeOrder } from "../../state/orders.js";
import { isVenue, venueOf, withVenue } from "../../state/venue.js";
import { setVenueTag, venueTag } from "./venue-tag.js";

const LIBRARY = "/assets/vendor/lightweight-charts.mjs";
const HISTORY = 500; // candles of the first page
const PAGE = 500; // candles of each older page
const NEAR_LEFT = 20; // bars from the left edge that fetch the next older page
const NARROW = 520; // px: smaller axis text below this width
const FILLS = 500;

export function createChart(market, { venue: initialVenue, mode, onInterval }) {
  const { symbol } = market;
  let venue = initialVenue;
  let interval = DEFAULT_INTERVAL;
  const tag = venueTag("chart-venue", venue);
  const box = el("div", { class: "chart", id: "chart", role: "img", "aria-label": `${symbol} candle chart` }); // label() names the interval
  const note = el("p", { class: "muted small chart-note", id: "chart-note" });
  const buttons = INTERVALS.map((i) => el("button", {
    type: "button", class: "btn btn-small btn-ghost interval", dataset: { interval: i.id },
    "aria-pressed": i.id === interval ? "true" : "false", "aria-label": `${i.id}, ${i.label} candles`, // the visible text first (WCAG 2.5.3)
    onclick: () => pickInterval(i.id),
  }, i.id));
  const picker = el("div", { class: "interval-picker", role: "group", "aria-label": "Candle interval" }, buttons);
  let lib = null;
  let chart = null;
  let candles = null;
  let volume = null;
  let markers = null;
  let resize = null;
  let held = []; // the candles drawn, oldest first (API shape)
  let disposed = false;
  let loading = true; // until the current history is drawn
  let exhausted = false; // no older page left
  let paging = false;
  let generation = 0; // history requests: only the latest one's answer is drawn
  const pending = []; // CANDLE events that came before the history
  const fills = new Map(); // trade_id -> fill of this symbol
  const orders = new Map(); // order_id -> order (all of the user's, of this symbol)
  const lines = new Map(); // line key -> the library's price line

  function label() {
    const name = INTERVALS.find((i) => i.id === interval)?.label ?? interval;
    box.setAttribute("aria-label", `${symbol} ${name} candle chart with volume`);
  }

  function apply(candle) {
    const point = chartPoint(candle);
    const last = held[held.length - 1];
    if (last && point.time < chartPoint(last).time) return;
    if (last && point.time === chartPoint(last).time) held[held.length - 1] = candle;
    else held.push(candle);
    candles.update(point);
    volume.update(volumePoint(candle));
  }

  function onCandle(candle) {
    if (candle.symbol !== symbol || candle.interval !== interval || !isVenue(candle, venue)) return;
    if (candles && !loading) apply(candle);
    else pending.push(candle);
  }

  function draw() {
    candles.setData(held.map(chartPoint));
    volume.setData(held.map(volumePoint));
    drawMarkers();
  }

  function drawMarkers() {
    if (!markers) return;
    const mine = [...fills.values()].filter((f) => f.mode === undefined || f.mode === mode());
    const first = held.length ? chartPoint(held[0]).time : Infinity;
    const drawn = fillMarkers(mine, symbol, interval).filter((m) => m.time >= first);
    markers.setMarkers(drawn);
    box.dataset.fillMarkers = String(drawn.length);
  }

  function drawLines() {
    if (!candles) return;
    const open = [...orders.values()].filter((o) => isOpen(o) && o.mode === mode() && venueOf(o.mode) === venue);
    const wanted = new Map(orderLines(open, symbol).map((l) => [l.key, l]));
    for (const [key, line] of lines) {
      if (!wanted.has(key)) {
        candles.removePriceLine(line);
        lines.delete(key);
      }
    }
    for (const [key, l] of wanted) {
      if (lines.has(key)) continue;
      lines.set(key, candles.createPriceLine({
        price: l.price, color: l.color, lineWidth: 1, lineStyle: l.dashed ? lib.LineStyle.Dashed : lib.LineStyle.Dotted,
        axisLabelVisible: true, title: box.clientWidth < NARROW ? "" : l.title,
      }));
    }
    box.dataset.orderLines = String(lines.size);
  }

  function fit() {
    const shown = barsToShow(box.clientWidth || 600, held.length);
    chart.timeScale().setVisibleLogicalRange({ from: held.length - shown, to: held.length + 2 });
  }

  // What depends on the box's width and the interval (applied again on resize and on another interval).
  function sizedOptions() {
    const narrow = box.clientWidth < NARROW;
    return {
      layout: { background: { color: "transparent" }, textColor: "#c9d1d9", attributionLogo: false, fontSize: narrow ? 10 : 12 },
      timeScale: { borderColor: "#30363d", timeVisible: interval !== "1d", secondsVisible: false, rightOffset: narrow ? 2 : 5 },
    };
  }

  async function load() {
    try {
      lib = await import(LIBRARY);
    } catch {
      note.textContent = "Chart library not installed (run scripts/install).";
      return;
    }
    if (disposed) return;
    chart = lib.createChart(box, {
      autoSize: true,
      grid: { vertLines: { color: "#1f2630" }, horzLines: { color: "#1f2630" } },
      rightPriceScale: { borderColor: "#30363d", scaleMargins: { top: 0.08, bottom: 0.25 }, entireTextOnly: true },
      ...sizedOptions(),
    });
    candles = chart.addSeries(lib.CandlestickSeries, {
      upColor: UP, downColor: DOWN, wickUpColor: UP, wickDownColor: DOWN, borderVisible: false,
      priceFormat: { type: "price", precision: dec.places(market.tick_size), minMove: Number(market.tick_size) },
    });
    // Volume on its own overlay scale in the bottom fifth, without labels: it never crowds the price axis.
    volume = chart.addSeries(lib.HistogramSeries, {
      priceScaleId: "volume", priceFormat: { type: "volume" }, lastValueVisible: false, priceLineVisible: false,
    });
    chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 }, visible: false });
    markers = lib.createSeriesMarkers(candles, []);
    chart.timeScale().subscribeVisibleLogicalRangeChange((range) => {
      if (range && range.from < NEAR_LEFT) loadOlder();
    });
    resize = new ResizeObserver(() => chart?.applyOptions(sizedOptions()));
    resize.observe(box);
    label();
    await Promise.all([loadHistory(), loadPrivate()]);
  }

  async function loadHistory() {
    const mine = ++generation;
    loading = true;
    exhausted = false;
    note.textContent = "";
    box.dataset.ready = "false";
    let history = [];
    try {
      history = await publicApi("GET", withVenue(historyPath(symbol, interval, HISTORY), venue));
    } catch (exc) {
      note.textContent = `Candle history unavailable: ${exc.message}`;
    }
    if (disposed || mine !== generation) return;
    held = byTime([...history.filter((c) => isVenue(c, venue)), ...pending.splice(0).filter((c) => c.interval === interval)]);
    exhausted = history.length < HISTORY;
    draw();
    fit();
    loading = false;
    box.dataset.venue = venue;
    box.dataset.interval = interval;
    box.dataset.candles = String(held.length);
    box.dataset.ready = "true";
  }

  /** The page before the oldest candle drawn, kept in view where the user was looking. */
  async function loadOlder() {
    if (paging || loading || exhausted || !held.length) return;
    paging = true;
    const mine = generation;
    try {
      const older = await publicApi("GET", withVenue(historyPath(symbol, interval, PAGE, held[0].start), venue));
      if (disposed || mine !== generation) return;
      if (older.length < PAGE) exhausted = true;
      const range = chart.timeScale().getVisibleLogicalRange();
      const merged = prependOlder(held, older.filter((c) => isVenue(c, venue)));
      if (!merged.added) return;
      held = merged.candles;
      draw();
      if (range) chart.timeScale().setVisibleLogicalRange({ from: range.from + merged.added, to: range.to + merged.added });
      box.dataset.candles = String(held.length);
    } catch { /* scrolling back again retries */ } finally {
      paging = false;
    }
  }

  /** The user's fills and open orders of this symbol (nothing when logged out). */
  async function loadPrivate() {
    try {
      const [trades, open] = await Promise.all([
        api("GET", `/api/trades?symbol=${encodeURIComponent(symbol)}&limit=${FILLS}`),
        api("GET", `/api/orders?status=open&symbol=${encodeURIComponent(symbol)}&limit=200`),
      ]);
      fills.clear();
      for (const f of trades) fills.set(f.trade_id, f);
      for (const [id, o] of orders) if (isOpen(o)) orders.delete(id);
      for (const o of open.items) mergeOrder(orders, o);
    } catch {
      return; // logged out or offline: no fills or orders to draw
    }
    drawMarkers();
    drawLines();
  }

  function onFill(fill) {
    if (fill.symbol !== symbol || fills.has(fill.trade_id)) return;
    fills.set(fill.trade_id, fill);
    drawMarkers();
  }

  function onOrder(order) {
    if (order.symbol !== symbol) return;
    if (mergeOrder(orders, order)) drawLines();
  }

  function reload() {
    pending.splice(0);
    held = [];
    if (candles) {
      draw();
      loadHistory();
    }
  }

  function pickInterval(next) {
    if (next === interval) return;
    const previous = interval;
    interval = next;
    for (const b of buttons) b.setAttribute("aria-pressed", b.dataset.interval === next ? "true" : "false");
    label();
    chart?.applyOptions(sizedOptions());
    onInterval?.(next, previous);
    reload();
  }

  /** Draw another venue's candles (a mode switch): its history, then its events. */
  function setVenue(next) {
    if (next === venue) return;
    venue = next;
    setVenueTag(tag, venue);
    reload();
    drawLines();
  }

  function dispose() {
    disposed = true;
    resize?.disconnect();
    chart?.remove();
    chart = null;
    candles = null;
    volume = null;
    markers = null; // a fills request answering after the page left must not draw on the removed chart
  }

  return {
    node: [picker, tag, box, note], load, loadPrivate, onCandle, onFill, onOrder, dispose, setVenue,
    interval: () => interval,
  };
}
