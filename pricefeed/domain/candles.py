"""OHLCV candles built from ticks (which move the price) and trades (which also carry volume).

Rules:
- A bucket is `[start, start + interval)` aligned to the Unix epoch in UTC.
- A tick moves open/high/low/close and adds no volume; a trade moves them too and adds its
  quantity to `volume` and one to `trade_count`.
- Data for a bucket older than the current one (late or out of order) is dropped: a closed
  candle is final once published. Data in the current bucket is applied whatever its order
  within the bucket, and `close` is the last applied price.
- Buckets with no data produce no candle (no synthetic flat candles for gaps).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from .ticks import normalize_symbol

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ZERO = Decimal(0)


class Interval(StrEnum):
    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    H1 = "1h"
    H4 = "4h"
    D1 = "1d"

    @property
    def length(self) -> timedelta:
        return _LENGTHS[self]

    def bucket_start(self, ts: datetime) -> datetime:
        """Start of the bucket holding `ts` (integer arithmetic on timedelta: no float rounding)."""
        if ts.tzinfo is None:
            raise ValueError("candle timestamps must be timezone-aware")
        length = _LENGTHS[self]
        return _EPOCH + ((ts - _EPOCH) // length) * length


_LENGTHS: dict[Interval, timedelta] = {
    Interval.M1: timedelta(minutes=1),
    Interval.M5: timedelta(minutes=5),
    Interval.M15: timedelta(minutes=15),
    Interval.H1: timedelta(hours=1),
    Interval.H4: timedelta(hours=4),
    Interval.D1: timedelta(days=1),
}

# Shortest first; each length divides the next, so every bucket nests in the next interval's (backfill relies on it).
ALL_INTERVALS: tuple[Interval, ...] = tuple(Interval)


@dataclass(frozen=True, slots=True)
class Candle:
    """One bucket's state; `closed` is True exactly once, when the bucket has rolled over."""

    symbol: str
    interval: Interval
    start: datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    trade_count: int
    closed: bool = False

    @property
    def end(self) -> datetime:
        return self.start + self.interval.length


class _Building:
    """Mutable accumulator for the current bucket; only immutable `Candle`s leave this module."""

    __slots__ = ("close", "high", "low", "open", "start", "trade_count", "volume")

    def __init__(self, start: datetime, price: Decimal) -> None:
        self.start = start
        self.open = self.high = self.low = self.close = price
        self.volume = _ZERO
        self.trade_count = 0

    def apply(self, price: Decimal, qty: Decimal | None) -> None:
        if price > self.high:
            self.high = price
        if price < self.low:
            self.low = price
        self.close = price
        if qty is not None:
            self.volume += qty
            self.trade_count += 1

    def freeze(self, symbol: str, interval: Interval, closed: bool) -> Candle:
        return Candle(
            symbol,
            interval,
            self.start,
            self.open,
            self.high,
            self.low,
            self.close,
            self.volume,
            self.trade_count,
            closed,
        )


class CandleAggregator:
    """Candles for every (symbol, interval); each input returns the candle updates it caused.

    For each interval an input yields, in order: the previous candle with `closed=True` if the
    input rolled the bucket over, then the current candle (`closed=False`).
    """

    def __init__(self, intervals: tuple[Interval, ...] = ALL_INTERVALS) -> None:
        self._intervals = intervals
        self._current: dict[tuple[str, Interval], _Building] = {}
        # Start of the oldest bucket still open to data, per key: anything earlier is final.
        self._closed_before: dict[tuple[str, Interval], datetime] = {}

    def on_tick(self, symbol: str, price: Decimal, ts: datetime) -> list[Candle]:
        return self._apply(symbol, price, None, ts)

    def on_trade(self, symbol: str, price: Decimal, qty: Decimal, ts: datetime) -> list[Candle]:
        if qty <= 0:
            raise ValueError("trade quantity must be positive")
        return self._apply(symbol, price, qty, ts)

    def resume(self, candle: Candle) -> None:
        """Carry on an open candle made before this aggregator existed (backfilled history, or the one a
        previous run left): ticks in its bucket extend it instead of starting the bucket over from one price."""
        if candle.closed or candle.interval not in self._intervals:
            return
        key = (normalize_symbol(candle.symbol), candle.interval)
        building = self._current.get(key)
        if building is not None and building.start >= candle.start:
            return  # live data already moved on
        building = self._current[key] = _Building(candle.start, candle.open)
        building.high, building.low, building.close = candle.high, candle.low, candle.close
        building.volume, building.trade_count = candle.volume, candle.trade_count

    def current(self, symbol: str, interval: Interval) -> Candle | None:
        building = self._current.get((normalize_symbol(symbol), interval))
        return None if building is None else building.freeze(normalize_symbol(symbol), interval, False)

    def close_due(self, now: datetime) -> list[Candle]:
        """Close every candle whose bucket ended by `now`, so quiet markets still publish closes."""
        closed: list[Candle] = []
        for (symbol, interval), building in list(self._current.items()):
            if building.start + interval.length <= now:
                closed.append(building.freeze(symbol, interval, True))
                del self._current[(symbol, interval)]
                self._closed_before[(symbol, interval)] = building.start + interval.length
        return closed

    def _apply(self, symbol: str, price: Decimal, qty: Decimal | None, ts: datetime) -> list[Candle]:
        if not price.is_finite() or price <= 0:
            raise ValueError(f"price must be positive and finite, got {price!r}")
        symbol = normalize_symbol(symbol)
        out: list[Candle] = []
        for interval in self._intervals:
            key = (symbol, interval)
            start = interval.bucket_start(ts)
            if start < self._closed_before.get(key, _EPOCH):
                continue  # a bucket we already closed: final, drop the late data
            building = self._current.get(key)
            if building is None:
                building = self._current[key] = _Building(start, price)
            elif start > building.start:
                out.append(building.freeze(symbol, interval, True))
                self._closed_before[key] = start
                building = self._current[key] = _Building(start, price)
            elif start < building.start:
                continue  # late data for the bucket that just closed
            building.apply(price, qty)
            out.append(building.freeze(symbol, interval, False))
        return out


def aggregate(parts: Sequence[Candle], interval: Interval, *, complete_by: datetime) -> list[Candle]:
    """Candles of `interval` rolled up from shorter (or equal) ones, oldest first: open of the first, close of the
    last, extremes and sums over the bucket. A bucket ending after `complete_by` is left open (`closed=False`)."""
    out: list[Candle] = []
    building: _Building | None = None
    symbol = ""
    for part in sorted(parts, key=lambda c: c.start):
        if part.interval.length > interval.length:
            raise ValueError(f"cannot split {part.interval} candles into {interval}")
        start = interval.bucket_start(part.start)
        if building is None or start != building.start:
            if building is not None:
                out.append(building.freeze(symbol, interval, building.start + interval.length <= complete_by))
            building = _Building(start, part.open)
            symbol = part.symbol
        building.high = max(building.high, part.high)
        building.low = min(building.low, part.low)
        building.close = part.close
        building.volume += part.volume
        building.trade_count += part.trade_count
    if building is not None:
        out.append(building.freeze(symbol, interval, building.start + interval.length <= complete_by))
    return out


class CandleStore(Protocol):
    """Persistence for candles; the SQL implementation upserts on (symbol, interval, start)."""

    async def upsert(self, candle: Candle) -> None: ...

    async def upsert_many(self, candles: Sequence[Candle]) -> None:
        """`upsert` for each, in one write where the store can."""
        ...

    async def insert_missing(self, candles: Sequence[Candle]) -> None:
        """Store the candles whose (symbol, interval, start) is not stored yet: backfill never overwrites what
        the feed recorded."""
        ...

    async def recent(self, symbol: str, interval: Interval, limit: int) -> list[Candle]:
        """Up to `limit` most recent candles, oldest first (the order charts draw them)."""
        ...


class InMemoryCandleStore:
    """A faithful in-memory `CandleStore`: same upsert key and ordering as the SQL table."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, Interval], dict[datetime, Candle]] = {}

    async def upsert(self, candle: Candle) -> None:
        self._rows.setdefault((candle.symbol, candle.interval), {})[candle.start] = candle

    async def upsert_many(self, candles: Sequence[Candle]) -> None:
        for candle in candles:
            await self.upsert(candle)

    async def insert_missing(self, candles: Sequence[Candle]) -> None:
        for candle in candles:
            self._rows.setdefault((candle.symbol, candle.interval), {}).setdefault(candle.start, candle)

    async def recent(self, symbol: str, interval: Interval, limit: int) -> list[Candle]:
        if limit <= 0:
            return []
        rows = self._rows.get((normalize_symbol(symbol), interval), {})
        return [rows[start] for start in sorted(rows)[-limit:]]
