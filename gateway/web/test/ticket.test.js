import assert from "node:assert/strict";
import { test } from "node:test";

import { allowedTimeInForce, isPriced, isStop, notional, orderRequest, remainder, replaceRequest } from "../static/assets/js/state/ticket.js";

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

test("a stop limit order carries its stop price, limit price and time in force", () => {
  const { body, errors } = orderRequest({
    symbol: "BTCUSDT", side: "SELL", type: "STOP_LOSS_LIMIT", quantity: "0.001", price: "49000.00", stopPrice: " 49500.00 ", timeInForce: "GTC",
  });
  assert.deepEqual(errors, {});
  assert.deepEqual(body, {
    symbol: "BTCUSDT", side: "SELL", type: "STOP_LOSS_LIMIT", quantity: "0.001", price: "49000.00", stop_price: "49500.00", time_in_force: "GTC",
  });
});

test("a stop market order has a stop price, no limit price, and cannot rest", () => {
  const { body, errors } = orderRequest({ symbol: "BTCUSDT", side: "SELL", type: "TAKE_PROFIT", quantity: "1", price: "123", stopPrice: "60000", timeInForce: "GTC" });
  assert.deepEqual(errors, {});
  assert.equal("price" in body, false);
  assert.equal(body.stop_price, "60000");
  assert.equal(body.time_in_force, "IOC");
  assert.deepEqual(orderRequest({ symbol: "X", side: "BUY", type: "STOP_LOSS", quantity: "1", price: "", stopPrice: "", timeInForce: "IOC" }).errors,
    { stop_price: "Enter a positive stop price." });
  assert.equal("stop_price" in orderRequest({ symbol: "X", side: "BUY", type: "LIMIT", quantity: "1", price: "1", stopPrice: "5", timeInForce: "GTC" }).body, false);
});

test("stop market types cannot be GTC; stop limit types can", () => {
  assert.equal(allowedTimeInForce("STOP_LOSS", "GTC"), "IOC");
  assert.equal(allowedTimeInForce("TAKE_PROFIT_LIMIT", "GTC"), "GTC");
  assert.equal(isStop("TAKE_PROFIT"), true);
  assert.equal(isStop("LIMIT"), false);
  assert.equal(isPriced("STOP_LOSS_LIMIT"), true);
  assert.equal(isPriced("STOP_LOSS"), false);
});

const stopLimit = {
  type: "STOP_LOSS_LIMIT", quantity: "0.00100", filled_quantity: "0", price: "49000.00", stop_price: "49500.00",
};

test("an amend sends only what changed, compared exactly", () => {
  assert.deepEqual(replaceRequest(stopLimit, { price: "48900", stopPrice: "49500", quantity: "0.001" }),
    { body: { price: "48900" }, errors: {} });
  assert.deepEqual(replaceRequest(stopLimit, { price: "49000.00", stopPrice: "49400.00", quantity: "0.002" }).body,
    { stop_price: "49400.00", quantity: "0.002" });
});

test("an amend's quantity starts from the remainder; an unchanged amend is refused before sending", () => {
  const partly = { type: "LIMIT", quantity: "1", filled_quantity: "0.4", price: "10", stop_price: null };
  assert.equal(remainder(partly), "0.6");
  const { body, errors } = replaceRequest(partly, { price: "10.0", quantity: "0.6" });
  assert.deepEqual(body, {});
  assert.deepEqual(Object.keys(errors), ["price"]);
});

test("an amend ignores fields the order's type has not and checks the rest", () => {
  const stopMarket = { type: "STOP_LOSS", quantity: "1", filled_quantity: "0", price: null, stop_price: "100" };
  assert.deepEqual(replaceRequest(stopMarket, { price: "5", stopPrice: "99", quantity: "1" }).body, { stop_price: "99" });
  assert.deepEqual(replaceRequest(stopMarket, { stopPrice: "-1", quantity: "x" }).errors,
    { quantity: "Enter a positive quantity.", stop_price: "Enter a positive stop price." });
});
