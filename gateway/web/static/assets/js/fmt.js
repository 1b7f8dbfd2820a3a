// Number formatting with each market's precision (tick size for prices, step size for quantities).
// Values arrive as decimal strings; formatting works on the string so no float rounding shows up.

const markets = new Map();

export function setMarkets(list) {
  markets.clear();
  for (const m of list || []) markets.set(m.symbol, m);
}

export function market(symbol) {
  return markets.get(symbol);
}

export function allMarkets() {
  return [...markets.values()];
}

export function decimalsOf(increment) {
  if (increment === undefined || increment === null) return null;
  const s = String(increment);
  if (/e-/i.test(s)) return Number(s.split(/e-/i)[1]);
  const dot = s.indexOf(".");
  if (dot < 0) return 0;
  return s.slice(dot + 1).replace(/0+$/, "").length;
}

// Round a decimal string half-up to `places` decimals, keeping it a string.
export function fixed(value, places) {
  if (value === undefined || value === null || value === "") return "";
  let s = String(value).trim();
  if (!/^-?\d+(\.\d+)?$/.test(s)) {
    const n = Number(s);
    if (!Number.isFinite(n)) return s;
    s = n.toFixed(Math.max(places, 0) + 2);
  }
  if (places === null || places === undefined) return s;
  const neg = s.startsWith("-");
  if (neg) s = s.slice(1);
  let [int, frac = ""] = s.split(".");
  if (frac.length > places) {
    const roundUp = frac.charCodeAt(places) >= 53; // '5'
    frac = frac.slice(0, places);
    if (roundUp) {
      const digits = (int + frac).split("").map(Number);
      let i = digits.length - 1;
      while (i >= 0) {
        if (digits[i] === 9) { digits[i] = 0; i -= 1; } else { digits[i] += 1; break; }
      }
      if (i < 0) digits.unshift(1);
      const joined = digits.join("");
      int = joined.slice(0, joined.length - places);
      frac = joined.slice(joined.length - places);
    }
  }
  frac = frac.padEnd(places, "0");
  const body = places > 0 ? `${int || "0"}.${frac}` : int || "0";
  const isZero = /^[0.]*$/.test(body);
  return (neg && !isZero ? "-" : "") + body;
}

export function price(symbol, value) {
  return fixed(value, decimalsOf(market(symbol)?.tick_size) ?? 2);
}

export function qty(symbol, value) {
  return fixed(value, decimalsOf(market(symbol)?.step_size) ?? 8);
}

// Quote-asset amounts (PnL, notional): the tick's precision, at least 2 decimals.
export function quote(symbol, value) {
  return fixed(value, Math.max(decimalsOf(market(symbol)?.tick_size) ?? 2, 2));
}

export function assetAmount(value) {
  if (value === undefined || value === null) return "";
  const s = fixed(value, 8);
  return s.includes(".") ? s.replace(/0+$/, "").replace(/\.$/, "") : s;
}

export function signClass(value) {
  const n = Number(value);
  return n > 0 ? "pos" : n < 0 ? "neg" : "";
}

export function time(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts);
  return d.toLocaleTimeString([], { hour12: false });
}

export function dateTime(ts) {
  if (!ts) return "";
  const d = new Date(ts);
  if (Number.isNaN(d.getTime())) return String(ts);
  return d.toLocaleString([], { hour12: false });
}

export function baseQuote(symbol) {
  const m = market(symbol);
  if (m?.base_asset) return [m.base_asset, m.quote_asset];
  for (const q of ["USDT", "BUSD", "USDC", "BTC", "ETH"]) {
    if (symbol.endsWith(q) && symbol.length > q.length) return [symbol.slice(0, -q.length), q];
  }
  return [symbol, ""];
}
