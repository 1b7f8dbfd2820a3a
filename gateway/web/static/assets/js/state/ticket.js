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

// -- the ticket's figures before sending (`GET /api/ticket`: the side's free balance, the market's rules, the
// venue's fee rates, the book's best prices) ---------------------------------------------------------------

const positive = (value) => (dec.isPositive(String(value ?? "").trim()) ? String(value).trim() : null);

/**
 * The price an order is costed at: its limit price; a market stop's stop price (where it is meant to run);
 * a market order's best opposite price on the book. null when the ticket or the book has none yet.
 */
export function costPrice({ type, side, price, stopPrice }, info) {
  if (isPriced(type)) return positive(price);
  if (isStop(type)) return positive(stopPrice);
  return positive(side === "BUY" ? info?.best_ask : info?.best_bid);
}

/** The highest price a market order may walk to from `reference` (the paper exchange's protection band), on the tick grid. */
export function bandCap(reference, info) {
  const ticks = dec.divToStep(reference, info.tick_size, "1");
  const capTicks = dec.divToStep(dec.mul(dec.cmp(ticks, "1") < 0 ? "1" : ticks, dec.add("100", info.market_protection_pct)), "100", "1");
  return dec.trim(dec.mul(capTicks, info.tick_size));
}

/**
 * The price per unit a buy needs funds for: its limit price, else, on the paper exchange (which locks at
 * acceptance), the band above its reference (market: best ask; stop: stop price); the testnet's own price elsewhere.
 */
export function lockPrice(order, info) {
  const reference = costPrice(order, info);
  if (reference === null || isPriced(order.type) || info.mode !== "paper") return reference;
  return bandCap(reference, info);
}

/** The fee rate to expect: a market order takes (taker); a resting one may make or take, so the higher. null: the venue charges its own. */
export function feeRate(type, info) {
  const { maker_fee_rate: maker, taker_fee_rate: taker } = info || {};
  if (taker === null || taker === undefined) return null;
  if (!isPriced(type)) return taker;
  return dec.cmp(maker, taker) > 0 ? maker : taker;
}

/**
 * `{price, cost, fee, rate, total}` for the ticket as typed (plain decimal strings; fee and rate null when the venue
 * does not tell), or null until quantity and price are known. A buy's total is cost + fee; a sell's is what it brings in.
 */
export function costEstimate(order, info) {
  const quantity = positive(order.quantity);
  const price = costPrice(order, info);
  if (quantity === null || price === null) return null;
  const cost = dec.mul(quantity, price);
  const rate = feeRate(order.type, info);
  const fee = rate === null ? null : dec.mul(cost, rate);
  const total = fee === null ? cost : order.side === "BUY" ? dec.add(cost, fee) : dec.sub(cost, fee);
  return { price, cost, fee, rate, total };
}

/**
 * `{quantity}` for `percent` (25, 50, 75, 100) of the side's available balance, on the step grid (rounded down),
 * affordable with the fee a buy locks; or `{error}` in plain words when it cannot make a valid order (no price
 * yet, below the minimum quantity or the minimum order value).
 */
export function sizeForPercent(percent, order, info) {
  if (!info) return { error: "Your balance is not loaded yet." };
  const share = dec.mul(info.available, String(percent));
  let quantity;
  if (order.side === "BUY") {
    const price = lockPrice(order, info);
    if (price === null) return { error: noPrice(order.type) };
    const perUnit = dec.mul(price, dec.add("1", info.reserve_fee_rate ?? "0"));
    quantity = dec.divToStep(share, dec.mul("100", perUnit), info.step_size);
  } else {
    quantity = dec.divToStep(share, "100", info.step_size);
  }
  const asset = info.available_asset;
  if (dec.isZero(quantity) || dec.cmp(quantity, info.min_qty) < 0) {
    return { error: `${percent}% of your ${dec.trim(info.available)} ${asset} is less than the smallest order (${dec.trim(info.min_qty)} ${info.base_asset}).` };
  }
  const price = costPrice(order, info);
  if (price !== null && dec.cmp(dec.mul(quantity, price), info.min_notional) < 0) {
    return { error: `${percent}% of your balance makes an order worth ${dec.trim(dec.mul(quantity, price))} ${info.quote_asset}, under the minimum of ${dec.trim(info.min_notional)} ${info.quote_asset}.` };
  }
  return { quantity };
}

function noPrice(type) {
  if (isPriced(type)) return "Enter a limit price first.";
  if (isStop(type)) return "Enter a stop price first.";
  return "No price on the book yet; try again in a moment or use a limit order.";
}

/** The request for the ticket's figures of one side in one mode. */
export function ticketPath(symbol, side, mode) {
  const q = new URLSearchParams({ symbol, side });
  if (mode) q.set("mode", mode);
  return `/api/ticket?${q}`;
}

/**
 * Field errors, in plain words, for an order the server would refuse for its size: under the minimum quantity or
 * order value, or more than the side's free balance can lock (a buy: price x quantity plus the fee it locks; a
 * market buy at the protection band). `{}` when it looks fine or the figures are not known yet; the server checks
 * again either way.
 */
export function preflight(order, info) {
  const quantity = positive(order.quantity);
  if (!info || quantity === null) return {};
  const quote = info.quote_asset;
  if (dec.cmp(quantity, info.min_qty) < 0) {
    return { quantity: `The smallest order is ${dec.trim(info.min_qty)} ${info.base_asset}.` };
  }
  const price = costPrice(order, info);
  if (price !== null && dec.cmp(dec.mul(quantity, price), info.min_notional) < 0) {
    return { quantity: `This order is worth ${dec.trim(dec.mul(quantity, price))} ${quote}; the smallest order is ${dec.trim(info.min_notional)} ${quote}.` };
  }
  if (order.side === "SELL") {
    return dec.cmp(quantity, info.available) > 0
      ? { quantity: `Not enough ${info.available_asset}: you have ${dec.trim(info.available)} available.` }
      : {};
  }
  const lock = lockPrice(order, info);
  if (lock === null) return {};
  const needed = dec.mul(dec.mul(quantity, lock), dec.add("1", info.reserve_fee_rate ?? "0"));
  return dec.cmp(needed, info.available) > 0
    ? { quantity: `Not enough ${quote}: this order needs up to ${dec.trim(dec.round(needed, 8))} ${quote} with its fee; you have ${dec.trim(info.available)} available.` }
    : {};
}
