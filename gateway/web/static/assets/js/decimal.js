// Exact arithmetic on decimal strings ("0.001", "-12.50"), as the API sends amounts. Money never goes
// through a JavaScript number: 0.1 + 0.2 is not 0.3 there. A value is a BigInt of units and a scale (the
// number of decimal places); results come back as plain-digit strings (never "1e-7").

const PLAIN = /^([+-]?)(\d*)(?:\.(\d*))?$/;

/** {units, scale} for a decimal string (digits with an optional sign and point), or null if it is not one. */
export function parse(value) {
  if (typeof value !== "string") return null;
  const m = PLAIN.exec(value.trim());
  if (!m) return null;
  const [, sign, int, frac = ""] = m;
  if (!int && !frac) return null; // "", ".", "-"
  const units = BigInt(`${int || "0"}${frac}`);
  return { units: sign === "-" ? -units : units, scale: frac.length };
}

/** True for a decimal string as `parse` accepts it. */
export function isDecimal(value) {
  return parse(value) !== null;
}

function must(value) {
  const d = parse(value);
  if (d === null) throw new TypeError(`not a decimal string: ${JSON.stringify(value)}`);
  return d;
}

function rescale(d, scale) {
  return d.units * 10n ** BigInt(scale - d.scale);
}

function show(units, scale) {
  const neg = units < 0n;
  let digits = (neg ? -units : units).toString();
  if (scale > 0) {
    digits = digits.padStart(scale + 1, "0");
    digits = `${digits.slice(0, -scale)}.${digits.slice(-scale)}`;
  }
  return (neg ? "-" : "") + digits;
}

export function add(a, b) {
  const x = must(a);
  const y = must(b);
  const scale = Math.max(x.scale, y.scale);
  return show(rescale(x, scale) + rescale(y, scale), scale);
}

export function sub(a, b) {
  const x = must(a);
  const y = must(b);
  const scale = Math.max(x.scale, y.scale);
  return show(rescale(x, scale) - rescale(y, scale), scale);
}

export function mul(a, b) {
  const x = must(a);
  const y = must(b);
  return show(x.units * y.units, x.scale + y.scale);
}

/** -1, 0 or 1 as a < b, a = b, a > b. */
export function cmp(a, b) {
  const x = must(a);
  const y = must(b);
  const scale = Math.max(x.scale, y.scale);
  const d = rescale(x, scale) - rescale(y, scale);
  return d < 0n ? -1 : d > 0n ? 1 : 0;
}

/** -1, 0 or 1. */
export function sign(a) {
  const { units } = must(a);
  return units < 0n ? -1 : units > 0n ? 1 : 0;
}

export function isZero(a) {
  return sign(a) === 0;
}

/** A decimal string above zero (what the order ticket accepts as a quantity or a price). */
export function isPositive(value) {
  const d = parse(value);
  return d !== null && d.units > 0n;
}

/** Rounded half away from zero to exactly `places` decimals ("1.005", 2 -> "1.01"; "-0.001", 2 -> "0.00"). */
export function round(a, places) {
  const d = must(a);
  let units = d.units;
  if (places < d.scale) {
    const div = 10n ** BigInt(d.scale - places);
    const neg = units < 0n;
    const mag = neg ? -units : units;
    let q = mag / div;
    if ((mag % div) * 2n >= div) q += 1n;
    units = neg ? -q : q;
  } else {
    units *= 10n ** BigInt(places - d.scale);
  }
  return show(units, places);
}

/** Without trailing fractional zeros ("50.0500" -> "50.05", "10000.00" -> "10000", "-0.0" -> "0"). */
export function trim(a) {
  const d = must(a);
  let { units, scale } = d;
  while (scale > 0 && units % 10n === 0n) {
    units /= 10n;
    scale -= 1;
  }
  return show(units, scale);
}

/** Decimal places of an increment such as a tick or step size ("0.01" -> 2, "0.00010" -> 4, "1" -> 0). */
export function places(increment) {
  return must(trim(increment)).scale;
}

/**
 * a ÷ b rounded down to a multiple of `step` ("10", "3", "0.01" -> "3.33"; "-1", "3", "1" -> "-1"): how many
 * whole steps fit, exactly, for sizes that must sit on a market's step grid.
 */
export function divToStep(a, b, step) {
  const x = must(a);
  const y = must(b);
  const s = must(step);
  if (y.units === 0n || s.units <= 0n) throw new RangeError("division by zero or a non-positive step");
  // a / b / step = (x.units · 10^(y.scale + s.scale)) / (y.units · s.units · 10^x.scale)
  const num = x.units * 10n ** BigInt(y.scale + s.scale);
  const den = y.units * s.units * 10n ** BigInt(x.scale);
  let q = num / den; // truncates toward zero
  if (num % den !== 0n && (num < 0n) !== (den < 0n)) q -= 1n; // floor
  return show(q * s.units, s.scale);
}
