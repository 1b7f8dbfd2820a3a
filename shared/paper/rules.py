"""Per-symbol market rules (Binance-spot-like filters) and the Decimal <-> integer edge of the paper exchange.

The matching book works on integers only: prices in *ticks* (multiples of ``tick_size``) and quantities in
*lots* (multiples of ``step_size``). ``MarketRules`` is the one place that converts between the public
``Decimal`` values and those integers, and it is where order parameters are validated, so a value that is
not on the grid is rejected (never silently rounded).

Violations raise ``RuleViolation`` (an ``InvalidInput``, HTTP 422) whose ``rule`` names the Binance filter
(``PRICE_FILTER``, ``LOT_SIZE``, ``MIN_NOTIONAL``, ``SYMBOL``) and whose ``field`` names the request field
(``price``, ``quantity``, ``symbol``) so an API can show the message next to the field.

Typical use::

    rules = build_rules()                      # defaults for BTCUSDT, ETHUSDT, BNBUSDT
    r = rules[normalize_symbol("btc/usdt")]
    ticks, lots = r.limit_order(Decimal("65000.01"), Decimal("0.001"))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from shared.amounts import plain
from shared.markets import BUILTIN_MARKETS, DECIMAL_FIELDS, MarketFields, market_fields
from shared.trading_errors import RuleViolation

__all__ = [
    "DEFAULT_RULES",
    "MarketRules",
    "RuleViolation",
    "build_rules",
    "normalize_symbol",
]


def normalize_symbol(symbol: str) -> str:
    """``BTC/USDT``, ``btc-usdt`` and ``btcusdt`` all mean ``BTCUSDT`` (the canonical form)."""
    if not isinstance(symbol, str):
        raise RuleViolation("SYMBOL", "symbol", "symbol must be a string")
    out = symbol.strip().upper().replace("/", "").replace("-", "").replace("_", "")
    if not out.isalnum() or not (2 <= len(out) <= 20):
        raise RuleViolation("SYMBOL", "symbol", f"invalid symbol {symbol!r}")
    return out


@dataclass(frozen=True, slots=True)
class MarketRules:
    """Filters of one symbol. ``market_protection_pct`` bounds how far (in %) a MARKET order may walk from
    the best opposite price; whatever it cannot fill inside that band expires."""

    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    min_notional: Decimal
    max_qty: Decimal = Decimal("9000")
    market_protection_pct: Decimal = Decimal("5")
    min_price: Decimal = field(default=Decimal(0))

    def __post_init__(self) -> None:
        for name in ("tick_size", "step_size", "min_qty", "min_notional", "max_qty", "market_protection_pct"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise ValueError(f"{self.symbol}.{name} must be a finite non-negative Decimal")
        if self.tick_size <= 0 or self.step_size <= 0:
            raise ValueError(f"{self.symbol}: tick_size and step_size must be positive")
        if not (0 < self.market_protection_pct < 100):
            raise ValueError(f"{self.symbol}: market_protection_pct must be in (0, 100)")

    # -- conversions (exact; never round) -------------------------------------------------------------

    def price_to_ticks(self, price: Decimal) -> int:
        """Price -> integer ticks; raises PRICE_FILTER if not positive or not a multiple of the tick size."""
        p = _as_decimal(price, "PRICE_FILTER", "price")
        if p <= 0 or p <= self.min_price:
            raise RuleViolation("PRICE_FILTER", "price", f"price {plain(p)} must be positive")
        ticks, rem = divmod(p, self.tick_size)
        if rem != 0:
            raise RuleViolation(
                "PRICE_FILTER",
                "price",
                f"price {plain(p)} is not a multiple of the tick size {plain(self.tick_size)}",
            )
        return int(ticks)

    def qty_to_lots(self, quantity: Decimal) -> int:
        """Quantity -> integer lots; raises LOT_SIZE if outside [min_qty, max_qty] or off the step grid."""
        q = _as_decimal(quantity, "LOT_SIZE", "quantity")
        if q <= 0:
            raise RuleViolation("LOT_SIZE", "quantity", f"quantity {plain(q)} must be positive")
        if q < self.min_qty:
            raise RuleViolation(
                "LOT_SIZE", "quantity", f"quantity {plain(q)} is below the minimum {plain(self.min_qty)}"
            )
        if q > self.max_qty:
            raise RuleViolation(
                "LOT_SIZE", "quantity", f"quantity {plain(q)} is above the maximum {plain(self.max_qty)}"
            )
        lots, rem = divmod(q, self.step_size)
        if rem != 0:
            raise RuleViolation(
                "LOT_SIZE",
                "quantity",
                f"quantity {plain(q)} is not a multiple of the step size {plain(self.step_size)}",
            )
        return int(lots)

    def ticks_to_price(self, ticks: int) -> Decimal:
        return self.tick_size * ticks

    def lots_to_qty(self, lots: int) -> Decimal:
        return self.step_size * lots

    def check_notional(self, price: Decimal, quantity: Decimal) -> None:
        notional = price * quantity
        if notional < self.min_notional:
            raise RuleViolation(
                "MIN_NOTIONAL",
                "quantity",
                f"notional {plain(notional)} (price x quantity) is below the minimum "
                f"{plain(self.min_notional)}",
            )

    def limit_order(self, price: Decimal, quantity: Decimal) -> tuple[int, int]:
        """Validate a LIMIT order; return (price in ticks, quantity in lots)."""
        ticks = self.price_to_ticks(price)
        lots = self.qty_to_lots(quantity)
        # the validated values, not the raw ones: a str price/quantity must not reach Decimal arithmetic
        self.check_notional(
            _as_decimal(price, "PRICE_FILTER", "price"), _as_decimal(quantity, "LOT_SIZE", "quantity")
        )
        return ticks, lots

    def market_order(self, quantity: Decimal, reference_price: Decimal | None) -> int:
        """Validate a MARKET order (notional checked against ``reference_price`` when one is known)."""
        lots = self.qty_to_lots(quantity)
        if reference_price is not None:
            self.check_notional(reference_price, quantity)
        return lots

    def band_limit_ticks(self, best_opposite_ticks: int, is_buy: bool) -> int:
        """Worst price (ticks) a MARKET order may trade at, given the best opposite price."""
        factor = (
            (Decimal(100) + self.market_protection_pct)
            if is_buy
            else (Decimal(100) - self.market_protection_pct)
        )
        raw = Decimal(best_opposite_ticks) * factor / 100
        if is_buy:
            return int(raw.to_integral_value(rounding=ROUND_FLOOR))
        return max(1, int(raw.to_integral_value(rounding=ROUND_CEILING)))

    def public(self) -> dict[str, str]:
        """What ``GET /api/markets`` shows."""
        return {
            "symbol": self.symbol,
            "base_asset": self.base_asset,
            "quote_asset": self.quote_asset,
            "tick_size": plain(self.tick_size),
            "step_size": plain(self.step_size),
            "min_qty": plain(self.min_qty),
            "min_notional": plain(self.min_notional),
        }


def _as_decimal(value: Any, rule: str, field_name: str) -> Decimal:
    if isinstance(value, (bool, float)):
        # floats are not exact; the boundary takes Decimal (or str/int) only
        value = str(value)
    try:
        d = value if isinstance(value, Decimal) else Decimal(value)
    except (InvalidOperation, TypeError, ValueError):
        raise RuleViolation(rule, field_name, f"{field_name} {value!r} is not a number") from None
    if not d.is_finite():
        raise RuleViolation(rule, field_name, f"{field_name} must be finite")
    return d


def _from_fields(symbol: str, fields: MarketFields) -> MarketRules:
    values: dict[str, Any] = {
        k: (Decimal(str(v)) if k in DECIMAL_FIELDS or k == "min_price" else v) for k, v in fields.items()
    }
    return MarketRules(symbol=symbol, **values)


# The built-in markets (shared.markets holds their numbers, so settings can check SYMBOLS against them).
DEFAULT_RULES: dict[str, MarketRules] = {s: _from_fields(s, market_fields(s, {})) for s in BUILTIN_MARKETS}


def build_rules(
    symbols: Iterable[str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, MarketRules]:
    """Rules for ``symbols`` (default: the built-in markets), with per-symbol field ``overrides`` (what
    ``Settings.market_rules`` holds, from MARKET_RULES).

    A symbol without defaults needs at least tick_size, step_size and min_notional in its overrides
    (min_qty defaults to the step size; assets are inferred from a known quote suffix unless given); the
    ValueError names the symbol and the missing field (settings check the same at start).
    """
    configured = {normalize_symbol(k): dict(v) for k, v in (overrides or {}).items()}
    names = [normalize_symbol(s) for s in symbols] if symbols is not None else list(DEFAULT_RULES)
    return {name: _from_fields(name, market_fields(name, configured)) for name in names}
