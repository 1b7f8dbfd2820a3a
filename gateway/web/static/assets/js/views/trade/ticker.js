// The ticker line: market selector and last price (`GET /api/markets/{symbol}/ticker`, `TICKER` events:
// `{symbol, price, ts, source, stale}`).

import { publicApi } from "../../api.js";
import { el } from "../../dom.js";
import * as fmt from "../../fmt.js";

export function createTicker(market, { onSelect }) {
  const { symbol } = market;
  const select = el("select", { id: "market-select", "aria-label": "Market" },
    fmt.allMarkets().map((m) => el("option", { value: m.symbol, selected: m.symbol === symbol }, m.symbol)));
  select.addEventListener("change", () => onSelect(select.value));
  const priceNode = el("span", { class: "last-price", id: "last-price", "aria-live": "off" }, "—");
  const timeNode = el("span", { class: "muted small", id: "ticker-time" });

  function onTicker(t) {
    if (t.symbol !== symbol) return;
    priceNode.textContent = fmt.price(symbol, t.price);
    timeNode.textContent = t.stale ? `${fmt.time(t.ts)} (stale)` : fmt.time(t.ts);
  }

  async function load() {
    try {
      onTicker(await publicApi("GET", `/api/markets/${symbol}/ticker`));
    } catch { /* 404 until the feed's first price */ }
  }

  const node = [
    el("h1", { id: "ticker-h", class: "ticker-head" }, el("span", { class: "sr-only" }, "Ticker "), select),
    el("div", { class: "ticker-line" }, priceNode, " ", el("span", { class: "muted" }, market.quote_asset), " ", timeNode),
  ];
  return { node, load, onTicker };
}
