// TradeBridge API keys (for the Binance-compatible API): the request a form makes, and how a key is described.

const SCOPES = ["read", "trade"];

/** The POST /api/api-keys body from the form's values; scopes in a stable order, addresses split on commas. */
export function keyRequest({ label = "", read = true, trade = true, ips = "" }) {
  const chosen = { read, trade };
  return {
    label: label.trim(),
    scopes: SCOPES.filter((s) => chosen[s]),
    ip_allowlist: ips.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean),
  };
}

/** One line about a key: its hint, scopes and where it may be used from. */
export function describeKey(key) {
  const where = key.ip_allowlist?.length ? `from ${key.ip_allowlist.join(", ")}` : "from any address";
  const name = key.label ? `${key.label} ` : "";
  return `${name}${key.api_key_hint} · ${key.scopes.join(" + ")} · ${where}`;
}
