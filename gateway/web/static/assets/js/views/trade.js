// The trading page of one market: lays out its panels (views/trade/*) and wires them to the REST snapshots
// and the live channels. Each panel loads and renders its own data; this module only routes to them.

import { clear, el, toast } from "../dom.js";
import * as fmt from "../fmt.js";
import { createBalances } from "./trade/balances.js";
import { createBook } from "./trade/book.js";
import { createChart } from "./trade/chart.js";
import { createDepth } from "./trade/depth.js";
import { createMarketTrades } from "./trade/market-trades.js";
import { createOrders } from "./trade/orders.js";
import { createPositions } from "./trade/positions.js";
import { createTicker } from "./trade/ticker.js";
import { createTicket } from "./trade/ticket.js";
import { marketChannels, venueOf } from "../state/venue.js";

const VENUE_CHECK_MS = 5000;

function panel(area, headingId, heading, ...content) {
  return el("section", { class: `panel area-${area}`, "aria-labelledby": headingId }, el("h2", { id: headingId }, heading), ...content);
}

export function mountTrade(main, ctx, symbol) {
  const { live, app } = ctx;
  const market = fmt.market(symbol);
  if (!market) {
    clear(main, el("section", { class: "panel narrow" }, el("h1", {}, `Unknown market ${symbol}`),
      el("a", { href: "/", "data-link": true }, "Back to trading")));
    return;
  }
  const mode = () => app.me?.mode;
  let venue = venueOf(mode()); // the market shown is the one the user's orders go to

  const ticker = createTicker(market, { onSelect: (s) => app.navigate(`/trade/${s}`), venue });
  // Another interval: its candle channel instead of the old one (the chart reloads its own history).
  const onInterval = () => {
    live.unsubscribe(channels);
    channels = marketChannels(symbol, venue, chart.interval());
    live.subscribe(channels);
  };
  const chart = createChart(market, { venue, mode, onInterval });
  const depth = createDepth(market, { venue });
  const ticket = createTicket(market, { onPlaced: (order) => { orders.onOrder(order); chart.onOrder(order); }, venue: () => venue });
  const book = createBook(market, { onPick: (price) => ticket.setPrice(price), venue });
  const trades = createMarketTrades(market, { venue });
  const orders = createOrders({ mode });
  const positions = createPositions({ mode });
  const balances = createBalances({ mode });

  clear(main, el("div", { class: "trade-grid", dataset: { symbol } },
    el("section", { class: "panel area-ticker", "aria-labelledby": "ticker-h" }, ticker.node),
    panel("chart", "chart-h", "Chart", chart.node),
    panel("book", "book-h", "Order book", book.node, depth.node),
    panel("ticket", "ticket-h", "Place order", ticket.node),
    panel("trades", "trades-h", "Market trades", trades.node),
    panel("open", "open-h", "Open orders", orders.openNode),
    panel("positions", "positions-h", "Positions", positions.node),
    panel("balances", "balances-h", "Balances", balances.node),
    panel("history", "history-h", "Order history", orders.historyNode)));

  const loadPublic = () => Promise.all([ticker.load(), book.load(), depth.load(), trades.load()]);
  const loadPrivate = () => Promise.all([orders.load(), positions.load(), balances.load(), chart.loadPrivate()]).catch((exc) => {
    if (exc.status !== 401) toast(`Refresh failed: ${exc.message}`, "error");
  });

  let channels = marketChannels(symbol, venue, chart.interval());
  live.subscribe(channels);
  ctx.own(() => live.unsubscribe(channels));
  // A mode switch moves the page to the other venue's market: its channels instead of the old ones, its
  // snapshots reloaded; what still arrives from the old venue is dropped by the panels (data.venue).
  const switchVenue = (next) => {
    if (next === venue) return;
    live.unsubscribe(channels);
    venue = next;
    channels = marketChannels(symbol, venue, chart.interval());
    live.subscribe(channels);
    for (const view of [ticker, book, depth, trades, chart]) view.setVenue(venue);
    ticket.requote();
    loadPublic();
  };
  ctx.own(() => chart.dispose());
  ctx.own(() => depth.dispose());
  ctx.own(live.on("TICKER", ticker.onTicker));
  ctx.own(live.on("DEPTH", book.onDepth));
  ctx.own(live.on("DEPTH", depth.onDepth));
  ctx.own(live.on("MARKET_TRADE", trades.onTrade));
  ctx.own(live.on("CANDLE", chart.onCandle));
  ctx.own(live.on("ORDER_UPDATE", orders.onOrder));
  ctx.own(live.on("ORDER_UPDATE", chart.onOrder));
  ctx.own(live.on("TRADE", orders.onFill));
  ctx.own(live.on("TRADE", chart.onFill));
  ctx.own(live.on("POSITION_UPDATE", positions.onUpdate));
  ctx.own(live.on("BALANCE_UPDATE", balances.onUpdate));
  ctx.own(live.on("BALANCE_UPDATE", ticket.refresh)); // the ticket's available balance
  ctx.own(live.on("DEPTH", ticket.onDepth)); // a market order's cost at the best price
  ctx.own(live.on("OPEN", () => { loadPublic(); loadPrivate(); }));
  ctx.own(app.onMe((me) => {
    if (!me) return;
    switchVenue(venueOf(me.mode));
    orders.reset();
    positions.reset();
    balances.reset();
    loadPrivate();
  }));
  ctx.poll(loadPublic);
  ctx.poll(loadPrivate);
  // Binance can become unreachable while our socket stays live (and nothing is pushed then): in testnet mode
  // the balances are read again every few seconds regardless, so the page shows the unreachable banner instead
  // of the last numbers, and drops it once Binance answers again.
  const venueCheck = setInterval(() => {
    if (live.isLive && mode() === "testnet" && !document.hidden) balances.load().catch(() => {});
  }, VENUE_CHECK_MS);
  ctx.own(() => clearInterval(venueCheck));

  loadPublic();
  loadPrivate();
  chart.load();
}
