// Positions of the current mode by symbol, from `GET /api/positions` and `POSITION_UPDATE` events. Mark
// price and PnL are the server's (the price feed marks positions and pushes them): nothing is recomputed here.

import * as dec from "../decimal.js";

/** The map for a `GET /api/positions` answer. */
export function positionsFrom(list) {
  return new Map(list.map((p) => [p.symbol, p]));
}

/**
 * Merge a `POSITION_UPDATE`; false when it is for the other mode or older than what is shown (mark-driven
 * updates and fill-driven ones come from different services and may cross).
 */
export function applyPositionUpdate(positions, data, mode) {
  if (data.mode !== mode) return false;
  const prev = positions.get(data.symbol);
  if (prev && Date.parse(data.updated_at) < Date.parse(prev.updated_at)) return false;
  positions.set(data.symbol, { ...prev, ...data });
  return true;
}

/** The rows to show: positions with a quantity or a realized PnL, by symbol. */
export function visiblePositions(positions) {
  return [...positions.values()]
    .filter((p) => !dec.isZero(p.quantity) || !dec.isZero(p.realized_pnl))
    .sort((a, b) => a.symbol.localeCompare(b.symbol));
}
