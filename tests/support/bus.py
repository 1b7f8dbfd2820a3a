"""A bus that counts the fan-out reads made through it (the real bus underneath, every other call passed on):
for tests that a reader's reads follow its own moments, not the number of events published."""

from __future__ import annotations

from collections.abc import Mapping

from shared.bus import Bus, BusMessage


class CountingReads:
    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self.reads = 0
        self.blocks: list[int | None] = []  # each read's block_ms

    def __getattr__(self, name: str) -> object:
        return getattr(self._bus, name)

    async def read(
        self, streams: Mapping[str, str], *, count: int = 100, block_ms: int | None = 1000
    ) -> list[BusMessage]:
        self.reads += 1
        self.blocks.append(block_ms)
        return await self._bus.read(streams, count=count, block_ms=block_ms)
