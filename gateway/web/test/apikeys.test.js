import assert from "node:assert/strict";
import { test } from "node:test";

import { describeKey, keyRequest } from "../static/assets/js/state/apikeys.js";

test("the create request keeps the chosen scopes in order and splits the allow-list", () => {
  assert.deepEqual(keyRequest({ label: " bot ", read: true, trade: false, ips: "203.0.113.7, 10.0.0.0/8 ,," }), {
    label: "bot", scopes: ["read"], ip_allowlist: ["203.0.113.7", "10.0.0.0/8"],
  });
  assert.deepEqual(keyRequest({}).scopes, ["read", "trade"]);
  assert.deepEqual(keyRequest({ read: false, trade: false }).scopes, []);
});

test("a key is described by its hint, scopes and addresses, never a secret", () => {
  const key = { label: "bot", api_key_hint: "****abcd", scopes: ["read", "trade"], ip_allowlist: [] };
  assert.equal(describeKey(key), "bot ****abcd · read + trade · from any address");
  assert.equal(describeKey({ ...key, label: "", ip_allowlist: ["10.0.0.0/8"] }), "****abcd · read + trade · from 10.0.0.0/8");
});
