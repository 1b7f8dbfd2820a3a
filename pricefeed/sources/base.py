"""What a price source is, and the injected sleeper that keeps tests free of real waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Protocol, runtime_checkable

from pricefeed.domain.candles import Candle
from pricefeed.domain.ticks import Tick

Sleeper = Callable[[float], Awaitable[None]]


async def real_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class PriceSource(Protocol):
    name: str

    def ticks(self) -> AsyncIterator[Tick]:
        """Ticks until the source is exhausted (replay) or the consumer stops iterating."""
        ...


@runtime_checkable
class HistorySource(Protocol):
    """A source that knows its market's past (the synthetic walk, an exchange's klines); replays do not."""

    async def candle_history(self, end: datetime, count: int) -> list[Candle]:
        """Candles of every interval, at least `count` each where the source has them, up to `end` (the start
        of the current minute); the buckets still running at `end` with `closed=False`."""
        ...
