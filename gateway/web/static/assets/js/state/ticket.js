// The order ticket's rules that need no page: the request body for `POST /api/orders` and for an amend
// (`POST /api/orders/{id}/replace`), the checks made before sending them (the server checks again: tick, step,
// minimum notional, balance, trigger side), and the cost estimate, in exact decimal arithmetic.

import * as dec from "../decimal.js";

/** The stop order types: each waits, off the book, until the last price crosses its `stop_price`. */
export const STOP_TYPES = new Set(["STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"]);
const PRICED_TYPES = new Set(["LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"]);

/** A type that carries a `stop_price`. */
export const isStop = (type) => STOP_TYPES.has(type);
/** A type that carries a limit `price` (and may rest: GTC). */
export const isPriced = (type) => PRICED_TYPES.has(type);

/** `{body, errors}`: the order to send, or field errors (by the API's field names) when it is not sendable. */
export function orderRequest({ symbol, side, type, quantity, price, stopPrice = "", timeInForce }) {
  const errors = {};
  const body = { symbol, side, type, quantity: quantity.trim(), time_in_force: allowedTimeInForce(type, timeInForce) };
  if (!dec.isPositive(body.quantity)) errors.quantity = "Enter a positive quantity.";
  if (isPriced(type)) {
    body.price = price.trim();
    if (!dec.isPositive(body.price)) errors.price = "Enter a positive limit price.";
  }
  if (isStop(type)) {
    body.stop_price = stopPrice.trim();
    if (!dec.isPositive(body.stop_price)) errors.stop_price = "Enter a positive stop price.";
  }
  return { body, errors };
}

/**
 * `{body, errors}` for amending the open `order` (cancel-replace): only the fields its type has and that
 * changed are sent; an unchanged amend is an error (the server wants at least one field).
 */
export function replaceRequest(order, { quantity = "", price = "", stopPrice = "" }) {
  const errors = {};
  const body = {};
  const current = { quantity: remainder(order), price: order.price, stop_price: order.stop_price };
  const typed = [["quantity", quantity, true, "quantity"],
    ["price", price, isPriced(order.type), "limit price"],
    ["stop_price", stopPrice, isStop(order.type), "stop price"]];
  for (const [name, raw, applies, label] of typed) {
    const value = raw.trim();
    if (!applies) continue;
    if (!dec.isPositive(value)) {
      errors[name] = `Enter a positive ${label}.`;
    } else if (current[name] === null || current[name] === undefined || dec.cmp(value, current[name]) !== 0) {
      body[name] = value;
    }
  }
  if (!Object.keys(errors).length && !Object.keys(body).length) errors[isPriced(order.type) ? "price" : "quantity"] = "Change something to amend the order.";
  return { body, errors };
}

/** What is left of an order to fill: what an amend's quantity starts from (and defaults to on the server). */
export function remainder(order) {
  return dec.sub(order.quantity, order.filled_quantity || "0");
}

/** Quantity × price, exactly; null until both are positive decimals. */
export function notional(quantity, price) {
  const q = quantity.trim();
  const p = price.trim();
  return dec.isPositive(q) && dec.isPositive(p) ? dec.mul(q, p) : null;
}

/** The time in force a type allows: orders without a limit price (MARKET, STOP_LOSS, TAKE_PROFIT) cannot rest, so GTC becomes IOC. */
export function allowedTimeInForce(type, timeInForce) {
  return !isPriced(type) && timeInForce === "GTC" ? "IOC" : timeInForce;
}
