// Recent public trades of the market (`GET /api/markets/{symbol}/trades`, `MARKET_TRADE` events:
// `{trade_id, symbol, price, quantity, side, ts}`, side being the taker's).

import { publicApi } from "../../api.js";
import { clear, el } from "../../dom.js";
import * as fmt from "../../fmt.js";
import { pushTrade } from "../../state/market.js";
import { dataTable, emptyRow, num } from "../table.js";

const SHOWN = 30;

export function createMarketTrades(market) {
  const { symbol } = market;
  const body = el("tbody", { id: "market-trades-body" });
  let trades = [];

  function render() {
    clear(body, trades.length ? trades.map((t) => el("tr", { class: t.side === "SELL" ? "sell" : "buy" },
      el("td", { class: "num" }, fmt.price(symbol, t.price)),
      el("td", { class: "num" }, fmt.qty(symbol, t.quantity)),
      el("td", {}, fmt.time(t.ts)))) : emptyRow(3, "No trades yet"));
  }

  function onTrade(trade) {
    if (trade.symbol !== symbol) return;
    trades = pushTrade(trades, trade, SHOWN);
    render();
  }

  async function load() {
    try {
      trades = await publicApi("GET", `/api/markets/${symbol}/trades?limit=${SHOWN}`);
      render();
    } catch { /* keep */ }
  }

  render();
  const node = dataTable("market-trades", "Recent market trades", [num("Price"), num("Quantity"), "Time"], body);
  return { node, load, onTrade };
}
