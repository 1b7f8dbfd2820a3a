import assert from "node:assert/strict";
import { test } from "node:test";

import {
  isVenue, marketChannels, venueChannel, venueLabel, venueOf, withVenue,
} from "../static/assets/js/state/venue.js";

test("a mode's venue: testnet for testnet, paper otherwise", () => {
  assert.equal(venueOf("testnet"), "testnet");
  assert.equal(venueOf("paper"), "paper");
  assert.equal(venueOf(undefined), "paper");
  assert.equal(venueOf(null), "paper");
});

test("channels: paper's are the plain names, testnet's carry @testnet", () => {
  assert.equal(venueChannel("ticker:BTCUSDT", "paper"), "ticker:BTCUSDT");
  assert.equal(venueChannel("candles:BTCUSDT:1m", "testnet"), "candles:BTCUSDT:1m@testnet");
  assert.deepEqual(marketChannels("BTCUSDT", "paper", "1m"),
    ["ticker:BTCUSDT", "depth:BTCUSDT", "trades:BTCUSDT", "candles:BTCUSDT:1m"]);
  assert.deepEqual(marketChannels("ETHUSDT", "testnet", "1m"),
    ["ticker:ETHUSDT@testnet", "depth:ETHUSDT@testnet", "trades:ETHUSDT@testnet", "candles:ETHUSDT:1m@testnet"]);
});

test("REST paths get venue= in their query string", () => {
  assert.equal(withVenue("/api/markets/BTCUSDT/ticker", "testnet"), "/api/markets/BTCUSDT/ticker?venue=testnet");
  assert.equal(withVenue("/api/markets/BTCUSDT/depth?limit=10", "paper"), "/api/markets/BTCUSDT/depth?limit=10&venue=paper");
});

test("data of another venue is not shown; data without a venue is paper's", () => {
  assert.equal(isVenue({ symbol: "BTCUSDT", venue: "testnet" }, "testnet"), true);
  assert.equal(isVenue({ symbol: "BTCUSDT", venue: "paper" }, "testnet"), false);
  assert.equal(isVenue({ symbol: "BTCUSDT", venue: "testnet" }, "paper"), false);
  assert.equal(isVenue({ symbol: "BTCUSDT" }, "paper"), true);
  assert.equal(isVenue({ symbol: "BTCUSDT" }, "testnet"), false);
  assert.equal(isVenue(null, "paper"), true);
});

test("labels name the venue", () => {
  assert.equal(venueLabel("paper"), "Paper exchange");
  assert.equal(venueLabel("testnet"), "Binance testnet");
});
