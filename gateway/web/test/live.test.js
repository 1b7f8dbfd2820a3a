import assert from "node:assert/strict";
import { test } from "node:test";

import { backoffDelay, compareEventIds, MAX_BACKOFF_MS, resumePoint, socketUrl } from "../static/assets/js/live.js";

test("resume from the last private event; RESYNC_REQUIRED forgets it", () => {
  assert.equal(resumePoint(null, { type: "ORDER_UPDATE", id: "5-0" }), "5-0");
  assert.equal(resumePoint("5-0", { type: "TICKER", id: "9-0" }), "5-0"); // public ids are other streams'
  assert.equal(resumePoint("5-0", { type: "PONG", id: null }), "5-0");
  assert.equal(resumePoint("5-0", { type: "RESYNC_REQUIRED", id: null }), null);
});

test("event ids compare as the server's (ms, seq) numbers, not as strings", () => {
  assert.equal(compareEventIds("999-0", "1700000000000-0"), -1);
  assert.equal(compareEventIds("1700000000000-10", "1700000000000-9"), 1);
  assert.equal(compareEventIds("1700000000000-0", "1700000000000"), 0);
  assert.equal(compareEventIds("18446744073709551615-1", "18446744073709551615-0"), 1); // beyond 2**53
  assert.equal(compareEventIds("x", "1-0"), null);
});

test("the resume point never moves back: an older id arriving later (a replay behind live events) is ignored", () => {
  let point = null;
  for (const id of ["1700000000000-3", "1700000000000-10", "1700000000000-9", "999-0", "1700000000000-10"]) {
    const before = point;
    point = resumePoint(point, { type: "ORDER_UPDATE", id });
    assert.ok(before === null || compareEventIds(point, before) >= 0, `${before} -> ${point}`);
  }
  assert.equal(point, "1700000000000-10");
  assert.equal(resumePoint(point, { type: "TRADE", id: "1700000000001-0" }), "1700000000001-0");
  assert.equal(resumePoint(point, { type: "BALANCE_UPDATE", id: "not-an-id" }), point);
  // After RESYNC_REQUIRED the next private event starts it again, even one older than the forgotten point.
  assert.equal(resumePoint(resumePoint(point, { type: "RESYNC_REQUIRED" }), { type: "ORDER_UPDATE", id: "5-0" }), "5-0");
});

test("the resume point goes on the connect URL (the contract's atomic resume), never the token", () => {
  const loc = { protocol: "https:", host: "tb.example:8443" };
  assert.equal(socketUrl(loc, null), "wss://tb.example:8443/ws");
  assert.equal(socketUrl({ protocol: "http:", host: "127.0.0.1:8000" }, "1700000000000-7"),
    "ws://127.0.0.1:8000/ws?last_event_id=1700000000000-7");
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
