// The trading view for one symbol: ticker, candle chart, order book ladder, market trades, order ticket,
// open orders (cancel), order history (with fills), positions (live PnL) and balances.

import { api, ApiError, publicApi } from "../api.js";
import { clear, debounce, el, toast } from "../dom.js";
import * as fmt from "../fmt.js";
import { clearErrors, field, formError, setFieldError, showErrors } from "../forms.js";
import { CandleChart } from "./chart.js";

const BOOK_LEVELS = 10;
const TRADES_SHOWN = 30;
const OPEN = new Set(["PENDING", "NEW", "PARTIALLY_FILLED", "PENDING_CANCEL"]);

export function mountTrade(main, ctx, symbol) {
  const { live, app } = ctx;
  if (fmt.allMarkets().length && !fmt.market(symbol)) {
    clear(main, el("section", { class: "panel narrow" }, el("h1", {}, `Unknown market ${symbol}`),
      el("a", { href: "/", "data-link": true }, "Back to trading")));
    return;
  }
  const [base, quoteAsset] = fmt.baseQuote(symbol);
  const state = {
    lastPrice: null,
    marks: new Map(),
    orders: new Map(),
    positions: new Map(),
    positionsSource: "api",
    balances: [],
    depth: { bids: [], asks: [] },
    trades: [],
    openFills: new Set(),
    disposed: false,
  };
  const mode = () => app.me?.mode || "paper";

  // ---- layout -------------------------------------------------------------------------------------------
  const marketSelect = el("select", { id: "market-select", "aria-label": "Market" },
    (fmt.allMarkets().length ? fmt.allMarkets() : [{ symbol }]).map((m) =>
      el("option", { value: m.symbol, selected: m.symbol === symbol }, m.symbol)));
  marketSelect.addEventListener("change", () => app.navigate(`/trade/${marketSelect.value}`));
  const lastPriceNode = el("span", { class: "last-price", id: "last-price", "aria-live": "off" }, "—");
  const tickerTime = el("span", { class: "muted small", id: "ticker-time" });

  const chartBox = el("div", { class: "chart", id: "chart", role: "img", "aria-label": `${symbol} 1 minute candle chart` });
  const chartNote = el("p", { class: "muted small chart-note", id: "chart-note" });
  const bookBody = el("div", { class: "book", id: "order-book" });
  const tradesBody = el("tbody", { id: "market-trades-body" });
  const openBody = el("tbody", { id: "open-orders-body" });
  const historyBody = el("tbody", { id: "order-history-body" });
  const positionsBody = el("tbody", { id: "positions-body" });
  const positionsNote = el("p", { class: "muted small", id: "positions-note" });
  const balancesBody = el("tbody", { id: "balances-body" });

  const table = (id, caption, headers, body) => el("div", { class: "table-wrap" },
    el("table", { id, class: "data" },
      el("caption", { class: "sr-only" }, caption),
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", { scope: "col", class: [h.num ? "num" : "", h.opt ? "opt" : ""].join(" ").trim() }, h.label ?? h)))),
      body));
  const num = (label, opt = false) => ({ label, num: true, opt });
  const opt = (label) => ({ label, opt: true });

  const ticket = buildTicket();

  clear(main, el("div", { class: "trade-grid", dataset: { symbol } },
    el("section", { class: "panel area-ticker", "aria-labelledby": "ticker-h" },
      el("h1", { id: "ticker-h", class: "ticker-head" }, el("span", { class: "sr-only" }, "Ticker "), marketSelect),
      el("div", { class: "ticker-line" }, lastPriceNode, " ", el("span", { class: "muted" }, quoteAsset), " ", tickerTime)),
    el("section", { class: "panel area-chart", "aria-labelledby": "chart-h" },
      el("h2", { id: "chart-h" }, "Chart (1m)"), chartBox, chartNote),
    el("section", { class: "panel area-book", "aria-labelledby": "book-h" },
      el("h2", { id: "book-h" }, "Order book"), bookBody),
    el("section", { class: "panel area-ticket", "aria-labelledby": "ticket-h" },
      el("h2", { id: "ticket-h" }, "Place order"), ticket.node),
    el("section", { class: "panel area-trades", "aria-labelledby": "trades-h" },
      el("h2", { id: "trades-h" }, "Market trades"),
      table("market-trades", "Recent market trades", [num("Price"), num("Quantity"), "Time"], tradesBody)),
    el("section", { class: "panel area-open", "aria-labelledby": "open-h" },
      el("h2", { id: "open-h" }, "Open orders"),
      table("open-orders", "Open orders", [opt("Symbol"), "Side", opt("Type"), num("Price"), num("Quantity"), num("Filled", true), "Status", ""], openBody)),
    el("section", { class: "panel area-positions", "aria-labelledby": "positions-h" },
      el("h2", { id: "positions-h" }, "Positions"),
      table("positions", "Positions", ["Symbol", num("Quantity"), num("Entry"), num("Mark", true), num("Unrealized PnL"), num("Realized PnL", true)], positionsBody),
      positionsNote),
    el("section", { class: "panel area-balances", "aria-labelledby": "balances-h" },
      el("h2", { id: "balances-h" }, "Balances"),
      table("balances", "Balances", ["Asset", num("Free"), num("Locked"), num("Total")], balancesBody)),
    el("section", { class: "panel area-history", "aria-labelledby": "history-h" },
      el("h2", { id: "history-h" }, "Order history"),
      table("order-history", "Order history", [opt("Time"), opt("Symbol"), "Side", opt("Type"), num("Quantity", true), num("Filled"), num("Avg price"), "Status", ""], historyBody))));

  const chart = new CandleChart(chartBox, chartNote, symbol);

  // ---- order ticket ---------------------------------------------------------------------------------------
  function buildTicket() {
    const m = fmt.market(symbol);
    const sideSet = el("fieldset", { class: "field side-toggle", dataset: { field: "side" } },
      el("legend", {}, "Side"),
      el("label", { class: "side side-buy" }, el("input", { type: "radio", name: "side", value: "BUY", checked: true, id: "ticket-side-buy" }), "Buy"),
      el("label", { class: "side side-sell" }, el("input", { type: "radio", name: "side", value: "SELL", id: "ticket-side-sell" }), "Sell"),
      el("div", { class: "field-error", id: "ticket-side-error", role: "alert" }));
    const typeSel = el("select", {}, el("option", { value: "MARKET" }, "Market"), el("option", { value: "LIMIT", selected: true }, "Limit"));
    const tifSel = el("select", {},
      el("option", { value: "GTC" }, "GTC — good till cancelled"),
      el("option", { value: "IOC" }, "IOC — immediate or cancel"),
      el("option", { value: "FOK" }, "FOK — fill or kill"));
    const qtyIn = el("input", { type: "text", inputMode: "decimal", autocomplete: "off", placeholder: m ? m.step_size : "", required: true });
    const priceIn = el("input", { type: "text", inputMode: "decimal", autocomplete: "off", placeholder: m ? m.tick_size : "" });
    const quoteNote = el("p", { class: "muted small", id: "ticket-quote", "aria-live": "polite" });
    const submit = el("button", { type: "submit", class: "btn btn-buy", id: "ticket-submit" }, `Buy ${base}`);
    const form = el("form", { id: "ticket", class: "stack", novalidate: true },
      sideSet,
      field({ form: "ticket", name: "type", label: "Order type", control: typeSel }),
      field({ form: "ticket", name: "quantity", label: `Quantity (${base})`, control: qtyIn, hint: m ? `step ${m.step_size}` : null }),
      field({ form: "ticket", name: "price", label: `Limit price (${quoteAsset})`, control: priceIn, hint: m ? `tick ${m.tick_size}` : null }),
      field({ form: "ticket", name: "time_in_force", label: "Time in force", control: tifSel }),
      quoteNote,
      formError(),
      submit,
      el("p", { class: "muted small" }, m ? `Min notional ${m.min_notional} ${quoteAsset}` : ""));

    const side = () => form.querySelector("input[name=side]:checked").value;
    function sync() {
      const isLimit = typeSel.value === "LIMIT";
      priceIn.disabled = !isLimit;
      form.querySelector('[data-field="price"]').classList.toggle("is-disabled", !isLimit);
      if (!isLimit && tifSel.value === "GTC") tifSel.value = "IOC";
      tifSel.querySelector('option[value="GTC"]').disabled = !isLimit;
      submit.textContent = `${side() === "BUY" ? "Buy" : "Sell"} ${base}`;
      submit.className = `btn ${side() === "BUY" ? "btn-buy" : "btn-sell"}`;
      requestQuote();
    }
    const requestQuote = debounce(async () => {
      quoteNote.textContent = "";
      if (typeSel.value !== "MARKET" || !(Number(qtyIn.value) > 0)) return;
      try {
        const q = await api("POST", "/api/orders/quote", { symbol, side: side(), quantity: qtyIn.value.trim() });
        if (q.avg_price) {
          quoteNote.textContent = `≈ ${fmt.price(symbol, q.avg_price)} avg, ${fmt.qty(symbol, q.fillable_quantity)} fillable now`;
        } else {
          quoteNote.textContent = "No liquidity on the book right now.";
        }
      } catch { /* the quote is a hint only */ }
    }, 300);
    form.addEventListener("change", sync);
    qtyIn.addEventListener("input", requestQuote);

    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearErrors(form);
      const isLimit = typeSel.value === "LIMIT";
      const body = { symbol, side: side(), type: typeSel.value, quantity: qtyIn.value.trim(), time_in_force: tifSel.value };
      let bad = false;
      if (!/^\d*\.?\d+$/.test(body.quantity) || !(Number(body.quantity) > 0)) {
        setFieldError(form, "quantity", "Enter a positive quantity."); bad = true;
      }
      if (isLimit) {
        body.price = priceIn.value.trim();
        if (!/^\d*\.?\d+$/.test(body.price) || !(Number(body.price) > 0)) {
          setFieldError(form, "price", "Enter a positive limit price."); bad = true;
        }
      }
      if (bad) { form.querySelector("[aria-invalid=true]")?.focus(); return; }
      submit.disabled = true;
      try {
        const order = await api("POST", "/api/orders", body);
        upsertOrder(order);
        toast(`Order accepted: ${order.side} ${fmt.qty(symbol, order.quantity)} ${base} (${order.status})`, "success");
        renderOrders();
      } catch (exc) {
        showErrors(form, exc);
      } finally {
        submit.disabled = false;
      }
    });
    queueMicrotask(sync);
    return {
      node: form,
      setPrice(p) {
        typeSel.value = "LIMIT";
        priceIn.value = fmt.price(symbol, p);
        sync();
        priceIn.focus();
      },
    };
  }

  // ---- rendering --------------------------------------------------------------------------------------------
  function renderTicker() {
    lastPriceNode.textContent = state.lastPrice ? fmt.price(symbol, state.lastPrice) : "—";
  }

  function renderBook() {
    const asks = state.depth.asks.slice(0, BOOK_LEVELS);
    const bids = state.depth.bids.slice(0, BOOK_LEVELS);
    const maxQty = Math.max(1e-18, ...asks.map((l) => Number(l[1])), ...bids.map((l) => Number(l[1])));
    const row = (side, [p, q]) => el("div", { class: `level level-${side}`, role: "row" },
      el("span", { class: "bar", "aria-hidden": "true", style: `width:${Math.round((Number(q) / maxQty) * 100)}%` }),
      el("button", { type: "button", class: "px", role: "cell", title: "Use this price in the order ticket", onclick: () => ticket.setPrice(p) },
        fmt.price(symbol, p)),
      el("span", { class: "qty", role: "cell" }, fmt.qty(symbol, q)));
    const spread = asks.length && bids.length ? Number(asks[0][0]) - Number(bids[0][0]) : null;
    clear(bookBody,
      el("div", { class: "level level-head", role: "row" }, el("span", { role: "columnheader" }, `Price (${quoteAsset})`), el("span", { role: "columnheader" }, `Size (${base})`)),
      el("div", { class: "asks", role: "rowgroup", "aria-label": "Asks" }, asks.slice().reverse().map((l) => row("ask", l))),
      el("div", { class: "spread", id: "spread" }, spread !== null ? `spread ${fmt.price(symbol, spread.toFixed(10))}` : asks.length || bids.length ? "" : "Book is empty"),
      el("div", { class: "bids", role: "rowgroup", "aria-label": "Bids" }, bids.map((l) => row("bid", l))));
    bookBody.setAttribute("role", "table");
    bookBody.setAttribute("aria-label", `${symbol} order book`);
  }

  function renderTrades() {
    clear(tradesBody, state.trades.length ? state.trades.slice(0, TRADES_SHOWN).map((t) =>
      el("tr", { class: t.side === "SELL" ? "sell" : "buy" },
        el("td", { class: "num" }, fmt.price(symbol, t.price)),
        el("td", { class: "num" }, fmt.qty(symbol, t.quantity)),
        el("td", {}, fmt.time(t.ts)))) : emptyRow(3, "No trades yet"));
  }

  function emptyRow(cols, text) {
    return el("tr", { class: "empty" }, el("td", { colSpan: cols }, text));
  }

  function ordersOfMode() {
    return [...state.orders.values()].filter((o) => !o.mode || o.mode === mode());
  }

  function renderOrders() {
    const open = ordersOfMode().filter((o) => OPEN.has(o.status)).sort((a, b) => String(b.created_at).localeCompare(String(a.created_at)));
    clear(openBody, open.length ? open.map((o) => el("tr", { dataset: { orderId: o.order_id, status: o.status } },
      el("td", { class: "opt" }, o.symbol),
      el("td", { class: o.side === "BUY" ? "buy" : "sell" }, o.side),
      el("td", { class: "opt" }, o.type),
      el("td", { class: "num" }, o.price ? fmt.price(o.symbol, o.price) : "market"),
      el("td", { class: "num" }, fmt.qty(o.symbol, o.quantity)),
      el("td", { class: "num opt" }, fmt.qty(o.symbol, o.filled_quantity)),
      el("td", { class: "status" }, statusBadge(o.status)),
      el("td", {}, el("button", {
        type: "button", class: "btn btn-small", disabled: o.status === "PENDING_CANCEL",
        "aria-label": `Cancel ${o.side} ${o.type} order ${o.order_id}`,
        onclick: (ev) => cancelOrder(o, ev.currentTarget),
      }, "Cancel")))) : emptyRow(8, "No open orders"));

    const closed = ordersOfMode().filter((o) => !OPEN.has(o.status))
      .sort((a, b) => String(b.updated_at || b.created_at).localeCompare(String(a.updated_at || a.created_at))).slice(0, 50);
    const rows = [];
    for (const o of closed) {
      const expanded = state.openFills.has(o.order_id);
      rows.push(el("tr", { dataset: { orderId: o.order_id, status: o.status } },
        el("td", { class: "opt" }, fmt.time(o.updated_at || o.created_at)),
        el("td", { class: "opt" }, o.symbol),
        el("td", { class: o.side === "BUY" ? "buy" : "sell" }, o.side),
        el("td", { class: "opt" }, o.type),
        el("td", { class: "num opt" }, fmt.qty(o.symbol, o.quantity)),
        el("td", { class: "num" }, fmt.qty(o.symbol, o.filled_quantity)),
        el("td", { class: "num" }, o.avg_price ? fmt.price(o.symbol, o.avg_price) : "—"),
        el("td", { class: "status" }, statusBadge(o.status), o.reason ? el("span", { class: "muted small" }, ` ${o.reason}`) : null),
        el("td", {}, Number(o.filled_quantity) > 0 ? el("button", {
          type: "button", class: "btn btn-small btn-ghost", "aria-expanded": expanded ? "true" : "false",
          "aria-controls": `fills-${o.order_id}`, onclick: () => toggleFills(o),
        }, expanded ? "Hide fills" : "Fills") : null)));
      if (expanded) {
        rows.push(el("tr", { class: "fills-row", id: `fills-${o.order_id}` }, el("td", { colSpan: 9 }, renderFills(o))));
      }
    }
    clear(historyBody, rows.length ? rows : emptyRow(9, "No past orders"));
  }

  function renderFills(o) {
    if (!o.fills) return el("span", { class: "muted" }, "Loading fills…");
    if (!o.fills.length) return el("span", { class: "muted" }, "No fills");
    return el("table", { class: "data fills" },
      el("thead", {}, el("tr", {}, ["Trade", "Price", "Quantity", "Fee", "Liquidity", "Time"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, o.fills.map((f) => el("tr", {},
        el("td", { class: "mono" }, String(f.trade_id).slice(0, 12)),
        el("td", { class: "num" }, fmt.price(o.symbol, f.price)),
        el("td", { class: "num" }, fmt.qty(o.symbol, f.quantity)),
        el("td", { class: "num" }, `${fmt.assetAmount(f.fee)} ${f.fee_asset}`),
        el("td", {}, f.liquidity),
        el("td", {}, fmt.time(f.ts))))));
  }

  async function toggleFills(o) {
    if (state.openFills.has(o.order_id)) {
      state.openFills.delete(o.order_id);
      renderOrders();
      return;
    }
    state.openFills.add(o.order_id);
    renderOrders();
    try {
      const detail = await api("GET", `/api/orders/${encodeURIComponent(o.order_id)}`);
      upsertOrder(detail);
    } catch (exc) {
      toast(`Could not load fills: ${exc.message}`, "error");
    }
    renderOrders();
    document.querySelector(`#order-history-body tr[data-order-id="${CSS.escape(o.order_id)}"] button`)?.focus();
  }

  function statusBadge(status) {
    return el("span", { class: `badge badge-${String(status).toLowerCase()}` }, status);
  }

  function renderPositions() {
    const rows = [...state.positions.values()].filter((p) => Number(p.quantity) !== 0 || Number(p.realized_pnl) !== 0);
    clear(positionsBody, rows.length ? rows.map((p) => {
      const mark = state.marks.get(p.symbol) ?? p.mark_price;
      const upnl = mark && p.avg_entry_price ? Number(p.quantity) * (Number(mark) - Number(p.avg_entry_price)) : p.unrealized_pnl;
      return el("tr", { dataset: { symbol: p.symbol } },
        el("td", {}, p.symbol),
        el("td", { class: "num" }, fmt.qty(p.symbol, p.quantity)),
        el("td", { class: "num" }, p.avg_entry_price ? fmt.price(p.symbol, p.avg_entry_price) : "—"),
        el("td", { class: "num opt" }, mark ? fmt.price(p.symbol, mark) : "—"),
        el("td", { class: `num upnl ${fmt.signClass(upnl)}` }, upnl !== null && upnl !== undefined ? fmt.quote(p.symbol, upnl) : "—"),
        el("td", { class: `num opt ${fmt.signClass(p.realized_pnl)}` }, fmt.quote(p.symbol, p.realized_pnl ?? "0")));
    }) : emptyRow(6, "No positions"));
    positionsNote.textContent = state.positionsSource === "fills"
      ? "Estimated from your fills and the last price (the positions service is not available)." : "";
  }

  function renderBalances() {
    clear(balancesBody, state.balances.length ? state.balances.map((b) => el("tr", { dataset: { asset: b.asset } },
      el("td", {}, b.asset),
      el("td", { class: "num" }, fmt.assetAmount(b.free)),
      el("td", { class: "num" }, fmt.assetAmount(b.locked)),
      el("td", { class: "num" }, fmt.assetAmount(b.total ?? Number(b.free) + Number(b.locked))))) : emptyRow(4, "No balances"));
  }

  // ---- data -------------------------------------------------------------------------------------------------
  function upsertOrder(o) {
    const prev = state.orders.get(o.order_id);
    if (prev && prev.version !== undefined && o.version !== undefined && o.version < prev.version) return;
    state.orders.set(o.order_id, { ...prev, ...o });
  }

  async function cancelOrder(o, button) {
    button.disabled = true;
    try {
      upsertOrder(await api("DELETE", `/api/orders/${encodeURIComponent(o.order_id)}`));
      toast("Cancel requested", "info");
    } catch (exc) {
      toast(exc.status === 409 ? "The order is already final." : `Cancel failed: ${exc.message}`, "error");
      loadOrders();
    }
    renderOrders();
  }

  async function loadTicker() {
    try {
      const t = await publicApi("GET", `/api/markets/${symbol}/ticker`);
      onTicker(t);
    } catch { /* no price yet */ }
  }

  function onTicker(t) {
    const p = t?.price ?? t?.last ?? t?.last_price;
    if (!p) return;
    const tickSymbol = t.symbol || symbol;
    state.marks.set(tickSymbol, String(p));
    if (tickSymbol === symbol) {
      state.lastPrice = String(p);
      tickerTime.textContent = t.ts ? fmt.time(t.ts) : "";
      renderTicker();
      chart.onPrice(p, t.ts);
    }
    if (state.positions.has(tickSymbol)) renderPositions();
  }

  async function loadDepth() {
    try {
      state.depth = await publicApi("GET", `/api/markets/${symbol}/depth?limit=${BOOK_LEVELS}`);
      renderBook();
    } catch { /* keep the last book */ }
  }

  async function loadMarketTrades() {
    try {
      state.trades = await publicApi("GET", `/api/markets/${symbol}/trades?limit=${TRADES_SHOWN}`);
      renderTrades();
    } catch { /* keep */ }
  }

  async function loadOrders() {
    const [open, closed] = await Promise.all([
      api("GET", "/api/orders?status=open&limit=200"),
      api("GET", "/api/orders?status=closed&limit=50"),
    ]);
    for (const o of [...open.items, ...closed.items]) upsertOrder(o);
    // An order we still show as open that the server no longer lists as open has moved on: drop the stale copy.
    const openIds = new Set(open.items.map((o) => o.order_id));
    for (const o of state.orders.values()) {
      if (OPEN.has(o.status) && !openIds.has(o.order_id) && o.mode === mode()) {
        const fresh = closed.items.find((c) => c.order_id === o.order_id);
        if (!fresh) state.orders.delete(o.order_id);
      }
    }
    renderOrders();
  }

  async function loadPositions() {
    try {
      const list = await api("GET", "/api/positions");
      state.positionsSource = "api";
      state.positions = new Map(list.map((p) => [p.symbol, p]));
    } catch (exc) {
      if (!(exc instanceof ApiError) || exc.status !== 404) throw exc;
      state.positionsSource = "fills";
      state.positions = positionsFromFills(await api("GET", "/api/trades?limit=1000"));
    }
    const others = [...state.positions.keys()].filter((s) => s !== symbol);
    if (others.length) live.subscribe(others.map((s) => `ticker:${s}`));
    await Promise.all(others.filter((s) => !state.marks.has(s)).map(async (s) => {
      try { onTicker({ symbol: s, ...(await publicApi("GET", `/api/markets/${s}/ticker`)) }); } catch { /* no price */ }
    }));
    renderPositions();
  }

  async function loadBalances() {
    state.balances = await api("GET", "/api/balances");
    renderBalances();
  }

  const loadPrivate = () => Promise.all([loadOrders(), loadPositions(), loadBalances()]).catch((exc) => {
    if (exc.status !== 401) toast(`Refresh failed: ${exc.message}`, "error");
  });
  const loadPublic = () => Promise.all([loadTicker(), loadDepth(), loadMarketTrades()]);

  // ---- live -------------------------------------------------------------------------------------------------
  const channels = [`ticker:${symbol}`, `depth:${symbol}`, `trades:${symbol}`, `candles:${symbol}:1m`];
  live.subscribe(channels);
  ctx.own(() => live.unsubscribe([...channels, ...[...state.positions.keys()].filter((s) => s !== symbol).map((s) => `ticker:${s}`)]));
  ctx.own(() => { state.disposed = true; chart.dispose(); });
  const sameSymbol = (msg) => (msg?.channel ? msg.channel.split(":")[1] === symbol : true);
  ctx.own(live.on("TICKER", (data, msg) => onTicker({ symbol: msg.channel?.split(":")[1] || data.symbol, ts: msg.ts, ...data })));
  ctx.own(live.on("DEPTH", (data, msg) => {
    if (!sameSymbol(msg) || (data.symbol && data.symbol !== symbol)) return;
    state.depth = data;
    renderBook();
  }));
  ctx.own(live.on("MARKET_TRADE", (data, msg) => {
    if (!sameSymbol(msg) || (data.symbol && data.symbol !== symbol)) return;
    state.trades.unshift(data);
    state.trades.length = Math.min(state.trades.length, 200);
    renderTrades();
  }));
  ctx.own(live.on("CANDLE", (data, msg) => { if (sameSymbol(msg)) chart.onCandle(data); }));
  ctx.own(live.on("ORDER_UPDATE", (data) => { upsertOrder(data); renderOrders(); }));
  ctx.own(live.on("TRADE", (data) => {
    const o = state.orders.get(data.order_id);
    if (o?.fills && !o.fills.some((f) => f.trade_id === data.trade_id)) o.fills.push(data);
    if (state.positionsSource === "fills") loadPositions().catch(() => {});
    renderOrders();
  }));
  ctx.own(live.on("POSITION_UPDATE", (data) => {
    if (data.mode && data.mode !== mode()) return;
    state.positionsSource = "api";
    state.positions.set(data.symbol, { ...state.positions.get(data.symbol), ...data });
    if (data.mark_price) state.marks.set(data.symbol, String(data.mark_price));
    renderPositions();
  }));
  ctx.own(live.on("BALANCE_UPDATE", (data) => {
    if (data.mode && data.mode !== mode()) return;
    const byAsset = new Map(state.balances.map((b) => [b.asset, b]));
    for (const b of data.balances || [data]) if (b.asset) byAsset.set(b.asset, b);
    state.balances = [...byAsset.values()].sort((a, b) => a.asset.localeCompare(b.asset));
    renderBalances();
  }));
  ctx.own(live.on("OPEN", () => { loadPublic(); loadPrivate(); }));
  ctx.own(app.onMe(() => { state.orders.clear(); state.positions.clear(); loadPrivate(); renderOrders(); }));
  ctx.poll(loadPublic);
  ctx.poll(loadPrivate);

  renderBook();
  renderTrades();
  renderOrders();
  renderPositions();
  renderBalances();
  loadPublic();
  loadPrivate();
  chart.load();
}

// Average-cost positions from the user's fills (oldest first): the fallback when /api/positions is missing.
export function positionsFromFills(fills) {
  const out = new Map();
  for (const f of [...fills].sort((a, b) => String(a.ts).localeCompare(String(b.ts)))) {
    const p = out.get(f.symbol) || { symbol: f.symbol, quantity: 0, avg_entry_price: 0, realized_pnl: 0 };
    const q = Number(f.quantity) * (f.side === "BUY" ? 1 : -1);
    const px = Number(f.price);
    if (p.quantity === 0 || Math.sign(p.quantity) === Math.sign(q)) {
      p.avg_entry_price = (p.avg_entry_price * Math.abs(p.quantity) + px * Math.abs(q)) / (Math.abs(p.quantity) + Math.abs(q));
      p.quantity += q;
    } else {
      const closing = Math.min(Math.abs(q), Math.abs(p.quantity));
      p.realized_pnl += closing * (px - p.avg_entry_price) * Math.sign(p.quantity);
      p.quantity += q;
      if (Math.abs(p.quantity) < 1e-12) { p.quantity = 0; p.avg_entry_price = 0; }
      else if (Math.sign(p.quantity) === Math.sign(q)) p.avg_entry_price = px;
    }
    out.set(f.symbol, p);
  }
  for (const p of out.values()) {
    p.quantity = String(p.quantity);
    p.avg_entry_price = p.avg_entry_price ? String(p.avg_entry_price) : null;
    p.realized_pnl = String(p.realized_pnl);
  }
  return out;
}
