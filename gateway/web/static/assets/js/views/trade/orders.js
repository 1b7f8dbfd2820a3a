// The user's open orders (with Cancel and Amend) and order history (with each order's fills on demand), from
// `GET /api/orders`, `GET /api/orders/{id}`, `DELETE /api/orders/{id}`, `POST /api/orders/{id}/replace`,
// `ORDER_UPDATE` and `TRADE` events. A stop order shows its stop price and whether it still waits for its trigger.

import { api } from "../../api.js";
import * as dec from "../../decimal.js";
import { clear, el, toast } from "../../dom.js";
import * as fmt from "../../fmt.js";
import { clearErrors, field, formError, setFieldError, showErrors } from "../../forms.js";
import { addFill, closedOrders, isOpen, mergeOrder, mergeSnapshot, openOrders, stopState } from "../../state/orders.js";
import { isPriced, isStop, remainder, replaceRequest } from "../../state/ticket.js";
import { dataTable, emptyRow, num, opt, statusBadge } from "../table.js";

export function createOrders({ mode }) {
  const orders = new Map();
  const expanded = new Set();
  // Open amend forms by order_id: the same node across renders, so what the user typed survives an update.
  const amending = new Map();
  const openBody = el("tbody", { id: "open-orders-body" });
  const historyBody = el("tbody", { id: "order-history-body" });

  function cancelButton(o) {
    return el("button", {
      type: "button", class: "btn btn-small", disabled: o.status === "PENDING_CANCEL",
      "aria-label": `Cancel ${o.side} ${o.type} order ${o.order_id}`,
      onclick: (ev) => cancel(o, ev.currentTarget),
    }, "Cancel");
  }

  function amendButton(o) {
    const open = amending.has(o.order_id);
    return el("button", {
      type: "button", class: "btn btn-small btn-ghost", disabled: o.status === "PENDING_CANCEL",
      "aria-label": `Amend ${o.side} ${o.type} order ${o.order_id}`, "aria-expanded": open ? "true" : "false",
      "aria-controls": `amend-${o.order_id}`, onclick: () => toggleAmend(o.order_id),
    }, "Amend");
  }

  function openRows(o) {
    const trigger = stopState(o);
    const row = el("tr", { dataset: { orderId: o.order_id, status: o.status, trigger: trigger ?? undefined } },
      el("td", { class: "opt" }, o.symbol),
      el("td", { class: o.side === "BUY" ? "buy" : "sell" }, o.side),
      el("td", { class: "opt" }, o.type),
      el("td", { class: "num" }, o.price === null ? "market" : fmt.price(o.symbol, o.price)),
      el("td", { class: "num stop-price" }, trigger ? fmt.price(o.symbol, o.stop_price) : "—"),
      el("td", { class: "num" }, fmt.qty(o.symbol, o.quantity)),
      el("td", { class: "num opt" }, fmt.qty(o.symbol, o.filled_quantity)),
      el("td", { class: "status" }, statusBadge(o.status),
        trigger ? el("span", { class: "muted small trigger-state" }, trigger === "waiting" ? " waiting for trigger" : " triggered") : null),
      el("td", { class: "actions" }, amendButton(o), " ", cancelButton(o)));
    const form = amending.get(o.order_id);
    return form ? [row, el("tr", { class: "amend-row" }, el("td", { colSpan: 9 }, form))] : [row];
  }

  // The amend form: the fields the order's type has, filled with what it has now (quantity: its remainder).
  function amendForm(o) {
    const formId = `amend-${o.order_id}`;
    const input = (value) => el("input", { type: "text", inputMode: "decimal", autocomplete: "off", value });
    const price = isPriced(o.type) ? input(fmt.price(o.symbol, o.price)) : null;
    const stop = isStop(o.type) ? input(fmt.price(o.symbol, o.stop_price)) : null;
    const quantity = input(fmt.qty(o.symbol, remainder(o)));
    const form = el("form", { id: formId, class: "amend-form", novalidate: true, "aria-label": `Amend order ${o.order_id}` },
      price ? field({ form: formId, name: "price", label: "New limit price", control: price }) : null,
      stop ? field({ form: formId, name: "stop_price", label: "New stop price", control: stop }) : null,
      field({ form: formId, name: "quantity", label: "New quantity", control: quantity }),
      formError(),
      el("div", { class: "amend-actions" },
        el("button", { type: "submit", class: "btn btn-small" }, "Replace order"), " ",
        el("button", { type: "button", class: "btn btn-small btn-ghost", onclick: () => toggleAmend(o.order_id) }, "Close")));
    form.addEventListener("keydown", (ev) => {
      if (ev.key === "Escape") toggleAmend(o.order_id);
    });
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      replace(orders.get(o.order_id) ?? o, form, { price: price?.value ?? "", stopPrice: stop?.value ?? "", quantity: quantity.value });
    });
    return form;
  }

  function focusAmendButton(orderId) {
    openBody.querySelector(`tr[data-order-id="${CSS.escape(orderId)}"] button[aria-controls^="amend-"]`)?.focus();
  }

  function toggleAmend(orderId) {
    if (amending.delete(orderId)) {
      render();
      focusAmendButton(orderId);
      return;
    }
    const o = orders.get(orderId);
    if (!o) return;
    amending.set(orderId, amendForm(o));
    render();
    amending.get(orderId).querySelector("input")?.focus();
  }

  async function replace(o, form, values) {
    clearErrors(form);
    const { body, errors } = replaceRequest(o, values);
    for (const [name, message] of Object.entries(errors)) setFieldError(form, name, message);
    if (Object.keys(errors).length) {
      form.querySelector("[aria-invalid=true]")?.focus();
      return;
    }
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const placed = await api("POST", `/api/orders/${encodeURIComponent(o.order_id)}/replace`, body);
      amending.delete(o.order_id);
      mergeOrder(orders, placed);
      toast("Amend requested", "info");
      render();
      focusAmendButton(placed.order_id);
    } catch (exc) {
      showErrors(form, exc);
      if (exc.status === 409) load().catch(() => {});
    } finally {
      submit.disabled = false;
    }
  }

  function fillsTable(o) {
    if (!o.fills) return el("span", { class: "muted" }, "Loading fills…");
    if (!o.fills.length) return el("span", { class: "muted" }, "No fills");
    return el("table", { class: "data fills" },
      el("thead", {}, el("tr", {}, ["Trade", "Price", "Quantity", "Fee", "Liquidity", "Time"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, o.fills.map((f) => el("tr", {},
        el("td", { class: "mono" }, f.trade_id.slice(0, 12)),
        el("td", { class: "num" }, fmt.price(o.symbol, f.price)),
        el("td", { class: "num" }, fmt.qty(o.symbol, f.quantity)),
        el("td", { class: "num" }, `${fmt.assetAmount(f.fee)} ${f.fee_asset}`),
        el("td", {}, f.liquidity),
        el("td", {}, fmt.time(f.ts))))));
  }

  function historyRows(o) {
    const open = expanded.has(o.order_id);
    const hasFills = dec.sign(o.filled_quantity) > 0;
    const row = el("tr", { dataset: { orderId: o.order_id, status: o.status } },
      el("td", { class: "opt" }, fmt.time(o.updated_at)),
      el("td", { class: "opt" }, o.symbol),
      el("td", { class: o.side === "BUY" ? "buy" : "sell" }, o.side),
      el("td", { class: "opt" }, o.type),
      el("td", { class: "num opt" }, fmt.qty(o.symbol, o.quantity)),
      el("td", { class: "num" }, fmt.qty(o.symbol, o.filled_quantity)),
      el("td", { class: "num" }, o.avg_price === null ? "—" : fmt.price(o.symbol, o.avg_price)),
      el("td", { class: "status" }, statusBadge(o.status), o.reason ? el("span", { class: "muted small" }, ` ${o.reason}`) : null),
      el("td", {}, hasFills ? el("button", {
        type: "button", class: "btn btn-small btn-ghost", "aria-expanded": open ? "true" : "false",
        "aria-controls": `fills-${o.order_id}`, onclick: () => toggleFills(o.order_id),
      }, open ? "Hide fills" : "Fills") : null));
    if (!open) return [row];
    return [row, el("tr", { class: "fills-row", id: `fills-${o.order_id}` }, el("td", { colSpan: 9 }, fillsTable(o)))];
  }

  function render() {
    const open = openOrders(orders, mode());
    for (const id of amending.keys()) {
      if (!orders.has(id) || !isOpen(orders.get(id))) amending.delete(id);
    }
    // Re-rendering rebuilds the rows: the focus stays where it was (a field of an amend form, which is the same
    // node again, or an order's button, found again by its label) instead of falling back to the page.
    const active = openBody.contains(document.activeElement) ? document.activeElement : null;
    const label = active?.tagName === "BUTTON" ? active.getAttribute("aria-label") : null;
    clear(openBody, open.length ? open.flatMap(openRows) : emptyRow(9, "No open orders"));
    if (active?.isConnected) active.focus();
    else if (label) openBody.querySelector(`button[aria-label="${CSS.escape(label)}"]`)?.focus();
    const closed = closedOrders(orders, mode());
    clear(historyBody, closed.length ? closed.flatMap(historyRows) : emptyRow(9, "No past orders"));
  }

  async function toggleFills(orderId) {
    if (expanded.delete(orderId)) {
      render();
      return;
    }
    expanded.add(orderId);
    render();
    try {
      mergeOrder(orders, await api("GET", `/api/orders/${encodeURIComponent(orderId)}`));
    } catch (exc) {
      toast(`Could not load fills: ${exc.message}`, "error");
    }
    render();
    historyBody.querySelector(`tr[data-order-id="${CSS.escape(orderId)}"] button`)?.focus();
  }

  async function cancel(o, button) {
    button.disabled = true;
    try {
      mergeOrder(orders, await api("DELETE", `/api/orders/${encodeURIComponent(o.order_id)}`));
      toast("Cancel requested", "info");
    } catch (exc) {
      toast(exc.status === 409 ? "The order is already final." : `Cancel failed: ${exc.message}`, "error");
      load().catch(() => {});
    }
    render();
  }

  async function load() {
    const [open, closed] = await Promise.all([
      api("GET", "/api/orders?status=open&limit=200"),
      api("GET", "/api/orders?status=closed&limit=50"),
    ]);
    mergeSnapshot(orders, { open: open.items, closed: closed.items }, mode());
    render();
  }

  /** An order from a REST answer (the placement's) or an `ORDER_UPDATE`. */
  function onOrder(order) {
    if (mergeOrder(orders, order)) render();
  }

  function onFill(fill) {
    if (addFill(orders, fill)) render();
  }

  function reset() {
    orders.clear();
    expanded.clear();
    amending.clear();
    render();
  }

  render();
  return {
    openNode: dataTable("open-orders", "Open orders",
      [opt("Symbol"), "Side", opt("Type"), num("Price"), num("Stop"), num("Quantity"), num("Filled", true), "Status", ""], openBody),
    historyNode: dataTable("order-history", "Order history",
      [opt("Time"), opt("Symbol"), "Side", opt("Type"), num("Quantity", true), num("Filled"), num("Avg price"), "Status", ""], historyBody),
    load, onOrder, onFill, reset,
  };
}
