"""What a price source is, and the injected sleeper that keeps tests free of real waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from pricefeed.domain.ticks import Tick

Sleeper = Callable[[float], Awaitable[None]]


async def real_sleep(seconds: float) -> None:
    await asyncio.sleep(seconds)


class PriceSource(Protocol):
    name: str

    def ticks(self) -> AsyncIterator[Tick]:
        """Ticks until the source is exhausted (replay) or the consumer stops iterating."""
        ...
