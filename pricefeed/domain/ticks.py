"""The one message every price source produces, and symbol spelling helpers (sources, positions)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

# Longest first, so "FDUSD" wins over "USD"-like suffixes when splitting a concatenated symbol.
KNOWN_QUOTES: tuple[str, ...] = ("FDUSD", "USDT", "USDC", "TUSD", "BUSD", "BTC", "ETH", "BNB", "EUR", "TRY")


@dataclass(frozen=True, slots=True)
class Tick:
    """A last-traded price observed at `ts` (aware UTC) by `source`."""

    symbol: str
    price: Decimal
    ts: datetime
    source: str

    def __post_init__(self) -> None:
        if self.ts.tzinfo is None:
            raise ValueError("Tick.ts must be timezone-aware")
        if not self.price.is_finite() or self.price <= 0:
            raise ValueError(f"Tick.price must be a positive finite Decimal, got {self.price!r}")


def normalize_symbol(symbol: str) -> str:
    """Accept `BTC/USDT`, `btc-usdt` or `BTCUSDT`; the canonical spelling is `BTCUSDT`."""
    return symbol.replace("/", "").replace("-", "").replace("_", "").upper()


def split_symbol(symbol: str) -> tuple[str, str]:
    """`BTCUSDT` -> (`BTC`, `USDT`): positions need the base and quote to classify fee assets."""
    if "/" in symbol:
        base, _, quote = symbol.upper().partition("/")
        return base, quote
    canon = normalize_symbol(symbol)
    for quote in KNOWN_QUOTES:
        if canon.endswith(quote) and len(canon) > len(quote):
            return canon[: -len(quote)], quote
    raise ValueError(f"cannot split symbol {symbol!r} into base and quote")


def to_ccxt_symbol(symbol: str) -> str:
    """`BTCUSDT` -> `BTC/USDT`, the spelling ccxt's unified API wants."""
    base, quote = split_symbol(symbol)
    return f"{base}/{quote}"
