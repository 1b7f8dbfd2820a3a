// Balances of the current mode, from `GET /api/balances` and `BALANCE_UPDATE` events
// (`{mode, balances: [{asset, free, locked, total}]}`, only the assets that changed).

/** The balances after a `BALANCE_UPDATE`, by asset; null when it is for the other mode. */
export function applyBalanceUpdate(balances, data, mode) {
  if (data.mode !== mode) return null;
  const byAsset = new Map(balances.map((b) => [b.asset, b]));
  for (const b of data.balances) byAsset.set(b.asset, b);
  return [...byAsset.values()].sort((a, b) => a.asset.localeCompare(b.asset));
}
