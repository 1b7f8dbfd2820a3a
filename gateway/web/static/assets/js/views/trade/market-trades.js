// Recent public trades of the market on the user's venue (`GET /api/markets/{symbol}/trades?venue=`,
// `MARKET_TRADE` events of `trades:{symbol}` or `trades:{symbol}@testnet`: `{trade_id, symbol, price,
// quantity, side, ts, venue}`, side being the taker's).

import { publicApi } from "../../api.js";
import { clear, el } from "../../dom.js";
import * as fmt from "../../fmt.js";
import { pushTrade } from "../../state/market.js";
import { isVenue, withVenue } from "../../state/venue.js";
import { dataTable, emptyRow, num } from "../table.js";

const SHOWN = 30;

export function createMarketTrades(market, { venue: initialVenue }) {
  const { symbol } = market;
  let venue = initialVenue;
  const body = el("tbody", { id: "market-trades-body" });
  let trades = [];

  function render() {
    clear(body, trades.length ? trades.map((t) => el("tr", { class: t.side === "SELL" ? "sell" : "buy" },
      el("td", { class: "num" }, fmt.price(symbol, t.price)),
      el("td", { class: "num" }, fmt.qty(symbol, t.quantity)),
      el("td", {}, fmt.time(t.ts)))) : emptyRow(3, "No trades yet"));
  }

  function onTrade(trade) {
    if (trade.symbol !== symbol || !isVenue(trade, venue)) return;
    trades = pushTrade(trades, trade, SHOWN);
    render();
  }

  async function load() {
    try {
      const asked = venue;
      const fetched = await publicApi("GET", withVenue(`/api/markets/${symbol}/trades?limit=${SHOWN}`, asked));
      if (asked !== venue) return; // answered after a mode switch
      trades = fetched.filter((t) => isVenue(t, venue));
      render();
    } catch { /* keep */ }
  }

  /** Show another venue's trades (a mode switch). */
  function setVenue(next) {
    venue = next;
    trades = [];
    render();
  }

  render();
  const node = dataTable("market-trades", "Recent market trades", [num("Price"), num("Quantity"), "Time"], body);
  return { node, load, onTrade, setVenue };
}
