// Display of the API's values: prices with the market's tick size decimals, quantities with its step size
// decimals (`GET /api/markets`), rounded on the decimal string itself (decimal.js), never through a float.

import * as dec from "./decimal.js";

const markets = new Map();

/** The markets as `GET /api/markets` lists them: {symbol, base_asset, quote_asset, tick_size, step_size, ...}. */
export function setMarkets(list) {
  markets.clear();
  for (const m of list) markets.set(m.symbol, m);
}

export function market(symbol) {
  return markets.get(symbol);
}

export function allMarkets() {
  return [...markets.values()];
}

/** `value` rounded to `places` decimals; shown as it is when it is not a decimal string or `places` is null. */
export function fixed(value, places) {
  if (value === undefined || value === null) return "";
  return places !== null && dec.isDecimal(value) ? dec.round(value, places) : String(value);
}

function placesOf(symbol, rule) {
  const m = market(symbol);
  return m ? dec.places(m[rule]) : null;
}

export function price(symbol, value) {
  return fixed(value, placesOf(symbol, "tick_size"));
}

export function qty(symbol, value) {
  return fixed(value, placesOf(symbol, "step_size"));
}

/** Quote-asset amounts (PnL, notional): the tick's decimals, at least 2. */
export function quote(symbol, value) {
  const places = placesOf(symbol, "tick_size");
  return fixed(value, places === null ? null : Math.max(places, 2));
}

/** Balances and fees: up to 8 decimals, without trailing zeros ("50.0500" -> "50.05"). */
export function assetAmount(value) {
  if (value === undefined || value === null) return "";
  return dec.isDecimal(value) ? dec.trim(dec.round(value, 8)) : String(value);
}

/** "pos", "neg" or "" for a signed amount (PnL colouring). */
export function signClass(value) {
  if (!dec.isDecimal(value)) return "";
  const s = dec.sign(value);
  return s > 0 ? "pos" : s < 0 ? "neg" : "";
}

export function time(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts);
  return d.toLocaleTimeString([], { hour12: false });
}

export function dateTime(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts);
  return d.toLocaleString([], { hour12: false });
}
