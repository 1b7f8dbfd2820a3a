// The order ticket's rules that need no page: the request body for `POST /api/orders`, the checks made
// before sending it (the server checks again: tick, step, minimum notional, balance), and the cost estimate,
// in exact decimal arithmetic.

import * as dec from "../decimal.js";

/** `{body, errors}`: the order to send, or field errors (by the API's field names) when it is not sendable. */
export function orderRequest({ symbol, side, type, quantity, price, timeInForce }) {
  const errors = {};
  const body = { symbol, side, type, quantity: quantity.trim(), time_in_force: timeInForce };
  if (!dec.isPositive(body.quantity)) errors.quantity = "Enter a positive quantity.";
  if (type === "LIMIT") {
    body.price = price.trim();
    if (!dec.isPositive(body.price)) errors.price = "Enter a positive limit price.";
  }
  return { body, errors };
}

/** Quantity × price, exactly; null until both are positive decimals. */
export function notional(quantity, price) {
  const q = quantity.trim();
  const p = price.trim();
  return dec.isPositive(q) && dec.isPositive(p) ? dec.mul(q, p) : null;
}

/** The time in force a type allows: MARKET orders cannot rest, so GTC becomes IOC. */
export function allowedTimeInForce(type, timeInForce) {
  return type === "MARKET" && timeInForce === "GTC" ? "IOC" : timeInForce;
}
