"""Which markets a deployment trades, and their rules as configuration states them (plain data).

The three built-in markets (BTCUSDT, ETHUSDT, BNBUSDT) carry default rules; any other symbol in `SYMBOLS`
needs its rules in `MARKET_RULES`, a JSON object of symbol -> fields, e.g.
``{"SOLUSDT": {"tick_size": "0.01", "step_size": "0.001", "min_notional": "5"}}``. A built-in market's entry
overrides only the fields it gives. Settings check this at start, so a missing rule is a configuration error
naming the symbol and the field, not a traceback later. The paper exchange turns these fields into its
``MarketRules`` (shared.paper.rules); this module holds the data so `shared.settings` can check it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

KNOWN_QUOTES = ("USDT", "USDC", "FDUSD", "BUSD", "TUSD", "BTC", "ETH", "BNB", "EUR", "TRY")
REQUIRED_FIELDS = ("tick_size", "step_size", "min_notional")
DECIMAL_FIELDS = (*REQUIRED_FIELDS, "min_qty", "max_qty", "market_protection_pct")
ASSET_FIELDS = ("base_asset", "quote_asset")
ALL_FIELDS = (*DECIMAL_FIELDS, *ASSET_FIELDS)

# The built-in markets' rules (Binance spot's filters for them), as strings: exact Decimals.
BUILTIN_MARKETS: dict[str, dict[str, str]] = {
    "BTCUSDT": {
        "base_asset": "BTC",
        "quote_asset": "USDT",
        "tick_size": "0.01",
        "step_size": "0.00001",
        "min_qty": "0.00001",
        "min_notional": "5",
    },
    "ETHUSDT": {
        "base_asset": "ETH",
        "quote_asset": "USDT",
        "tick_size": "0.01",
        "step_size": "0.0001",
        "min_qty": "0.0001",
        "min_notional": "5",
    },
    "BNBUSDT": {
        "base_asset": "BNB",
        "quote_asset": "USDT",
        "tick_size": "0.1",
        "step_size": "0.001",
        "min_qty": "0.001",
        "min_notional": "5",
    },
}

MarketFields = dict[str, Decimal | str]

_EXAMPLE = '{"SOLUSDT": {"tick_size": "0.01", "step_size": "0.001", "min_notional": "5"}}'


def canonical_symbol(symbol: str) -> str:
    """``BTC/USDT`` and ``btcusdt`` -> ``BTCUSDT``, as `SYMBOLS` is read."""
    return symbol.strip().replace("/", "").upper()


def split_symbol(symbol: str) -> tuple[str, str] | None:
    """(base, quote) from a known quote suffix, or None when the suffix is not one."""
    for quote in KNOWN_QUOTES:
        if symbol.endswith(quote) and len(symbol) > len(quote):
            return symbol[: -len(quote)], quote
    return None


def parse_market_rules(text: str) -> dict[str, MarketFields]:
    """`MARKET_RULES` -> {SYMBOL: {field: Decimal or asset}}; a ValueError names the symbol and the field."""
    if not text.strip():
        return {}
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"MARKET_RULES is not valid JSON ({exc.msg}); expected e.g. {_EXAMPLE}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"MARKET_RULES must be a JSON object of symbol -> rules, e.g. {_EXAMPLE}")
    out: dict[str, MarketFields] = {}
    for key, fields in raw.items():
        symbol = canonical_symbol(str(key))
        if not symbol.isalnum():
            raise ValueError(f"MARKET_RULES: {key!r} is not a symbol")
        if not isinstance(fields, dict):
            raise ValueError(f"MARKET_RULES.{symbol} must be an object of fields, e.g. {_EXAMPLE}")
        out[symbol] = _fields(symbol, fields)
    return out


def _fields(symbol: str, fields: Mapping[str, Any]) -> MarketFields:
    out: MarketFields = {}
    for name, value in fields.items():
        if name not in ALL_FIELDS:
            raise ValueError(
                f"MARKET_RULES.{symbol} has an unknown field {name!r}; fields: {', '.join(ALL_FIELDS)}"
            )
        if name in ASSET_FIELDS:
            if not isinstance(value, str) or not value.strip().isalnum():
                raise ValueError(f"MARKET_RULES.{symbol}.{name} must be an asset name like USDT")
            out[name] = value.strip().upper()
            continue
        if isinstance(value, (bool, float)) or not isinstance(value, (str, int)):
            raise ValueError(
                f'MARKET_RULES.{symbol}.{name} must be a number written as a string, e.g. "0.01"'
            )
        try:
            dec = Decimal(str(value).strip())
        except InvalidOperation:
            raise ValueError(f"MARKET_RULES.{symbol}.{name} {value!r} is not a number") from None
        if not dec.is_finite() or dec < 0:
            raise ValueError(f"MARKET_RULES.{symbol}.{name} must be a non-negative number")
        if name in ("tick_size", "step_size", "max_qty") and dec == 0:
            raise ValueError(f"MARKET_RULES.{symbol}.{name} must be positive")
        if name == "market_protection_pct" and not (0 < dec < 100):
            raise ValueError(f"MARKET_RULES.{symbol}.market_protection_pct must be between 0 and 100")
        out[name] = dec
    return out


def market_fields(symbol: str, configured: Mapping[str, MarketFields]) -> MarketFields:
    """The complete fields of `symbol`: built-in defaults under configured ones; ValueError naming what is
    missing (a symbol not built in needs tick_size, step_size and min_notional, and its assets when its
    quote suffix is not a known one)."""
    fields: MarketFields = {
        k: (v if k in ASSET_FIELDS else Decimal(v)) for k, v in BUILTIN_MARKETS.get(symbol, {}).items()
    }
    fields.update(configured.get(symbol, {}))
    missing = [name for name in REQUIRED_FIELDS if name not in fields]
    if missing:
        lack = f"lacks {', '.join(missing)}"
        given = (
            "MARKET_RULES has no entry for it"
            if symbol not in configured
            else f"its MARKET_RULES entry {lack}"
        )
        raise ValueError(
            f"SYMBOLS has {symbol}, which is not a built-in market, and {given}: give tick_size, step_size "
            f"and min_notional, e.g. MARKET_RULES='{_EXAMPLE.replace('SOLUSDT', symbol)}'"
        )
    if not all(name in fields for name in ASSET_FIELDS):
        split = split_symbol(symbol)
        if split is None:
            raise ValueError(
                f"MARKET_RULES.{symbol} lacks base_asset and quote_asset (its quote asset is not one of "
                f"{', '.join(KNOWN_QUOTES)}, so they cannot be inferred)"
            )
        fields.setdefault("base_asset", split[0])
        fields.setdefault("quote_asset", split[1])
    fields.setdefault("min_qty", fields["step_size"])
    return fields


def check_markets(symbols: Iterable[str], configured: Mapping[str, MarketFields]) -> None:
    """Every symbol has complete rules (raises the first ValueError of `market_fields`)."""
    for symbol in symbols:
        market_fields(symbol, configured)
