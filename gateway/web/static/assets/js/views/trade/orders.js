// The user's open orders (with Cancel) and order history (with each order's fills on demand), from
// `GET /api/orders`, `GET /api/orders/{id}`, `DELETE /api/orders/{id}`, `ORDER_UPDATE` and `TRADE` events.

import { api } from "../../api.js";
import * as dec from "../../decimal.js";
import { clear, el, toast } from "../../dom.js";
import * as fmt from "../../fmt.js";
import { addFill, closedOrders, mergeOrder, mergeSnapshot, openOrders } from "../../state/orders.js";
import { dataTable, emptyRow, num, opt, statusBadge } from "../table.js";

export function createOrders({ mode }) {
  const orders = new Map();
  const expanded = new Set();
  const openBody = el("tbody", { id: "open-orders-body" });
  const historyBody = el("tbody", { id: "order-history-body" });

  function cancelButton(o) {
    return el("button", {
      type: "button", class: "btn btn-small", disabled: o.status === "PENDING_CANCEL",
      "aria-label": `Cancel ${o.side} ${o.type} order ${o.order_id}`,
      onclick: (ev) => cancel(o, ev.currentTarget),
    }, "Cancel");
  }

  function openRow(o) {
    return el("tr", { dataset: { orderId: o.order_id, status: o.status } },
      el("td", { class: "opt" }, o.symbol),
      el("td", { class: o.side === "BUY" ? "buy" : "sell" }, o.side),
      el("td", { class: "opt" }, o.type),
      el("td", { class: "num" }, o.price === null ? "market" : fmt.price(o.symbol, o.price)),
      el("td", { class: "num" }, fmt.qty(o.symbol, o.quantity)),
      el("td", { class: "num opt" }, fmt.qty(o.symbol, o.filled_quantity)),
      el("td", { class: "status" }, statusBadge(o.status)),
      el("td", {}, cancelButton(o)));
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
    clear(openBody, open.length ? open.map(openRow) : emptyRow(8, "No open orders"));
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
    render();
  }

  render();
  return {
    openNode: dataTable("open-orders", "Open orders",
      [opt("Symbol"), "Side", opt("Type"), num("Price"), num("Quantity"), num("Filled", true), "Status", ""], openBody),
    historyNode: dataTable("order-history", "Order history",
      [opt("Time"), opt("Symbol"), "Side", opt("Type"), num("Quantity", true), num("Filled"), num("Avg price"), "Status", ""], historyBody),
    load, onOrder, onFill, reset,
  };
}
