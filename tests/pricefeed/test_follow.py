"""`follow` ends when its task is cancelled, even if a read lost the cancellation: redis-py turns one that
arrives mid-call into a connection error, and a result that comes with it can win over it. Either way the
loop read again and the app's shutdown waited for ever on it (`tradebridge up` distributed, about 1 in 14)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from pricefeed.follow import follow
from shared.bus.base import BusMessage, BusUnavailable
from shared.bus.memory import MemoryBus
from tests.support.eventually import eventually


class LosesCancellations(MemoryBus):
    """An in-memory bus whose read, cancelled while it waits, carries on as a client library may (the first
    time: a test that fails can still end the loop)."""

    def __init__(self, lost_as: str) -> None:
        super().__init__()
        self.lost_as = lost_as
        self.lost = 0

    async def read(
        self, streams: Mapping[str, str], *, count: int = 100, block_ms: int | None = 1000
    ) -> list[BusMessage]:
        try:
            await asyncio.sleep((block_ms or 1000) / 1000)
        except asyncio.CancelledError:
            self.lost += 1
            if self.lost > 1:
                raise
            if self.lost_as == "error":
                raise BusUnavailable("connection closed by the cancellation") from None
            return [BusMessage("s", "1-0", {"n": 1})]
        return []


@pytest.mark.parametrize("lost_as", ["error", "result"])
async def test_a_cancelled_follow_ends_though_the_read_lost_the_cancellation(lost_as: str) -> None:
    bus = LosesCancellations(lost_as)
    batches: list[list[BusMessage]] = []

    async def on_batch(msgs: list[BusMessage]) -> None:
        batches.append(msgs)

    task = asyncio.create_task(follow(bus, ["s"], on_batch, block_ms=lambda: 50))
    await eventually(lambda: len(batches) >= 2)
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=5)
    if not done:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert done, "follow read on after its cancellation"
    assert task.cancelled()
    assert bus.lost == 1
