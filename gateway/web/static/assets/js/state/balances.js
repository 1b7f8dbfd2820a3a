// Balances of the current mode, from `GET /api/balances?mode=` and `BALANCE_UPDATE` events
// (`{mode, balances: [{asset, free, locked, total}]}`, only the assets that changed).

/** The request for one mode's balances: always explicit, so a testnet view never gets the paper ones. */
export function balancesPath(mode) {
  return `/api/balances?mode=${encodeURIComponent(mode)}`;
}

/** The balances after a `BALANCE_UPDATE`, by asset; null when it is for the other mode. */
export function applyBalanceUpdate(balances, data, mode) {
  if (data.mode !== mode) return null;
  const byAsset = new Map(balances.map((b) => [b.asset, b]));
  for (const b of data.balances) byAsset.set(b.asset, b);
  return [...byAsset.values()].sort((a, b) => a.asset.localeCompare(b.asset));
}

/** HH:MM:SS of an ISO instant, in the browser's time zone. */
export function clockTime(iso) {
  const d = new Date(iso);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, "0")).join(":");
}

/** The banner for a `GET /api/venue-status` answer: text when the exchange cannot be reached, else null. */
export function venueBanner(status) {
  if (!status || status.mode !== "testnet" || status.reachable !== false) return null;
  const when = status.last_reached_at ? `last reached ${clockTime(status.last_reached_at)}` : "never reached";
  return `Binance testnet unreachable — ${when}`;
}
