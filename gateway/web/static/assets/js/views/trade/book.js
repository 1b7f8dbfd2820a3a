// The order book ladder of the user's venue (`GET /api/markets/{symbol}/depth?venue=`, `DEPTH` events of
// `depth:{symbol}` or `depth:{symbol}@testnet`), labelled with that venue. A price is a button: it puts that
// price in the order ticket.

import { publicApi } from "../../api.js";
import { clear, el } from "../../dom.js";
import * as fmt from "../../fmt.js";
import { barPercent, largestQuantity, spread } from "../../state/market.js";
import { isVenue, withVenue } from "../../state/venue.js";
import { setVenueTag, venueTag } from "./venue-tag.js";

export const BOOK_LEVELS = 10;

export function createBook(market, { onPick, venue: initialVenue }) {
  const { symbol } = market;
  let venue = initialVenue;
  const tag = venueTag("book-venue", venue);
  const ladder = el("div", { class: "book", id: "order-book", role: "table", "aria-label": `${symbol} order book` });
  let depth = { symbol, bids: [], asks: [] };

  function level(side, [price, quantity], largest) {
    const bar = el("span", { class: "bar", "aria-hidden": "true" });
    bar.style.width = `${barPercent(quantity, largest)}%`; // CSSOM, not a style attribute: the CSP allows it
    return el("div", { class: `level level-${side}`, role: "row" },
      bar,
      el("button", { type: "button", class: "px", role: "cell", title: "Use this price in the order ticket", onclick: () => onPick(price) },
        fmt.price(symbol, price)),
      el("span", { class: "qty", role: "cell" }, fmt.qty(symbol, quantity)));
  }

  function render() {
    const asks = depth.asks.slice(0, BOOK_LEVELS);
    const bids = depth.bids.slice(0, BOOK_LEVELS);
    const largest = largestQuantity([...asks, ...bids]);
    const gap = spread(depth);
    ladder.dataset.venue = venue;
    clear(ladder,
      el("div", { class: "level level-head", role: "row" },
        el("span", { role: "columnheader" }, `Price (${market.quote_asset})`),
        el("span", { role: "columnheader" }, `Size (${market.base_asset})`)),
      el("div", { class: "asks", role: "rowgroup", "aria-label": "Asks" }, asks.slice().reverse().map((l) => level("ask", l, largest))),
      el("div", { class: "spread", id: "spread" },
        gap !== null ? `spread ${fmt.price(symbol, gap)}` : asks.length || bids.length ? "" : "Book is empty"),
      el("div", { class: "bids", role: "rowgroup", "aria-label": "Bids" }, bids.map((l) => level("bid", l, largest))));
  }

  function onDepth(data) {
    if (data.symbol !== symbol || !isVenue(data, venue)) return;
    depth = data;
    render();
  }

  async function load() {
    try {
      onDepth(await publicApi("GET", withVenue(`/api/markets/${symbol}/depth?limit=${BOOK_LEVELS}`, venue)));
    } catch { /* keep the last book */ }
  }

  /** Show another venue's book (a mode switch): empty until it arrives. */
  function setVenue(next) {
    venue = next;
    setVenueTag(tag, venue);
    depth = { symbol, bids: [], asks: [] };
    render();
  }

  render();
  return { node: [tag, ladder], load, onDepth, setVenue };
}
