// The user's orders as one map by order_id, merged from REST snapshots (`GET /api/orders`, `GET
// /api/orders/{id}`, the placement's and cancel's answers) and `ORDER_UPDATE` events. They can arrive in
// either order: every order carries `version`, and the higher one wins.

export const OPEN_STATUSES = new Set(["PENDING", "NEW", "PARTIALLY_FILLED", "PENDING_CANCEL"]);
const HISTORY_SHOWN = 50;

export function isOpen(order) {
  return OPEN_STATUSES.has(order.status);
}

/** Merge one order (OrderOut or OrderDetail) into `orders`; false when a newer copy is already there. */
export function mergeOrder(orders, order) {
  const prev = orders.get(order.order_id);
  if (prev && order.version < prev.version) return false;
  // An ORDER_UPDATE has no fills: keep the ones an OrderDetail brought.
  orders.set(order.order_id, { ...prev, ...order });
  return true;
}

/**
 * Merge `GET /api/orders?status=open` and `?status=closed` pages of `mode`. An order still shown as open that
 * neither page lists has moved on past the closed page: its stale copy is dropped.
 */
export function mergeSnapshot(orders, { open, closed }, mode) {
  for (const o of [...open, ...closed]) mergeOrder(orders, o);
  const listed = new Set([...open, ...closed].map((o) => o.order_id));
  for (const [id, o] of orders) {
    if (o.mode === mode && isOpen(o) && !listed.has(id)) orders.delete(id);
  }
}

/** Add a `TRADE` event to its order's fills, when the order's fills are loaded and it is not there yet. */
export function addFill(orders, fill) {
  const order = orders.get(fill.order_id);
  if (!order?.fills || order.fills.some((f) => f.trade_id === fill.trade_id)) return false;
  order.fills = [...order.fills, fill];
  return true;
}

const newest = (key) => (a, b) => Date.parse(b[key]) - Date.parse(a[key]);

/** Open orders of `mode`, newest first. */
export function openOrders(orders, mode) {
  return [...orders.values()].filter((o) => o.mode === mode && isOpen(o)).sort(newest("created_at"));
}

/** Final orders of `mode`, last changed first. */
export function closedOrders(orders, mode, limit = HISTORY_SHOWN) {
  return [...orders.values()].filter((o) => o.mode === mode && !isOpen(o)).sort(newest("updated_at")).slice(0, limit);
}

/** A stop order's trigger state: "waiting" (off the book until the last price crosses its stop), "triggered", or null for other orders. */
export function stopState(order) {
  if (order.stop_price === null || order.stop_price === undefined) return null;
  return order.triggered_at ? "triggered" : "waiting";
}
