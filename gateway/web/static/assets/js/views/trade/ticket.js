// The order ticket: side, type, quantity, limit price, stop price, time in force; `POST /api/orders`. A market
// order shows the server's quote (`POST /api/orders/quote`) for its quantity; every order its exact cost.
// Stop orders (STOP_LOSS, TAKE_PROFIT and their *_LIMIT forms) add a stop price; only the *_LIMIT ones a limit
// price and a resting time in force.
// The API's problem+json field errors land under their fields.
// Before sending, the ticket shows what the side can spend (`GET /api/ticket`: the free balance, the market's
// rules, the venue's fee rates and best prices), the order's cost, fee and total, and offers 25/50/75/100% of
// the balance as sizes on the step grid that meet the minimums (state/ticket.js).

import { api } from "../../api.js";
import { clear, debounce, el, toast } from "../../dom.js";
import * as fmt from "../../fmt.js";
import { clearErrors, field, formError, setFieldError, showErrors } from "../../forms.js";
import * as dec from "../../decimal.js";
import {
  allowedTimeInForce, costEstimate, isPriced, isStop, orderRequest, preflight, sizeForPercent, ticketPath,
} from "../../state/ticket.js";
import { isVenue, withVenue } from "../../state/venue.js";

export function createTicket(market, { onPlaced, venue = () => "paper" }) {
  const { symbol, base_asset: base, quote_asset: quoteAsset } = market;
  const sideSet = el("fieldset", { class: "field side-toggle", dataset: { field: "side" } },
    el("legend", {}, "Side"),
    el("label", { class: "side side-buy" }, el("input", { type: "radio", name: "side", value: "BUY", checked: true, id: "ticket-side-buy" }), "Buy"),
    el("label", { class: "side side-sell" }, el("input", { type: "radio", name: "side", value: "SELL", id: "ticket-side-sell" }), "Sell"),
    el("div", { class: "field-error", id: "ticket-side-error", role: "alert" }));
  const typeSel = el("select", {}, el("option", { value: "MARKET" }, "Market"), el("option", { value: "LIMIT", selected: true }, "Limit"),
    el("option", { value: "STOP_LOSS" }, "Stop loss (market)"),
    el("option", { value: "STOP_LOSS_LIMIT" }, "Stop loss limit"),
    el("option", { value: "TAKE_PROFIT" }, "Take profit (market)"),
    el("option", { value: "TAKE_PROFIT_LIMIT" }, "Take profit limit"));
  const tifSel = el("select", {},
    el("option", { value: "GTC" }, "GTC — good till cancelled"),
    el("option", { value: "IOC" }, "IOC — immediate or cancel"),
    el("option", { value: "FOK" }, "FOK — fill or kill"));
  const qtyIn = el("input", { type: "text", inputMode: "decimal", autocomplete: "off", placeholder: market.step_size, required: true });
  const priceIn = el("input", { type: "text", inputMode: "decimal", autocomplete: "off", placeholder: market.tick_size });
  const stopIn = el("input", { type: "text", inputMode: "decimal", autocomplete: "off", placeholder: market.tick_size });
  const estimate = el("p", { class: "muted small", id: "ticket-quote", "aria-live": "polite" });
  const available = el("p", { class: "ticket-available small", id: "ticket-available", "aria-live": "polite" }, "Available: …");
  const percents = el("div", { class: "pct-buttons", role: "group", "aria-label": "Size as a share of the available balance" },
    [25, 50, 75, 100].map((pct) => el("button", {
      type: "button", class: "btn btn-small btn-ghost", dataset: { pct: String(pct) }, id: `ticket-pct-${pct}`,
      "aria-label": `${pct}% of the available balance`, onclick: () => applyPercent(pct),
    }, `${pct}%`)));
  const costs = el("dl", { class: "kv ticket-costs small", id: "ticket-costs", "aria-live": "polite" });
  const submit = el("button", { type: "submit", class: "btn btn-buy", id: "ticket-submit" }, `Buy ${base}`);
  const form = el("form", { id: "ticket", class: "stack", novalidate: true },
    sideSet,
    available,
    field({ form: "ticket", name: "type", label: "Order type", control: typeSel }),
    field({ form: "ticket", name: "quantity", label: `Quantity (${base})`, control: qtyIn, hint: `step ${market.step_size}` }),
    percents,
    field({ form: "ticket", name: "stop_price", label: `Stop price (${quoteAsset})`, control: stopIn,
      hint: "triggers on the last trade price" }),
    field({ form: "ticket", name: "price", label: `Limit price (${quoteAsset})`, control: priceIn, hint: `tick ${market.tick_size}` }),
    field({ form: "ticket", name: "time_in_force", label: "Time in force", control: tifSel }),
    estimate,
    costs,
    formError(),
    submit,
    el("p", { class: "muted small" }, `Min notional ${market.min_notional} ${quoteAsset}`));

  const side = () => form.querySelector("input[name=side]:checked").value;
  const isLimit = () => isPriced(typeSel.value);
  // The user's own time in force: a type that cannot rest shows IOC instead of GTC, and a priced type chosen
  // afterwards gets the user's choice back (GTC by default), not the forced IOC.
  let chosenTif = tifSel.value;
  tifSel.addEventListener("change", () => { chosenTif = tifSel.value; });

  function sync() {
    priceIn.disabled = !isLimit();
    form.querySelector('[data-field="price"]').classList.toggle("is-disabled", !isLimit());
    // A stop price only for stop types: hidden (out of the tab order) otherwise.
    form.querySelector('[data-field="stop_price"]').hidden = !isStop(typeSel.value);
    stopIn.disabled = !isStop(typeSel.value);
    tifSel.value = allowedTimeInForce(typeSel.value, chosenTif);
    tifSel.querySelector('option[value="GTC"]').disabled = !isLimit();
    submit.textContent = `${side() === "BUY" ? "Buy" : "Sell"} ${base}`;
    submit.className = `btn ${side() === "BUY" ? "btn-buy" : "btn-sell"}`;
    showEstimate();
  }

  // The side's figures (`GET /api/ticket`), asked again when the side, the venue or the balances change.
  let info = null;
  let infoSeq = 0;
  async function loadInfo() {
    const seq = ++infoSeq;
    const wanted = side();
    try {
      const next = await api("GET", ticketPath(symbol, wanted, venue()));
      if (seq !== infoSeq) return; // a newer request is on its way
      info = next;
      available.textContent = `Available: ${fmt.assetAmount(info.available)} ${info.available_asset}`;
    } catch (exc) {
      if (seq !== infoSeq) return;
      info = null;
      available.textContent = exc.status === 409 ? exc.message : `Available: unknown (${exc.message})`;
    }
    showCosts();
  }

  const current = () => ({ type: typeSel.value, side: side(), quantity: qtyIn.value, price: priceIn.value, stopPrice: stopIn.value });

  // Cost, fee and total of the order as typed, at the venue's real fee rate (the higher of maker and taker
  // for an order that may rest; the taker rate for one that runs at the market).
  function showCosts() {
    const figures = info && info.side === side() ? costEstimate(current(), info) : null;
    if (!figures) {
      clear(costs);
      return;
    }
    const q = info.quote_asset;
    const money = (v) => `${fmt.quote(symbol, v)} ${q}`;
    const approx = isLimit() ? "" : "≈ ";
    clear(costs,
      el("dt", {}, "Cost"), el("dd", { id: "ticket-cost" }, `${approx}${money(figures.cost)}`),
      el("dt", {}, "Fee"), el("dd", { id: "ticket-fee" }, figures.fee === null
        ? "charged by the exchange"
        : `${approx}${fmt.assetAmount(figures.fee)} ${q} (${fmt.assetAmount(dec.mul(figures.rate, "100"))}%)`),
      el("dt", {}, side() === "BUY" ? "Total" : "You receive"), el("dd", { id: "ticket-total" }, `${approx}${money(figures.total)}`));
  }

  function applyPercent(pct) {
    clearErrors(form);
    const result = sizeForPercent(pct, current(), info && info.side === side() ? info : null);
    if (result.error) {
      setFieldError(form, "quantity", result.error);
      return;
    }
    qtyIn.value = result.quantity;
    showEstimate();
  }

  function showEstimate() {
    showCosts();
    if (isLimit()) { // a priced order's cost, fee and total are in the figures below (showCosts)
      estimate.textContent = "";
      return;
    }
    requestQuote();
  }

  // A market order's price is the book's: the server's quote for this quantity, asked once typing pauses.
  // The old text stays until then: clearing it at once would move the submit button under the pointer.
  const requestQuote = debounce(async () => {
    const quantity = qtyIn.value.trim();
    if (isLimit()) return;
    if (!dec.isPositive(quantity)) {
      estimate.textContent = "";
      return;
    }
    try {
      // The book of the venue the order would go to (the user's mode): a testnet order fills on the testnet's.
      const q = await api("POST", withVenue("/api/orders/quote", venue()), { symbol, side: side(), quantity });
      if (isLimit() || qtyIn.value.trim() !== quantity || !isVenue(q, venue())) return; // the ticket changed meanwhile
      estimate.textContent = q.avg_price === null
        ? "No liquidity on the book right now."
        : `≈ ${fmt.price(symbol, q.avg_price)} avg, ${fmt.qty(symbol, q.fillable_quantity)} fillable now, `
          + `≈ ${fmt.quote(symbol, dec.mul(q.fillable_quantity, q.avg_price))} ${quoteAsset}`;
    } catch { /* the quote is a hint only */ }
  }, 300);

  form.addEventListener("change", (event) => {
    if (event.target.name === "side") loadInfo();
    sync();
  });
  stopIn.addEventListener("input", showCosts);
  qtyIn.addEventListener("input", showEstimate);
  priceIn.addEventListener("input", showEstimate);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors(form);
    const { body, errors } = orderRequest({
      symbol, side: side(), type: typeSel.value, quantity: qtyIn.value, price: priceIn.value, stopPrice: stopIn.value,
      timeInForce: tifSel.value,
    });
    // Sizes the server would refuse are said here, in words, before sending (the server checks again).
    if (!Object.keys(errors).length && info && info.side === side()) Object.assign(errors, preflight(current(), info));
    for (const [name, message] of Object.entries(errors)) setFieldError(form, name, message);
    if (Object.keys(errors).length) {
      form.querySelector("[aria-invalid=true]")?.focus();
      return;
    }
    submit.disabled = true;
    try {
      const order = await api("POST", "/api/orders", body);
      onPlaced(order);
      loadInfo();
      toast(`Order accepted: ${order.side} ${fmt.qty(symbol, order.quantity)} ${base} (${order.status})`, "success");
    } catch (exc) {
      showErrors(form, exc);
    } finally {
      submit.disabled = false;
    }
  });
  queueMicrotask(sync);
  queueMicrotask(loadInfo);

  return {
    node: form,
    /** Put a price from the book in the ticket (as a limit order). */
    setPrice(price) {
      typeSel.value = "LIMIT";
      priceIn.value = fmt.price(symbol, price);
      sync();
      priceIn.focus();
    },
    /** Ask the quote and the side's figures again (the venue changed with the user's mode). */
    requote: () => { showEstimate(); loadInfo(); },
    /** The balances moved (`BALANCE_UPDATE`): the available amount with them. */
    refresh: () => loadInfo(),
    /** The venue's book moved (`DEPTH`): a market order's cost follows its best prices. */
    onDepth(data) {
      if (!info || data.symbol !== symbol || !isVenue(data, venue())) return;
      info = { ...info, best_bid: data.bids?.[0]?.[0] ?? null, best_ask: data.asks?.[0]?.[0] ?? null };
      if (!isLimit()) showCosts();
    },
  };
}
