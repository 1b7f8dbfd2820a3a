import assert from "node:assert/strict";
import { test } from "node:test";

import { applyBalanceUpdate, balancesPath, clockTime, venueBanner } from "../static/assets/js/state/balances.js";

test("balances are always requested for an explicit mode", () => {
  assert.equal(balancesPath("testnet"), "/api/balances?mode=testnet");
  assert.equal(balancesPath("paper"), "/api/balances?mode=paper");
});

test("a BALANCE_UPDATE of the other mode is ignored; testnet ones apply in testnet mode", () => {
  const paper = [{ asset: "USDT", free: "10000", locked: "0", total: "10000" }];
  assert.equal(applyBalanceUpdate([], { mode: "paper", balances: paper }, "testnet"), null);
  const eth = { asset: "ETH", free: "12.5", locked: "0", total: "12.5" };
  assert.deepEqual(applyBalanceUpdate([], { mode: "testnet", balances: [eth] }, "testnet"), [eth]);
});

test("the banner says the testnet is unreachable and when it was last reached", () => {
  const at = "2026-12-03T09:07:05Z";
  assert.equal(
    venueBanner({ mode: "testnet", reachable: false, last_reached_at: at, stream: "down" }),
    `Binance testnet unreachable — last reached ${clockTime(at)}`,
  );
  assert.match(clockTime(at), /^\d\d:\d\d:\d\d$/);
  assert.equal(
    venueBanner({ mode: "testnet", reachable: false, last_reached_at: null, stream: "down" }),
    "Binance testnet unreachable — never reached",
  );
});

test("no banner when the testnet is reachable, not yet tried, or for paper", () => {
  assert.equal(venueBanner({ mode: "testnet", reachable: true, last_reached_at: "2026-12-03T09:07:05Z", stream: "up" }), null);
  assert.equal(venueBanner({ mode: "testnet", reachable: null, last_reached_at: null, stream: "down" }), null);
  assert.equal(venueBanner({ mode: "paper", reachable: true, last_reached_at: null, stream: null }), null);
  assert.equal(venueBanner(null), null);
});
