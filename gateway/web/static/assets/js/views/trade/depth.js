// The cumulative depth chart beside the order book, on a plain canvas (no library: a few lines, a few hundred
// bytes): bids left in green, asks right in red, from the user's venue's book (`GET .../depth?limit=100&venue=`,
// then `DEPTH` events). Redrawn on each book and on resize; the canvas has a text summary for screen readers.

import { publicApi } from "../../api.js";
import { el } from "../../dom.js";
import * as fmt from "../../fmt.js";
import { depthGeometry } from "../../state/depth.js";
import { isVenue, withVenue } from "../../state/venue.js";

const LEVELS = 100;
const AXIS = 16; // px under the plot for the price labels

export function createDepth(market, { venue: initialVenue }) {
  const { symbol } = market;
  let venue = initialVenue;
  let depth = null;
  const canvas = el("canvas", { class: "depth-canvas", id: "depth-chart", role: "img", "aria-label": `${symbol} cumulative depth` });
  const box = el("div", { class: "depth", dataset: { ready: "false" } }, canvas);
  let observer = null;

  function draw() {
    const width = box.clientWidth;
    const height = box.clientHeight;
    if (!width || !height) return;
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.width = `${width}px`;
    canvas.style.height = `${height}px`;
    const ctx = canvas.getContext("2d");
    if (!ctx) return;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    ctx.clearRect(0, 0, width, height);
    const plot = depthGeometry(depth, width, height - AXIS);
    box.dataset.venue = venue;
    if (!plot) {
      box.dataset.ready = "false";
      canvas.setAttribute("aria-label", `${symbol} cumulative depth: the book is empty`);
      return;
    }
    for (const [points, line, fill] of [[plot.bids, "#2ea043", "rgba(46,160,67,.25)"], [plot.asks, "#da3633", "rgba(218,54,51,.25)"]]) {
      ctx.beginPath();
      points.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
      ctx.closePath();
      ctx.fillStyle = fill;
      ctx.fill();
      ctx.strokeStyle = line;
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
    // Three price labels (low, mid, high) anchored left, centre and right so they never overlap; the largest
    // cumulative size top-left.
    ctx.fillStyle = "#8b949e";
    ctx.font = "11px system-ui, sans-serif";
    ctx.textBaseline = "bottom";
    const labels = [[plot.low, "left", 0], [plot.mid, "center", width / 2], [plot.high, "right", width]];
    for (const [price, align, at] of labels) {
      ctx.textAlign = align;
      ctx.fillText(fmt.price(symbol, price.toFixed(12)), at, height);
    }
    ctx.textAlign = "left";
    ctx.textBaseline = "top";
    ctx.fillText(`${fmt.qty(symbol, plot.total)} ${market.base_asset}`, 2, 2);
    canvas.setAttribute("aria-label", `${symbol} cumulative depth: ${depth.bids.length} bid and ${depth.asks.length} ask levels, `
      + `up to ${fmt.qty(symbol, plot.total)} ${market.base_asset} within ${fmt.price(symbol, plot.low.toFixed(12))} to ${fmt.price(symbol, plot.high.toFixed(12))}`);
    box.dataset.ready = "true";
  }

  function onDepth(data) {
    if (data.symbol !== symbol || !isVenue(data, venue)) return;
    depth = data;
    draw();
  }

  async function load() {
    if (!observer && typeof ResizeObserver === "function") {
      observer = new ResizeObserver(() => draw());
      observer.observe(box);
    }
    try {
      onDepth(await publicApi("GET", withVenue(`/api/markets/${symbol}/depth?limit=${LEVELS}`, venue)));
    } catch { /* keep the last picture */ }
  }

  function setVenue(next) {
    venue = next;
    depth = null;
    draw();
  }

  function dispose() {
    observer?.disconnect();
    observer = null;
  }

  return { node: box, load, onDepth, setVenue, dispose };
}
