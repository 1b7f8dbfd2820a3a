"""A blocking read of the in-process bus cancelled at the moment a publish wakes it is cancelled. It waited
with Python 3.11's `asyncio.wait_for`, which then returned the publish instead: the read answered its entries
and the reader carried on, so a loop that stops only by cancellation (the events hub's reader in `tradebridge
up`) never stopped, and shutdown waited on it for ever. (On Redis the publish's answer comes after the
reader's, which has returned by then: nothing to cancel.)"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime

import pytest

from events.hub import EventsHub
from shared.bus import Bus
from shared.bus.base import BusMessage
from shared.bus.memory import MemoryBus
from shared.clock import SystemClock
from shared.streams import MARKET_TICKER, public_event
from tests.support.eventually import eventually


async def _blocked(task: asyncio.Task[object]) -> None:
    done, _ = await asyncio.wait({task}, timeout=0.2)
    assert not done, "the read should be blocked waiting for data"


@pytest.mark.parametrize("group", [False, True], ids=["read", "group-read"])
async def test_a_read_cancelled_as_a_publish_wakes_it_is_cancelled(group: bool) -> None:
    bus = MemoryBus()
    after = await bus.publish("live", {"n": 0})
    if group:
        await bus.ensure_group("live", "g", start="$")
        reader = asyncio.create_task(bus.read_group("live", "g", "c", count=10, block_ms=10_000))
    else:
        reader = asyncio.create_task(bus.read({"live": after}, block_ms=10_000))
    await _blocked(reader)
    await bus.publish("live", {"n": 1})  # wakes the read ...
    assert not reader.done()
    reader.cancel()  # ... and the cancellation comes before it ran again
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(reader, timeout=5)
    await bus.close()


async def test_the_events_hub_stops_when_stopped_right_after_a_publish() -> None:
    """`up`'s shutdown stops the hub while the relay and workers still publish: the reader must end."""
    bus = MemoryBus()
    hub = EventsHub(bus, SystemClock())
    await hub.start()
    reader = hub._task
    assert reader is not None
    await _blocked(reader)
    await bus.publish(MARKET_TICKER, public_event("TICKER", "BTCUSDT", datetime.now(UTC), {"price": "1"}))
    stopping = asyncio.create_task(hub.stop())
    await eventually(reader.done, timeout=5, message="the hub's reader still runs after stop()")
    await asyncio.wait_for(stopping, timeout=5)
    await bus.close()


@pytest.mark.parametrize("group", [False, True], ids=["read", "group-read"])
async def test_a_read_by_a_task_whose_cancellation_was_swallowed_is_cancelled(bus: Bus, group: bool) -> None:
    """A dependency may swallow a cancellation and carry on (redis-py sends each command under Python 3.11's
    `wait_for`, which returns the send's result when the cancellation comes with it): the task is still being
    cancelled, so its next read must end it, not wait and answer. Loops stopped only by cancellation read
    again after such a read, and `tradebridge up`'s shutdown waited on them for ever (1 in 14 on Redis)."""
    await bus.publish("live", {"n": 0})
    if group:
        await bus.ensure_group("live", "g", start="$")

    async def swallowed_then_read() -> list[BusMessage]:
        me = asyncio.current_task()
        assert me is not None
        me.cancel()
        # swallowed, as `wait_for` does: the task's cancelling() stays 1
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0)
        if group:
            return await bus.read_group("live", "g", "c", count=10, block_ms=200)
        return await bus.read({"live": "$"}, block_ms=200)

    reader = asyncio.create_task(swallowed_then_read())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(reader, timeout=5)
