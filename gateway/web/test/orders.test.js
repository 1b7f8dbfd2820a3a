import assert from "node:assert/strict";
import { test } from "node:test";

import { addFill, closedOrders, mergeOrder, mergeSnapshot, openOrders, stopState } from "../static/assets/js/state/orders.js";

function order(id, fields = {}) {
  return {
    order_id: id, mode: "paper", symbol: "BTCUSDT", side: "BUY", type: "LIMIT", status: "NEW", version: 1,
    quantity: "0.001", price: "50000", filled_quantity: "0", avg_price: null,
    created_at: "2024-05-01T10:00:00+00:00", updated_at: "2024-05-01T10:00:00+00:00", ...fields,
  };
}

test("the higher version wins, whichever arrives first", () => {
  const orders = new Map();
  assert.equal(mergeOrder(orders, order("a", { status: "NEW", version: 2 })), true);
  assert.equal(mergeOrder(orders, order("a", { status: "PENDING", version: 1 })), false); // the late placement answer
  assert.equal(orders.get("a").status, "NEW");
  mergeOrder(orders, order("a", { status: "FILLED", version: 3 }));
  assert.equal(orders.get("a").status, "FILLED");
});

test("an ORDER_UPDATE keeps the fills a detail brought", () => {
  const orders = new Map();
  mergeOrder(orders, order("a", { fills: [{ trade_id: "t1" }], version: 2 }));
  mergeOrder(orders, order("a", { status: "FILLED", version: 3 }));
  assert.deepEqual(orders.get("a").fills, [{ trade_id: "t1" }]);
});

test("fills are added once, and only to orders whose fills are loaded", () => {
  const orders = new Map();
  mergeOrder(orders, order("a", { fills: [] }));
  mergeOrder(orders, order("b"));
  assert.equal(addFill(orders, { order_id: "a", trade_id: "t1" }), true);
  assert.equal(addFill(orders, { order_id: "a", trade_id: "t1" }), false);
  assert.equal(addFill(orders, { order_id: "b", trade_id: "t2" }), false);
  assert.equal(addFill(orders, { order_id: "zzz", trade_id: "t3" }), false);
  assert.equal(orders.get("a").fills.length, 1);
});

test("a snapshot drops open orders of its mode that it no longer lists", () => {
  const orders = new Map();
  mergeOrder(orders, order("gone"));
  mergeOrder(orders, order("other-mode", { mode: "testnet" }));
  mergeOrder(orders, order("kept"));
  mergeSnapshot(orders, { open: [order("kept")], closed: [order("done", { status: "FILLED" })] }, "paper");
  assert.deepEqual([...orders.keys()].sort(), ["done", "kept", "other-mode"]);
});

test("open and closed lists are per mode, newest first", () => {
  const orders = new Map();
  mergeOrder(orders, order("old", { created_at: "2024-05-01T09:00:00Z" }));
  mergeOrder(orders, order("new", { created_at: "2024-05-01T11:00:00Z" }));
  mergeOrder(orders, order("testnet", { mode: "testnet" }));
  mergeOrder(orders, order("c1", { status: "CANCELED", updated_at: "2024-05-01T10:00:00Z" }));
  mergeOrder(orders, order("c2", { status: "REJECTED", updated_at: "2024-05-01T12:00:00Z" }));
  assert.deepEqual(openOrders(orders, "paper").map((o) => o.order_id), ["new", "old"]);
  assert.deepEqual(closedOrders(orders, "paper").map((o) => o.order_id), ["c2", "c1"]);
  assert.deepEqual(closedOrders(orders, "paper", 1).map((o) => o.order_id), ["c2"]);
  assert.deepEqual(openOrders(orders, "testnet").map((o) => o.order_id), ["testnet"]);
});

test("a stop order waits for its trigger until triggered_at is set; other orders have no trigger state", () => {
  assert.equal(stopState(order("s", { type: "STOP_LOSS_LIMIT", stop_price: "49500", triggered_at: null })), "waiting");
  assert.equal(stopState(order("s", { type: "STOP_LOSS_LIMIT", stop_price: "49500", triggered_at: "2024-05-01T10:01:00Z" })), "triggered");
  assert.equal(stopState(order("l", { stop_price: null })), null);
  assert.equal(stopState(order("old")), null); // an answer from before stop orders has no stop_price at all
});
