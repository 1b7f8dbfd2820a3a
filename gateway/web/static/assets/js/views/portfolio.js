// The account's pictures and history on the account page: the equity curve (`GET /api/equity`: the value in the
// quote asset from the service's snapshots, at its interval and after each fill), realized PnL per day as bars
// (`GET /api/pnl/daily`), per-position PnL (views/trade/positions.js), and order and trade history with
// filters, paging and CSV export of the same page (`GET /api/history/orders|trades`).

import { api, download } from "../api.js";
import { clear, el, toast } from "../dom.js";
import * as fmt from "../fmt.js";
import { equityCurve, historyPath, pnlBars, rangeError } from "../state/account.js";
import { createPositions } from "./trade/positions.js";
import { dataTable, emptyRow, num, opt, statusBadge } from "./table.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 600;
const H = 180;
const PAGE = 20;
// A fill's snapshot is written just after the fill's events: the curve is asked again a moment later too.
const AFTER_FILL_MS = [300, 1500, 4000];
// Snapshots are not pushed: with none yet (a fill before the page opened waits for its window's end, an account
// without fills for the next interval) the curve is asked again this often until one is; after that at the
// schedule's pace (`interval_s`), never more often than this.
const UNTIL_FIRST_MS = 2500;

function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  node.append(...children);
  return node;
}

const money = (value) => fmt.assetAmount(value);

export function createPortfolio(ctx) {
  const { app, live } = ctx;
  const mode = () => app.me?.mode || "paper";

  // -- equity curve ---------------------------------------------------------------------------------------
  const equitySummary = el("p", { class: "small", id: "equity-summary", "aria-live": "polite" });
  const equityBox = el("div", { class: "picture", id: "equity-box" });

  let again = null;
  let gone = false; // the view was left: a load still in flight asks nothing more
  ctx.own(() => { gone = true; });
  function askAgain(ms) {
    if (again !== null || gone) return;
    again = setTimeout(() => {
      timers.delete(again);
      again = null;
      loadEquity().catch(() => {});
    }, ms);
    timers.add(again);
  }

  async function loadEquity() {
    const body = await api("GET", `/api/equity?mode=${encodeURIComponent(mode())}`);
    const curve = equityCurve(body.points, W, H);
    const testnet = mode() === "testnet";
    if (!testnet) askAgain(curve ? Math.max(UNTIL_FIRST_MS, body.interval_s * 1000) : UNTIL_FIRST_MS);
    if (!curve) {
      equitySummary.textContent = testnet
        ? "Testnet balances live on Binance: the equity curve covers paper trading."
        : "No snapshots yet: the first comes with your first fill or at the next interval.";
      clear(equityBox);
      return;
    }
    const q = body.quote_asset;
    const sign = fmt.signClass(curve.change);
    clear(equitySummary, `Equity ${money(curve.last)} ${q} · `,
      el("span", { class: sign, id: "equity-change" }, `${sign === "pos" ? "+" : ""}${money(curve.change)} ${q}`),
      ` since ${fmt.dateTime(body.points[0].ts)} · ${body.points.length} snapshots`);
    const chart = svg("svg", {
      id: "equity-chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
      "aria-label": `Equity from ${money(curve.first)} to ${money(curve.last)} ${q}; low ${money(curve.lo)}, high ${money(curve.hi)}`,
      "data-points": body.points.length, "data-last": curve.last,
    }, svg("path", { id: "equity-line", d: curve.d, class: `line ${sign}`, fill: "none", "vector-effect": "non-scaling-stroke" }));
    clear(equityBox, chart,
      el("div", { class: "picture-axis small muted" }, el("span", {}, `low ${money(curve.lo)}`), el("span", {}, `high ${money(curve.hi)}`)));
  }

  // -- realized PnL per day -------------------------------------------------------------------------------
  const pnlBox = el("div", { class: "picture", id: "pnl-box" });
  const pnlBody = el("tbody", { id: "pnl-body" });

  async function loadPnl() {
    const days = await api("GET", `/api/pnl/daily?mode=${encodeURIComponent(mode())}`);
    const { zero, bars } = pnlBars(days, W, H);
    clear(pnlBox, days.length ? svg("svg", {
      id: "pnl-chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img",
      "aria-label": `Realized PnL per day over ${days.length} days; the table below lists them`,
    }, svg("line", { x1: 0, x2: W, y1: zero, y2: zero, class: "zero" }),
    ...bars.map((b) => svg("rect", { x: b.x, y: b.y, width: b.w, height: b.h, class: b.sign < 0 ? "neg" : "pos", "data-day": b.day },
      svg("title", {}, `${b.day}: ${money(b.value)}`)))) : null);
    clear(pnlBody, days.length ? days.slice().reverse().map((d) => el("tr", { dataset: { day: d.day } },
      el("td", {}, d.day),
      el("td", { class: `num ${fmt.signClass(d.realized_pnl)}` }, money(d.realized_pnl)),
      el("td", { class: "num opt" }, money(d.fees)),
      el("td", { class: "num" }, String(d.trades)))) : emptyRow(4, "No fills yet"));
  }

  // -- positions ------------------------------------------------------------------------------------------
  const positions = createPositions({ mode });

  // -- history --------------------------------------------------------------------------------------------
  let kind = "orders";
  const cursors = [null]; // the cursor of each page seen; the last is the page shown
  let nextCursor = null;
  const symbolSel = el("select", { id: "hist-symbol", name: "symbol" }, el("option", { value: "" }, "All"),
    fmt.allMarkets().map((m) => el("option", { value: m.symbol }, m.symbol)));
  const sideSel = el("select", { id: "hist-side", name: "side" }, el("option", { value: "" }, "Both"),
    el("option", { value: "BUY" }, "Buy"), el("option", { value: "SELL" }, "Sell"));
  const statusSel = el("select", { id: "hist-status", name: "status" }, el("option", { value: "" }, "All"),
    ["open", "closed", "FILLED", "PARTIALLY_FILLED", "CANCELED", "REJECTED", "EXPIRED"].map((s) => el("option", { value: s }, s)));
  const fromIn = el("input", { id: "hist-from", name: "from", type: "date" });
  const toIn = el("input", { id: "hist-to", name: "to", type: "date" });
  const labelled = (label, control) => el("label", { class: "filter" }, el("span", { class: "small muted" }, label), control);
  const statusField = labelled("Status", statusSel);
  const histError = el("p", { class: "form-error", role: "alert", id: "hist-error" });
  const filters = el("form", { class: "filters", id: "history-filters", "aria-label": "History filters" },
    labelled("Symbol", symbolSel), labelled("Side", sideSel), statusField, labelled("From", fromIn), labelled("To", toIn),
    el("button", { type: "submit", class: "btn btn-small btn-primary" }, "Apply"));
  const tabOrders = el("button", { type: "button", class: "btn btn-small", id: "hist-tab-orders", "aria-pressed": "true", onclick: () => setKind("orders") }, "Orders");
  const tabTrades = el("button", { type: "button", class: "btn btn-small", id: "hist-tab-trades", "aria-pressed": "false", onclick: () => setKind("trades") }, "Trades");
  const newer = el("button", { type: "button", class: "btn btn-small btn-ghost", id: "hist-newer", onclick: () => page(-1) }, "Newer");
  const older = el("button", { type: "button", class: "btn btn-small btn-ghost", id: "hist-older", onclick: () => page(1) }, "Older");
  const exportBtn = el("button", { type: "button", class: "btn btn-small", id: "hist-export", onclick: () => exportCsv() }, "Export CSV");
  const pageInfo = el("span", { class: "small muted", id: "hist-page" });
  const tableBox = el("div", { id: "history-table" });

  const current = () => ({
    mode: mode(), symbol: symbolSel.value, side: sideSel.value, status: statusSel.value, from: fromIn.value, to: toIn.value,
  });

  function setKind(next) {
    kind = next;
    tabOrders.setAttribute("aria-pressed", String(kind === "orders"));
    tabTrades.setAttribute("aria-pressed", String(kind === "trades"));
    statusField.hidden = kind !== "orders";
    cursors.splice(0, cursors.length, null);
    loadHistory().catch(showHistoryError);
  }

  function showHistoryError(exc) {
    histError.textContent = exc.message;
  }

  filters.addEventListener("submit", (event) => {
    event.preventDefault();
    cursors.splice(0, cursors.length, null);
    loadHistory().catch(showHistoryError);
  });

  function page(step) {
    if (step > 0 && nextCursor) cursors.push(nextCursor);
    else if (step < 0 && cursors.length > 1) cursors.pop();
    else return;
    loadHistory().catch(showHistoryError);
  }

  async function loadHistory() {
    const f = current();
    const problem = rangeError(f);
    histError.textContent = problem || "";
    if (problem) return;
    const cursor = cursors[cursors.length - 1];
    const body = await api("GET", historyPath(kind, f, { cursor, limit: PAGE }));
    nextCursor = body.next_cursor;
    newer.disabled = cursors.length <= 1;
    older.disabled = !nextCursor;
    pageInfo.textContent = `Page ${cursors.length}`;
    clear(tableBox, kind === "orders" ? ordersTable(body.items) : tradesTable(body.items));
  }

  async function exportCsv() {
    const f = current();
    try {
      await download(historyPath(kind, f, { cursor: cursors[cursors.length - 1], limit: PAGE, format: "csv" }), `${kind}.csv`);
    } catch (exc) {
      toast(`Export failed: ${exc.message}`, "error");
    }
  }

  function ordersTable(items) {
    return dataTable("history-orders", "Order history", ["Time", "Symbol", "Side", opt("Type"), num("Quantity"), num("Price"),
      num("Filled", true), "Status"],
    el("tbody", {}, items.length ? items.map((o) => el("tr", { dataset: { orderId: o.order_id } },
      el("td", {}, fmt.dateTime(o.created_at)),
      el("td", {}, o.symbol),
      el("td", { class: o.side === "BUY" ? "pos" : "neg" }, o.side),
      el("td", { class: "opt" }, o.type),
      el("td", { class: "num" }, fmt.qty(o.symbol, o.quantity)),
      el("td", { class: "num" }, o.price === null ? "market" : fmt.price(o.symbol, o.price)),
      el("td", { class: "num opt" }, fmt.qty(o.symbol, o.filled_quantity)),
      el("td", {}, statusBadge(o.status)))) : emptyRow(8, "No orders match")));
  }

  function tradesTable(items) {
    return dataTable("history-trades", "Trade history", ["Time", "Symbol", "Side", num("Price"), num("Quantity"), num("Fee", true), opt("Role")],
      el("tbody", {}, items.length ? items.map((t) => el("tr", { dataset: { tradeId: t.trade_id } },
        el("td", {}, fmt.dateTime(t.ts)),
        el("td", {}, t.symbol),
        el("td", { class: t.side === "BUY" ? "pos" : "neg" }, t.side),
        el("td", { class: "num" }, fmt.price(t.symbol, t.price)),
        el("td", { class: "num" }, fmt.qty(t.symbol, t.quantity)),
        el("td", { class: "num opt" }, `${money(t.fee)} ${t.fee_asset}`),
        el("td", { class: "opt" }, t.liquidity))) : emptyRow(7, "No trades match")));
  }

  // -- loading --------------------------------------------------------------------------------------------
  const loadPictures = () => Promise.all([loadEquity(), loadPnl(), positions.load()]);
  async function loadAll() {
    try {
      await Promise.all([loadPictures(), loadHistory()]);
    } catch (exc) {
      if (exc.status !== 401) toast(`Could not load the account's history: ${exc.message}`, "error");
    }
  }

  const timers = new Set();
  ctx.own(() => timers.forEach(clearTimeout));
  ctx.own(live.on("TRADE", () => {
    for (const ms of AFTER_FILL_MS) {
      const t = setTimeout(() => { timers.delete(t); loadPictures().catch(() => {}); }, ms);
      timers.add(t);
    }
    if (cursors.length === 1) loadHistory().catch(() => {});
  }));
  ctx.own(live.on("POSITION_UPDATE", positions.onUpdate));
  ctx.own(app.onMe(() => { positions.reset(); cursors.splice(0, cursors.length, null); loadAll(); }));
  ctx.poll(loadAll);

  const panel = (id, heading, ...content) => el("section", { class: "panel", "aria-labelledby": `${id}-h`, id },
    el("h2", { id: `${id}-h` }, heading), ...content);
  const nodes = [
    panel("equity-panel", "Equity", equitySummary, equityBox),
    panel("pnl-panel", "Realized PnL per day", pnlBox,
      dataTable("pnl-days", "Realized PnL per day", ["Day (UTC)", num("Realized PnL"), num("Fees", true), num("Fills")], pnlBody)),
    panel("account-positions", "Positions", positions.node),
    el("section", { class: "panel span-all", "aria-labelledby": "history-panel-h", id: "history-panel" },
      el("h2", { id: "history-panel-h" }, "History"),
      el("div", { class: "row hist-tabs", role: "group", "aria-label": "Which history" }, tabOrders, tabTrades),
      filters, histError, tableBox,
      el("div", { class: "row pager" }, newer, pageInfo, older, exportBtn)),
  ];
  return { nodes, load: loadAll };
}
