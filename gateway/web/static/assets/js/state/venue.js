// Which venue's market the trading page shows: the one the user's orders go to (paper or the Binance spot
// testnet), so a testnet-mode user never prices an order off the paper book. The venue names the live
// channels ("ticker:BTCUSDT@testnet"; paper's have no suffix), goes on every REST market call and the quote
// (`?venue=`), and is checked on what comes back (every public message and answer carries `venue`).

export const PAPER = "paper";
export const TESTNET = "testnet";
const LABELS = { [PAPER]: "Paper exchange", [TESTNET]: "Binance testnet" };

/** The venue of a trading mode; paper while the mode is unknown (logged out, profile not loaded yet). */
export function venueOf(mode) {
  return mode === TESTNET ? TESTNET : PAPER;
}

/** A channel name on `venue`: paper's are the plain names, others carry "@venue". */
export function venueChannel(channel, venue) {
  return venue === PAPER ? channel : `${channel}@${venue}`;
}

/** The public channels of one market on one venue: ticker, book, trades and the chart's candles. */
export function marketChannels(symbol, venue, interval) {
  return [`ticker:${symbol}`, `depth:${symbol}`, `trades:${symbol}`, `candles:${symbol}:${interval}`]
    .map((c) => venueChannel(c, venue));
}

/** `path` with `venue=` added to its query string. */
export function withVenue(path, venue) {
  return `${path}${path.includes("?") ? "&" : "?"}venue=${encodeURIComponent(venue)}`;
}

/**
 * Whether market data (a message's data, a REST answer or one of its rows) is `venue`'s. Data without a
 * venue predates venues and is paper's; anything else is dropped (a message of a channel just left, or an
 * answer to a request made before a mode switch).
 */
export function isVenue(data, venue) {
  return (data?.venue ?? PAPER) === venue;
}

/** The label shown next to the ticker, the book and the chart. */
export function venueLabel(venue) {
  return LABELS[venue] || venue;
}
