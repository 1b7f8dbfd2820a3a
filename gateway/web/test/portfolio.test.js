import assert from "node:assert/strict";
import { test } from "node:test";

import { applyBalanceUpdate } from "../static/assets/js/state/balances.js";
import { applyPositionUpdate, positionsFrom, visiblePositions } from "../static/assets/js/state/positions.js";

function position(symbol, fields = {}) {
  return {
    symbol, mode: "paper", quantity: "0.01", avg_entry_price: "60000", mark_price: "60100", unrealized_pnl: "1",
    realized_pnl: "0", fees_paid: "0.6", updated_at: "2024-05-01T10:00:00+00:00", ...fields,
  };
}

test("a POSITION_UPDATE replaces the server's mark and PnL as they are", () => {
  const positions = positionsFrom([position("BTCUSDT")]);
  const mark = { symbol: "BTCUSDT", mode: "paper", quantity: "0.01", avg_entry_price: "60000", mark_price: "59000.5",
    unrealized_pnl: "-9.995", realized_pnl: "0", updated_at: "2024-05-01T10:00:01+00:00", source: "mark" };
  assert.equal(applyPositionUpdate(positions, mark, "paper"), true);
  const p = positions.get("BTCUSDT");
  assert.equal(p.unrealized_pnl, "-9.995");
  assert.equal(p.mark_price, "59000.5");
  assert.equal(p.fees_paid, "0.6"); // a mark update has no fees: the snapshot's stay
});

test("a POSITION_UPDATE of the other mode, or older than the row, is ignored", () => {
  const positions = positionsFrom([position("BTCUSDT", { updated_at: "2024-05-01T10:00:05Z" })]);
  assert.equal(applyPositionUpdate(positions, position("BTCUSDT", { mode: "testnet", quantity: "9" }), "paper"), false);
  assert.equal(applyPositionUpdate(positions, position("BTCUSDT", { quantity: "9", updated_at: "2024-05-01T10:00:04Z" }), "paper"), false);
  assert.equal(positions.get("BTCUSDT").quantity, "0.01");
  assert.equal(applyPositionUpdate(positions, position("ETHUSDT"), "paper"), true);
  assert.equal(positions.size, 2);
});

test("closed positions without realized PnL are not shown", () => {
  const positions = positionsFrom([
    position("ETHUSDT", { quantity: "0", realized_pnl: "0.00" }),
    position("BNBUSDT", { quantity: "0", realized_pnl: "-3.2" }),
    position("BTCUSDT"),
  ]);
  assert.deepEqual(visiblePositions(positions).map((p) => p.symbol), ["BNBUSDT", "BTCUSDT"]);
});

test("a BALANCE_UPDATE replaces the assets it names, for its mode only", () => {
  const before = [{ asset: "USDT", free: "10000", locked: "0", total: "10000" }];
  const update = { mode: "paper", balances: [
    { asset: "USDT", free: "9949.95", locked: "50.05", total: "10000.00" },
    { asset: "BTC", free: "0.001", locked: "0", total: "0.001" },
  ] };
  assert.deepEqual(applyBalanceUpdate(before, update, "paper").map((b) => [b.asset, b.locked]), [["BTC", "0"], ["USDT", "50.05"]]);
  assert.equal(applyBalanceUpdate(before, update, "testnet"), null);
  assert.equal(before[0].free, "10000"); // the old list is not changed
});
