import assert from "node:assert/strict";
import { test } from "node:test";

import { allowedTimeInForce, notional, orderRequest } from "../static/assets/js/state/ticket.js";

test("a limit order is sent with its price, as typed (trimmed)", () => {
  const { body, errors } = orderRequest({ symbol: "BTCUSDT", side: "BUY", type: "LIMIT", quantity: " 0.001 ", price: "50000.00", timeInForce: "GTC" });
  assert.deepEqual(errors, {});
  assert.deepEqual(body, { symbol: "BTCUSDT", side: "BUY", type: "LIMIT", quantity: "0.001", price: "50000.00", time_in_force: "GTC" });
});

test("a market order carries no price", () => {
  const { body, errors } = orderRequest({ symbol: "BTCUSDT", side: "SELL", type: "MARKET", quantity: "1", price: "123", timeInForce: "IOC" });
  assert.deepEqual(errors, {});
  assert.equal("price" in body, false);
});

test("quantities and prices must be positive decimals, named by the API's fields", () => {
  const { errors } = orderRequest({ symbol: "BTCUSDT", side: "BUY", type: "LIMIT", quantity: "0", price: "1e5", timeInForce: "GTC" });
  assert.deepEqual(Object.keys(errors).sort(), ["price", "quantity"]);
  assert.deepEqual(orderRequest({ symbol: "X", side: "BUY", type: "MARKET", quantity: "-1", price: "", timeInForce: "IOC" }).errors,
    { quantity: "Enter a positive quantity." });
});

test("the notional is exact", () => {
  assert.equal(notional("0.001", "50000.00"), "50.00000");
  assert.equal(notional("0.1", "0.3"), "0.03");
  assert.equal(notional("0.001", ""), null);
  assert.equal(notional("abc", "1"), null);
});

test("a market order cannot be GTC", () => {
  assert.equal(allowedTimeInForce("MARKET", "GTC"), "IOC");
  assert.equal(allowedTimeInForce("MARKET", "FOK"), "FOK");
  assert.equal(allowedTimeInForce("LIMIT", "GTC"), "GTC");
});
