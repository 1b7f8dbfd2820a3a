// The cumulative depth chart's data and geometry, from a book as `GET .../depth` and `DEPTH` send it (`bids`
// and `asks` of `[price, quantity]`, best first). Sums are exact (decimal.js); coordinates are floats, for
// drawing only.

import * as dec from "../decimal.js";

/** Levels with the running total of their quantities, best first: `[price, quantity, total]`. */
export function cumulative(levels) {
  let total = "0";
  return levels.map(([price, quantity]) => {
    total = dec.add(total, quantity);
    return [price, quantity, total];
  });
}

/**
 * Where to draw the book in a `width` x `height` box: a step line per side from the mid price outwards (bids to
 * the left, asks to the right, height the cumulative quantity), on a price axis centred on the mid price and
 * wide enough for the farther side, so both sides are drawn to the same scale. Null while a side is empty.
 *
 * Returns `{bids, asks}` as closed polygons (`[x, y]` points from the baseline up and back), the axis `{low,
 * mid, high}` (prices as numbers) and `total` (the larger side's cumulative quantity, a decimal string).
 */
export function depthGeometry(depth, width, height) {
  if (!depth?.bids?.length || !depth?.asks?.length || width <= 0 || height <= 0) return null;
  const bids = cumulative(depth.bids);
  const asks = cumulative(depth.asks);
  const bestBid = Number(bids[0][0]);
  const bestAsk = Number(asks[0][0]);
  const mid = (bestBid + bestAsk) / 2;
  const reach = Math.max(mid - Number(bids[bids.length - 1][0]), Number(asks[asks.length - 1][0]) - mid, (bestAsk - bestBid) || mid * 0.001);
  const low = mid - reach;
  const high = mid + reach;
  const bidTotal = bids[bids.length - 1][2];
  const askTotal = asks[asks.length - 1][2];
  const total = dec.cmp(bidTotal, askTotal) >= 0 ? bidTotal : askTotal;
  const top = Number(total);
  const x = (price) => ((Number(price) - low) / (high - low)) * width;
  const y = (qty) => height - (Number(qty) / top) * height;

  function side(levels, edge) {
    const points = [[x(levels[0][0]), height]];
    let previous = "0";
    for (const [price, , sum] of levels) {
      points.push([x(price), y(previous)], [x(price), y(sum)]);
      previous = sum;
    }
    points.push([edge, y(previous)], [edge, height]);
    return points;
  }

  return { bids: side(bids, 0), asks: side(asks, width), low, mid, high, total };
}
