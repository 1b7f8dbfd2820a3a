import assert from "node:assert/strict";
import { test } from "node:test";

import { backoffDelay, MAX_BACKOFF_MS, resumePoint } from "../static/assets/js/live.js";

test("resume from the last private event; RESYNC_REQUIRED forgets it", () => {
  assert.equal(resumePoint(null, { type: "ORDER_UPDATE", id: "5-0" }), "5-0");
  assert.equal(resumePoint("5-0", { type: "TICKER", id: "9-0" }), "5-0"); // public ids are other streams'
  assert.equal(resumePoint("5-0", { type: "PONG", id: null }), "5-0");
  assert.equal(resumePoint("5-0", { type: "RESYNC_REQUIRED", id: null }), null);
});

test("backoff doubles from 0.5 s with jitter, up to its ceiling", () => {
  const low = () => 0;
  const high = () => 1;
  assert.equal(backoffDelay(1, 0, low), 250);
  assert.equal(backoffDelay(1, 0, high), 500);
  assert.equal(backoffDelay(2, 0, high), 1000);
  assert.equal(backoffDelay(20, 0, high), MAX_BACKOFF_MS);
  assert.equal(backoffDelay(20, 2, high), MAX_BACKOFF_MS * 2);
});
