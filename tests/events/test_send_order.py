"""A socket receives its private events in stream-id order, whatever its sends do.

Clients resume from the last id they received; an event overtaking an older one on the wire makes that older id
the resume point and the newer event arrives a second time (chaos seed 16: one client got one event twice).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from events.hub import EventsHub, HubConfig
from shared.bus import BusMessage, create_bus
from shared.bus.redis_streams import RedisStreamsBus
from shared.clock import SystemClock
from tests.events.helpers import Served, client, events_settings, publish_private, serve
from tests.support.eventually import eventually
from tradebridge.app import create_events_app

PRIVATE = ("ORDER_UPDATE", "TRADE", "POSITION_UPDATE", "BALANCE_UPDATE")


def private_ids(c: Any) -> list[str]:
    return [m["id"] for m in c.of_type(*PRIVATE)]


class Peer:
    """A socket's send: records frames; a send blocks while its gate is closed (a paused transport)."""

    def __init__(self) -> None:
        self.received: list[str] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def send(self, text: str) -> None:
        while not self.gate.is_set():
            await self.gate.wait()
        self.received.append(text)


def _hub() -> EventsHub:
    """The hub's routing and sending only: its bus is never read here."""
    clock = SystemClock()
    return EventsHub(create_bus(None, prefix="t:", maxlen=None, clock=clock), clock, HubConfig())


async def test_an_event_routed_while_the_sender_finishes_a_suspended_send_waits_its_turn() -> None:
    """The sender holds the next frame while an eager send that suspended completes; an event routed in that
    moment used to be sent at once, ahead of the held frame."""
    peer = Peer()
    conn = _hub().connect("alice", peer.send)
    peer.gate.clear()
    conn.deliver_private((1, 0), "1")  # sent eagerly; the transport is paused, so it suspends
    conn.deliver_private((2, 0), "2")  # queued behind it
    sender = asyncio.create_task(conn.run_sender())
    try:
        await eventually(lambda: len(conn.outbox) == 0, message="the sender took frame 2")
        peer.gate.set()
        while conn.pending is not None:  # the suspended send finishes; the sender wakes on the next turn
            await asyncio.sleep(0)
        conn.deliver_private((3, 0), "3")
        await eventually(lambda: len(peer.received) == 3, message="every frame sent")
        assert peer.received == ["1", "2", "3"]
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)


async def test_frames_keep_their_order_under_random_transport_pauses() -> None:
    rng = random.Random(20)
    peer = Peer()
    conn = _hub().connect("alice", peer.send)
    sender = asyncio.create_task(conn.run_sender())
    try:
        for n in range(2000):
            roll = rng.random()
            if roll < 0.2:
                peer.gate.clear()
            elif roll < 0.5:
                peer.gate.set()
            conn.deliver_private((n + 1, 0), str(n + 1))
            for _ in range(rng.randrange(3)):
                await asyncio.sleep(0)
        peer.gate.set()
        await eventually(lambda: len(peer.received) == 2000, message="every frame sent")
        assert conn.close_code is None
        assert peer.received == [str(n + 1) for n in range(2000)]
    finally:
        sender.cancel()
        await asyncio.gather(sender, return_exceptions=True)


class LaggingBus(RedisStreamsBus):
    """The real Redis bus whose live reads are handed to the hub only when `flowing` is set: the hub's reader
    running behind the streams, as on a busy process (a resume's replay reads the user stream directly)."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.flowing = asyncio.Event()
        self.flowing.set()

    async def read(
        self, streams: Mapping[str, str], *, count: int = 100, block_ms: int | None = 1000
    ) -> list[BusMessage]:
        batch = await super().read(streams, count=count, block_ms=block_ms)
        await self.flowing.wait()
        return batch


@pytest.fixture
async def lagging(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> AsyncIterator[tuple[Served, LaggingBus]]:
    settings = events_settings(tmp_path, redis_url, redis_prefix)
    bus = LaggingBus(redis_url, prefix=settings.redis_prefix, maxlen=None)
    try:
        async with serve(create_events_app(settings, bus=bus)) as served:
            yield served, bus
    finally:
        await bus.close()


@pytest.mark.parametrize("resume_from", ["before", "at"])
async def test_an_event_the_replay_sent_is_not_sent_again_by_a_lagging_reader(
    lagging: tuple[Served, LaggingBus], resume_from: str
) -> None:
    """Resuming from X, the client gets every id after X once: the replay may read an event from the user
    stream before the hub's reader routes it live (`before`), and a client resuming from the last id it got
    elsewhere may find this hub's reader still behind it (`at`)."""
    events, bus = lagging
    token = events.token("alice")
    async with client(events.url, token) as live:
        await live.ping()
        start = await publish_private(bus, "alice", n=0)
        await live.wait_for("ORDER_UPDATE")  # the reader is past `start`
    bus.flowing.clear()
    held = await publish_private(bus, "alice", n=1)  # in the streams; the reader holds it
    since = start if resume_from == "before" else held
    async with client(f"{events.url}?last_event_id={since}", token) as c:
        await c.wait_for("RESUMED")
        bus.flowing.set()  # the reader catches up and routes `held` live
        after = await publish_private(bus, "alice", n=2)
        await eventually(lambda: after in private_ids(c), message="the next event")
        await c.ping()
        expected = [held, after] if resume_from == "before" else [after]
        assert private_ids(c) == expected


async def test_a_remarks_frames_share_its_id_held_through_a_resume_and_sent_once() -> None:
    """A re-mark's POSITION_UPDATEs for one user come in one bus entry, so they share its id: all of them go out
    (held while a replay runs, in order), and the entry read again is not sent twice."""
    peer = Peer()
    conn = _hub().connect("alice", peer.send)
    conn.resuming = True
    conn.deliver_private((5, 0), "mark BTC", "mark ETH")
    conn.deliver_private((6, 0), "order")
    assert peer.received == []
    conn.finish_resume((4, 0))
    conn.deliver_private((5, 0), "mark BTC", "mark ETH")  # the reader routes it again: the client has it
    conn.deliver_private((7, 0), "mark BTC again", "mark ETH again")
    await eventually(lambda: len(peer.received) >= 5)
    assert peer.received == ["mark BTC", "mark ETH", "order", "mark BTC again", "mark ETH again"]
