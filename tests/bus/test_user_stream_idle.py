"""Users' streams are bounded by activity: a mirror (a user's private events) with no entry for `mirror_idle_s`
is deleted, on both adapters (Redis: PEXPIRE with every mirrored publish, single or batched).

Before, a user stream lived for ever at up to its cap (10,000 entries) for every user who ever received an event:
about 0.75 GB at 200 users' full streams (docs/reliability.md, the soak run)."""

from __future__ import annotations

import asyncio

from shared.bus import Bus
from shared.streams import PRIVATE_EVENTS, user_stream
from tests.bus.conftest import MakeBus
from tests.support.eventually import eventually

IDLE_S = 0.6


async def _publish(bus: Bus, user: str, n: int, *, batched: bool) -> str:
    data = {"user_id": user, "n": n}
    if batched:
        [event_id] = await bus.publish_many([(PRIVATE_EVENTS, data)], mirrors=[user_stream(user)])
        return event_id
    return await bus.publish(PRIVATE_EVENTS, data, mirror_to=user_stream(user))


async def test_an_idle_user_stream_is_deleted_an_active_one_kept(make_bus: MakeBus) -> None:
    bus = make_bus(mirror_idle_s=IDLE_S)
    idle = await _publish(bus, "idle", 1, batched=False)
    await _publish(bus, "active", 1, batched=True)
    assert await bus.first_id(user_stream("idle")) == idle
    for n in range(2, 6):  # written more often than the idle time: stays
        await asyncio.sleep(IDLE_S / 3)
        await _publish(bus, "active", n, batched=n % 2 == 0)
    assert await bus.first_id(user_stream("idle")) is None, "the idle user's stream outlived its idle time"
    active = await bus.range_after(user_stream("active"), "0-0")
    assert [m.data["n"] for m in active] == [1, 2, 3, 4, 5]
    assert len(await bus.range_after(PRIVATE_EVENTS, "0-0")) == 6  # the shared stream is capped, not expired
    await eventually(
        lambda: _gone(bus, "active"), timeout=IDLE_S * 10, message="the active stream, once idle, deleted too"
    )
    again = await _publish(bus, "idle", 6, batched=False)  # a user who comes back starts a new stream
    assert [m.id for m in await bus.range_after(user_stream("idle"), "0-0")] == [again]


async def _gone(bus: Bus, user: str) -> bool:
    return await bus.first_id(user_stream(user)) is None


async def test_without_an_idle_time_user_streams_are_kept(make_bus: MakeBus) -> None:
    bus = make_bus()
    first = await _publish(bus, "u", 1, batched=False)
    await asyncio.sleep(IDLE_S * 1.5)
    await _publish(bus, "v", 1, batched=True)
    assert await bus.first_id(user_stream("u")) == first
