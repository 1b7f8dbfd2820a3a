"""Latest price per symbol, with the rule that an old price is never silently used to fill an order."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from shared.clock import Clock
from shared.errors import Unavailable

from .ticks import Tick, normalize_symbol

DEFAULT_STALE_AFTER = timedelta(seconds=10)


class StalePrice(Unavailable):
    """Raised when a fill would need a price we have not refreshed recently (or never had).

    A 503: it is our feed that is behind, not the client's input that is wrong.
    """

    slug = "stale-price"
    title = "Market price unavailable"

    def __init__(self, symbol: str, age: timedelta | None) -> None:
        what = "no price yet" if age is None else f"last price is {age.total_seconds():.1f}s old"
        super().__init__(f"{symbol}: {what}")
        self.symbol = symbol
        self.age = age


@dataclass(frozen=True, slots=True)
class Mark:
    """A price as the book sees it now: `stale` is computed at read time, never stored."""

    symbol: str
    price: Decimal
    ts: datetime
    source: str
    age: timedelta
    stale: bool


class PriceBook:
    """Latest price per symbol; a price older than `stale_after` (by the injected clock) is stale.

    Age is measured from the tick's own timestamp, so a feed that keeps reporting an old
    exchange timestamp (a stuck upstream) is detected as stale too. Out-of-order ticks (older
    than what we hold) are ignored so a late poll cannot move the price backwards in time.
    """

    def __init__(self, clock: Clock, stale_after: timedelta = DEFAULT_STALE_AFTER) -> None:
        if stale_after <= timedelta(0):
            raise ValueError("stale_after must be positive")
        self._clock = clock
        self.stale_after = stale_after
        self._latest: dict[str, Tick] = {}

    def update(self, tick: Tick) -> bool:
        """Record `tick`; False if it was older than the price already held (and so dropped)."""
        symbol = normalize_symbol(tick.symbol)
        held = self._latest.get(symbol)
        if held is not None and tick.ts < held.ts:
            return False
        self._latest[symbol] = tick
        return True

    def mark(self, symbol: str) -> Mark | None:
        """The latest price flagged fresh or stale; None if the symbol never had a price."""
        tick = self._latest.get(normalize_symbol(symbol))
        if tick is None:
            return None
        age = max(self._clock.now() - tick.ts, timedelta(0))
        return Mark(tick.symbol, tick.price, tick.ts, tick.source, age, age > self.stale_after)

    def is_stale(self, symbol: str) -> bool:
        mark = self.mark(symbol)
        return mark is None or mark.stale

    def fresh_price(self, symbol: str) -> Decimal | None:
        """The price if fresh, else None: the safe accessor for anything that fills orders."""
        mark = self.mark(symbol)
        if mark is None or mark.stale:
            return None
        return mark.price

    def require_fresh(self, symbol: str) -> Decimal:
        """Like `fresh_price` but raising `StalePrice`, for call sites that must not proceed."""
        mark = self.mark(symbol)
        if mark is None:
            raise StalePrice(normalize_symbol(symbol), None)
        if mark.stale:
            raise StalePrice(mark.symbol, mark.age)
        return mark.price

    def last_price(self, symbol: str) -> Decimal | None:
        """Latest price regardless of age: for display and marking, never for fills."""
        tick = self._latest.get(normalize_symbol(symbol))
        return None if tick is None else tick.price

    def symbols(self) -> list[str]:
        return sorted(self._latest)
