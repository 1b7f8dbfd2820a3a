import assert from "node:assert/strict";
import { test } from "node:test";

import { divToStep } from "../static/assets/js/decimal.js";
import { bandCap, costEstimate, costPrice, feeRate, lockPrice, sizeForPercent, ticketPath } from "../static/assets/js/state/ticket.js";

// What GET /api/ticket answers for a paper BTCUSDT buyer with the starting deposit.
const BUY = {
  symbol: "BTCUSDT", side: "BUY", mode: "paper", base_asset: "BTC", quote_asset: "USDT", available_asset: "USDT",
  available: "10000", tick_size: "0.01", step_size: "0.00001", min_qty: "0.00001", min_notional: "5",
  market_protection_pct: "5", maker_fee_rate: "0.001", taker_fee_rate: "0.001", reserve_fee_rate: "0.001",
  best_bid: "49990", best_ask: "50000",
};
const SELL = { ...BUY, side: "SELL", available_asset: "BTC", available: "0.12345" };

test("divToStep: whole steps of a quotient, rounded down, in plain digits", () => {
  assert.equal(divToStep("10", "3", "0.01"), "3.33");
  assert.equal(divToStep("2500", "50050", "0.00001"), "0.04995");
  assert.equal(divToStep("-1", "3", "1"), "-1");
  assert.equal(divToStep("0.00000001", "1", "0.00000001"), "0.00000001"); // never 1e-8
  assert.throws(() => divToStep("1", "0", "1"), RangeError);
});

test("an order is costed at its limit price, a market stop at its stop, a market order at the best opposite price", () => {
  assert.equal(costPrice({ type: "LIMIT", side: "BUY", price: " 48000 " }, BUY), "48000");
  assert.equal(costPrice({ type: "STOP_LOSS", side: "SELL", price: "", stopPrice: "47000" }, BUY), "47000");
  assert.equal(costPrice({ type: "MARKET", side: "BUY" }, BUY), "50000");
  assert.equal(costPrice({ type: "MARKET", side: "SELL" }, BUY), "49990");
  assert.equal(costPrice({ type: "MARKET", side: "BUY" }, { ...BUY, best_ask: null }), null);
  assert.equal(costPrice({ type: "LIMIT", side: "BUY", price: "abc" }, BUY), null);
});

test("cost, fee and total at the venue's rate: a buy pays cost + fee, a sell receives cost - fee", () => {
  assert.deepEqual(costEstimate({ type: "LIMIT", side: "BUY", quantity: "0.1", price: "50000" }, BUY),
    { price: "50000", cost: "5000.0", fee: "5.0000", rate: "0.001", total: "5005.0000" });
  assert.deepEqual(costEstimate({ type: "MARKET", side: "SELL", quantity: "0.1" }, SELL),
    { price: "49990", cost: "4999.0", fee: "4.9990", rate: "0.001", total: "4994.0010" });
  assert.equal(costEstimate({ type: "LIMIT", side: "BUY", quantity: "", price: "1" }, BUY), null);
  // the testnet does not tell its rate: no fee is made up
  const testnet = { ...BUY, maker_fee_rate: null, taker_fee_rate: null, reserve_fee_rate: null };
  assert.deepEqual(costEstimate({ type: "LIMIT", side: "BUY", quantity: "1", price: "10" }, testnet),
    { price: "10", cost: "10", fee: null, rate: null, total: "10" });
});

test("a resting order may make or take (the higher rate); a market order takes", () => {
  const info = { ...BUY, maker_fee_rate: "0.0002", taker_fee_rate: "0.0007" };
  assert.equal(feeRate("LIMIT", info), "0.0007");
  assert.equal(feeRate("MARKET", { ...info, maker_fee_rate: "0.002" }), "0.0007");
  assert.equal(feeRate("STOP_LOSS_LIMIT", { ...info, maker_fee_rate: "0.002" }), "0.002");
});

test("a market buy locks up to the protection band above its reference, on the tick grid, as the paper exchange does", () => {
  assert.equal(bandCap("50000", BUY), "52500");
  assert.equal(bandCap("100.07", BUY), "105.07"); // floor(10007 x 1.05) = 10507 ticks
  assert.equal(lockPrice({ type: "MARKET", side: "BUY" }, BUY), "52500");
  assert.equal(lockPrice({ type: "STOP_LOSS", side: "BUY", stopPrice: "60000" }, BUY), "63000");
  assert.equal(lockPrice({ type: "LIMIT", side: "BUY", price: "40000" }, BUY), "40000");
});

function onGrid(quantity, step) {
  return divToStep(quantity, step, "1") === String(BigInt(divToStep(quantity, step, "1")));
}

test("percent sizes: on the step grid, affordable with the fee the buy locks", () => {
  const limit = { type: "LIMIT", side: "BUY", price: "50000" };
  assert.deepEqual(sizeForPercent(100, limit, BUY), { quantity: "0.19980" }); // 10000 / (50000 x 1.001) = 0.199800...
  assert.deepEqual(sizeForPercent(25, limit, BUY), { quantity: "0.04995" });
  assert.deepEqual(sizeForPercent(100, { type: "MARKET", side: "BUY" }, BUY), { quantity: "0.19028" }); // at the 52500 cap
  assert.deepEqual(sizeForPercent(50, { type: "MARKET", side: "SELL" }, SELL), { quantity: "0.06172" }); // 0.061725 down
  assert.deepEqual(sizeForPercent(100, { type: "MARKET", side: "SELL" }, SELL), { quantity: "0.12345" });
  for (const pct of [25, 50, 75, 100]) {
    const { quantity } = sizeForPercent(pct, limit, BUY);
    const locked = costEstimate({ ...limit, quantity }, BUY).total;
    assert.ok(onGrid(quantity, BUY.step_size), quantity);
    assert.ok(Number(locked) <= 10000 * pct / 100 + 1e-9, `${pct}%: ${locked}`);
  }
});

test("percent sizes that cannot make a valid order say why, in plain words", () => {
  const tiny = { ...BUY, available: "12" };
  const { error } = sizeForPercent(25, { type: "LIMIT", side: "BUY", price: "50000" }, tiny);
  assert.match(error, /under the minimum of 5 USDT/);
  assert.match(sizeForPercent(25, { type: "LIMIT", side: "SELL", price: "50000" }, { ...SELL, available: "0.00003" }).error,
    /less than the smallest order \(0.00001 BTC\)/);
  assert.equal(sizeForPercent(50, { type: "LIMIT", side: "BUY", price: "" }, BUY).error, "Enter a limit price first.");
  assert.match(sizeForPercent(50, { type: "MARKET", side: "BUY" }, { ...BUY, best_ask: null }).error, /No price on the book/);
  assert.equal(sizeForPercent(50, { type: "MARKET", side: "BUY" }, null).error, "Your balance is not loaded yet.");
});

test("the ticket's figures are asked per symbol, side and mode", () => {
  assert.equal(ticketPath("BTCUSDT", "SELL", "testnet"), "/api/ticket?symbol=BTCUSDT&side=SELL&mode=testnet");
  assert.equal(ticketPath("BTCUSDT", "BUY"), "/api/ticket?symbol=BTCUSDT&side=BUY");
});

test("before sending, sizes the server would refuse are said in plain words", async () => {
  const { preflight } = await import("../static/assets/js/state/ticket.js");
  const limit = { type: "LIMIT", side: "BUY", price: "50000" };
  assert.deepEqual(preflight({ ...limit, quantity: "0.1" }, BUY), {});
  assert.deepEqual(preflight({ ...limit, quantity: "0.00001" }, BUY),
    { quantity: "This order is worth 0.5 USDT; the smallest order is 5 USDT." });
  assert.deepEqual(preflight({ ...limit, quantity: "0.2" }, BUY),
    { quantity: "Not enough USDT: this order needs up to 10010 USDT with its fee; you have 10000 available." });
  // a paper market buy locks up to the band above the best ask: 0.19 x 52500 x 1.001 > 10000
  assert.match(preflight({ type: "MARKET", side: "BUY", quantity: "0.19029" }, BUY).quantity, /^Not enough USDT/);
  assert.deepEqual(preflight({ type: "MARKET", side: "BUY", quantity: "0.19028" }, BUY), {});
  // the testnet locks nothing here: its own price, no band, no fee made up
  const testnet = { ...BUY, mode: "testnet", maker_fee_rate: null, taker_fee_rate: null, reserve_fee_rate: null };
  assert.deepEqual(preflight({ type: "MARKET", side: "BUY", quantity: "0.2" }, testnet), {});
  assert.deepEqual(sizeForPercent(100, { type: "MARKET", side: "BUY" }, testnet), { quantity: "0.20000" });
  assert.deepEqual(preflight({ type: "MARKET", side: "SELL", quantity: "0.2" }, SELL),
    { quantity: "Not enough BTC: you have 0.12345 available." });
  assert.deepEqual(preflight({ ...limit, quantity: "" }, BUY), {});
  assert.deepEqual(preflight({ ...limit, quantity: "1" }, null), {});
});
