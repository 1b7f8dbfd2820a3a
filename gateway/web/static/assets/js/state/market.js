// Public market data of one symbol: the book (`GET .../depth`, `DEPTH`: `{symbol, bids, asks}` with
// `[price, quantity]` levels, best first) and recent trades (`GET .../trades`, `MARKET_TRADE`, newest first).

import * as dec from "../decimal.js";

/** Best ask minus best bid as a decimal string, or null while either side is empty. */
export function spread(depth) {
  if (!depth.asks.length || !depth.bids.length) return null;
  return dec.sub(depth.asks[0][0], depth.bids[0][0]);
}

/** The largest quantity among the levels (the ladder's bars are drawn relative to it). */
export function largestQuantity(levels) {
  let max = null;
  for (const [, q] of levels) if (max === null || dec.cmp(q, max) > 0) max = q;
  return max;
}

/**
 * A level's bar width in whole percent of the largest level. Display only: a ratio of two quantities for a
 * CSS width (no amount is derived from it), so a float is fine here.
 */
export function barPercent(quantity, largest) {
  if (largest === null || dec.sign(largest) <= 0) return 0;
  return Math.round((Number(quantity) / Number(largest)) * 100);
}

/** Trades with `trade` first (newest first), without duplicates, at most `keep`. */
export function pushTrade(trades, trade, keep) {
  if (trades.some((t) => t.trade_id === trade.trade_id)) return trades;
  return [trade, ...trades].slice(0, keep);
}
