import assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import * as fmt from "../static/assets/js/fmt.js";

beforeEach(() => {
  fmt.setMarkets([
    { symbol: "BTCUSDT", base_asset: "BTC", quote_asset: "USDT", tick_size: "0.01", step_size: "0.00001", min_qty: "0.00001", min_notional: "5" },
    { symbol: "XYZUSDT", base_asset: "XYZ", quote_asset: "USDT", tick_size: "0.0001", step_size: "1", min_qty: "1", min_notional: "5" },
  ]);
});

test("prices take the tick size's decimals, quantities the step size's", () => {
  assert.equal(fmt.price("BTCUSDT", "60000"), "60000.00");
  assert.equal(fmt.price("BTCUSDT", "60000.125"), "60000.13");
  assert.equal(fmt.qty("BTCUSDT", "0.01"), "0.01000");
  assert.equal(fmt.qty("XYZUSDT", "3"), "3");
  assert.equal(fmt.price("XYZUSDT", "0.1"), "0.1000");
});

test("quote amounts have at least two decimals and keep their sign", () => {
  assert.equal(fmt.quote("BTCUSDT", "-1.2345"), "-1.23");
  assert.equal(fmt.quote("XYZUSDT", "2.5"), "2.5000");
  assert.equal(fmt.quote("BTCUSDT", "-0.001"), "0.00");
});

test("an unknown market or a value that is not a decimal is shown as it is", () => {
  assert.equal(fmt.price("NOPE", "1.23456"), "1.23456");
  assert.equal(fmt.price("BTCUSDT", "n/a"), "n/a");
  assert.equal(fmt.price("BTCUSDT", null), "");
});

test("asset amounts: at most 8 decimals, no trailing zeros", () => {
  assert.equal(fmt.assetAmount("50.0500"), "50.05");
  assert.equal(fmt.assetAmount("10000.00"), "10000");
  assert.equal(fmt.assetAmount("0.000000015"), "0.00000002");
  assert.equal(fmt.assetAmount("0"), "0");
});

test("sign classes come from the decimal string", () => {
  assert.equal(fmt.signClass("0.0001"), "pos");
  assert.equal(fmt.signClass("-0.0001"), "neg");
  assert.equal(fmt.signClass("0.00"), "");
  assert.equal(fmt.signClass(undefined), "");
});
