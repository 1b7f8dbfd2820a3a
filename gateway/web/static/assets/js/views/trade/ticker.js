// The ticker line: market selector, last price and the venue it is from (`GET /api/markets/{symbol}/ticker
// ?venue=`, `TICKER` events of `ticker:{symbol}` or `ticker:{symbol}@testnet`: `{symbol, price, ts, source,
// stale, venue}`).

import { publicApi } from "../../api.js";
import { el } from "../../dom.js";
import * as fmt from "../../fmt.js";
import { isVenue, withVenue } from "../../state/venue.js";
import { setVenueTag, venueTag } from "./venue-tag.js";

export function createTicker(market, { onSelect, venue: initialVenue }) {
  const { symbol } = market;
  let venue = initialVenue;
  const select = el("select", { id: "market-select", "aria-label": "Market" },
    fmt.allMarkets().map((m) => el("option", { value: m.symbol, selected: m.symbol === symbol }, m.symbol)));
  select.addEventListener("change", () => onSelect(select.value));
  const priceNode = el("span", { class: "last-price", id: "last-price", "aria-live": "off" }, "—");
  const timeNode = el("span", { class: "muted small", id: "ticker-time" });
  const tag = venueTag("ticker-venue", venue);

  function onTicker(t) {
    if (t.symbol !== symbol || !isVenue(t, venue)) return;
    priceNode.textContent = fmt.price(symbol, t.price);
    timeNode.textContent = t.stale ? `${fmt.time(t.ts)} (stale)` : fmt.time(t.ts);
  }

  async function load() {
    try {
      onTicker(await publicApi("GET", withVenue(`/api/markets/${symbol}/ticker`, venue)));
    } catch { /* 404 until the venue's first price */ }
  }

  /** Show another venue's price (a mode switch): nothing until its first ticker. */
  function setVenue(next) {
    venue = next;
    setVenueTag(tag, venue);
    priceNode.textContent = "—";
    timeNode.textContent = "";
  }

  const node = [
    el("h1", { id: "ticker-h", class: "ticker-head" }, el("span", { class: "sr-only" }, "Ticker "), select),
    el("div", { class: "ticker-line" }, priceNode, " ", el("span", { class: "muted" }, market.quote_asset), " ", timeNode, " ", tag),
  ];
  return { node, load, onTicker, setVenue };
}
