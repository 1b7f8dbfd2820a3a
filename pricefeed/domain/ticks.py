"""The one message every price source produces, and symbol spelling helpers (sources, positions)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from shared.symbols import KNOWN_QUOTES, normalize_symbol, split_symbol, to_ccxt_symbol

__all__ = ["KNOWN_QUOTES", "Tick", "normalize_symbol", "split_symbol", "to_ccxt_symbol"]


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
