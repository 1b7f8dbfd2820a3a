"""Gapless, duplicate-free resume: same instance, another instance, past retention, and racing live traffic."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from events.hub import HubConfig
from shared.bus import create_bus, parse_id
from shared.clock import SystemClock
from shared.settings import Settings
from shared.streams import RETENTION, user_stream
from tests.events.helpers import Served, client, events_settings, publish_private, serve
from tradebridge.app import create_events_app

PRIVATE = ("ORDER_UPDATE", "TRADE", "POSITION_UPDATE", "BALANCE_UPDATE")


def private_ids(c: object) -> list[str]:
    return [m["id"] for m in c.of_type(*PRIVATE)]  # type: ignore[attr-defined]


async def test_resume_replays_every_missed_event_once_in_order_then_live(events: Served) -> None:
    token = events.token("alice")
    async with client(events.url, token) as first:
        await first.ping()
        seen = [await publish_private(events.bus, "alice", n=i) for i in range(3)]
        await first.wait_for("ORDER_UPDATE", 3)
        assert private_ids(first) == seen
    missed = [await publish_private(events.bus, "alice", "TRADE", n=i) for i in range(3, 8)]
    await publish_private(events.bus, "bob", n=99)  # someone else's: never replayed to alice

    async with client(events.url, token) as again:
        await again.send(op="resume", last_event_id=seen[-1])
        resumed = await again.wait_for("RESUMED")
        assert resumed[0]["data"] == {"replayed": 5, "last_event_id": missed[-1]}
        live = [await publish_private(events.bus, "alice", n=i) for i in range(8, 10)]
        await again.wait_for("ORDER_UPDATE", 2)
        assert private_ids(again) == missed + live
        kinds = [m["type"] for m in again.messages if m["type"] != "PONG"]
        assert kinds == ["TRADE"] * 5 + ["RESUMED"] + ["ORDER_UPDATE"] * 2


async def test_resume_on_another_instance(settings: Settings, tmp_path: Path) -> None:
    async with serve(create_events_app(settings)) as a, serve(create_events_app(settings)) as b:
        token = a.token("alice")
        async with client(a.url, token) as on_a:
            await on_a.ping()
            first = await publish_private(a.bus, "alice", n=0)
            await on_a.wait_for("ORDER_UPDATE")
        missed = [await publish_private(a.bus, "alice", n=i) for i in range(1, 4)]
        # Resumed as part of connecting: with the op after connecting, B's reader (behind the stream on a busy
        # machine) may send a missed event live first, and the protocol then orders it before the replay.
        async with client(f"{b.url}?last_event_id={first}", token) as on_b:
            await on_b.wait_for("RESUMED")
            live = await publish_private(b.bus, "alice", n=4)
            await on_b.wait_for("ORDER_UPDATE", 4)
            assert private_ids(on_b) == [*missed, live]


async def test_resume_past_retention_requires_resync(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    settings = events_settings(tmp_path, redis_url, redis_prefix)
    tiny = create_bus(
        redis_url,
        prefix=redis_prefix,
        maxlen=100_000,
        clock=SystemClock(),
        retention={**RETENTION, "events.user.*": 5},
    )
    try:
        async with serve(create_events_app(settings, bus=tiny)) as events:
            token = events.token("alice")
            first = await publish_private(events.bus, "alice", n=0)
            # Redis trims "MAXLEN ~" by whole nodes (100 entries), so publish enough to drop the first.
            for i in range(1, 260):
                await publish_private(events.bus, "alice", n=i)
            oldest = await events.bus.first_id(user_stream("alice"))
            assert oldest is not None and parse_id(oldest) > parse_id(first)

            async with client(events.url, token) as c:
                await c.send(op="resume", last_event_id=first)
                resync = await c.wait_for("RESYNC_REQUIRED")
                assert resync[0]["data"] == {"last_event_id": first, "oldest_retained_id": oldest}
                assert private_ids(c) == []  # nothing partial: the client refetches over REST
                live = await publish_private(events.bus, "alice", n=999)
                await c.wait_for("ORDER_UPDATE")
                assert private_ids(c) == [live]  # and stays connected, live

                # A point that is still retained resumes normally; what this socket already got live is not
                # sent again.
                await c.send(op="resume", last_event_id=oldest)
                done = await c.wait_for("RESUMED")
                retained = [m.id for m in await events.bus.range_after(user_stream("alice"), oldest)]
                assert retained[-1] == live
                assert done[0]["data"] == {"replayed": len(retained) - 1, "last_event_id": retained[-2]}
                assert private_ids(c) == [live, *retained[:-1]]
    finally:
        await tiny.close()


@pytest.mark.parametrize("how", ["query", "op"])
async def test_resume_racing_live_traffic_has_no_gap_and_no_duplicate(
    tmp_path: Path, redis_url: str, redis_prefix: str, how: str
) -> None:
    """Publish continuously while a small-paged replay runs: the client gets each id exactly once.

    With `?last_event_id=` the resume is atomic with the connection, so the order is the publication order.
    With the `resume` op, live events that reached the socket before the op come first; the replay then fills
    exactly the window before them.
    """
    settings = events_settings(tmp_path, redis_url, redis_prefix)
    config = HubConfig(replay_page=3, symbols=frozenset(settings.symbols))
    async with serve(create_events_app(settings, hub_config=config)) as events:
        token = events.token("alice")
        start = await publish_private(events.bus, "alice", n=-1)
        backlog = [await publish_private(events.bus, "alice", n=i) for i in range(40)]
        published: list[str] = []
        stop = asyncio.Event()

        async def publisher() -> None:
            n = 100
            while not stop.is_set():
                published.append(await publish_private(events.bus, "alice", n=n))
                n += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(publisher())
        try:
            url = f"{events.url}?last_event_id={start}" if how == "query" else events.url
            async with client(url, token) as c:
                if how == "op":
                    await c.wait_for("ORDER_UPDATE")  # live traffic is already flowing to this socket
                    await c.send(op="resume", last_event_id=start)
                await c.wait_for("RESUMED")
                await c.wait_for("ORDER_UPDATE", len(backlog) + 20)
                stop.set()
                await task
                expected = backlog + published
                await c.wait_for("ORDER_UPDATE", len(expected))
                await c.ping()
                got = private_ids(c)
                if how == "query":
                    assert got == expected
                else:
                    assert sorted(got, key=parse_id) == expected  # every id exactly once
                    first_live = got[0]
                    replay_window = [i for i in expected if parse_id(i) < parse_id(first_live)]
                    k = got.index(replay_window[0])
                    assert got[k : k + len(replay_window)] == replay_window  # the replay itself is in order
        finally:
            stop.set()
            await task
