// The small label saying which venue's market a panel shows (the ticker, the book, the chart): a testnet-mode
// user sees the Binance testnet's prices, a paper-mode user the paper exchange's, and the page says which.

import { el } from "../../dom.js";
import { venueLabel } from "../../state/venue.js";

/** A label for `venue`; `setVenueTag` changes it on a mode switch. */
export function venueTag(id, venue) {
  return setVenueTag(el("span", { class: "venue-tag", id }), venue);
}

export function setVenueTag(node, venue) {
  node.dataset.venue = venue;
  node.textContent = venueLabel(venue);
  node.title = `Market data of the ${venueLabel(venue)}`;
  return node;
}
