"""Redis-only behaviour: prefixes, dropped connections, vanished groups, unreachable Redis, chunked blocking."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from shared.bus import BusUnavailable, parse_id
from shared.bus.redis_streams import RedisStreamsBus
from tests.support.eventually import eventually

MakeRedisBus = Callable[..., RedisStreamsBus]


@pytest.fixture
async def raw(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def make_bus(redis_url: str, redis_prefix: str) -> AsyncIterator[MakeRedisBus]:
    created: list[RedisStreamsBus] = []

    def make(**options: Any) -> RedisStreamsBus:
        options.setdefault("client_name", "tbbus-" + uuid.uuid4().hex[:12])
        bus = RedisStreamsBus(redis_url, prefix=redis_prefix, **options)
        created.append(bus)
        return bus

    yield make
    for bus in created:
        await bus.close()


async def kill_clients(raw: aioredis.Redis, name: str) -> int:
    """CLIENT KILL every connection the adapter opened (found by its client name)."""
    killed = 0
    for client in await raw.client_list():
        if client.get("name") == name:
            await raw.client_kill_filter(_id=client["id"])
            killed += 1
    return killed


async def test_every_key_is_prefixed(make_bus: MakeRedisBus, raw: aioredis.Redis, redis_prefix: str) -> None:
    bus = make_bus()
    unique = "stream-" + uuid.uuid4().hex
    await bus.publish(unique, {"a": 1}, mirror_to=unique + ":mirror")
    await bus.ensure_group(unique + ":g", "g")
    keys = sorted([k.decode() async for k in raw.scan_iter(match=f"*{unique}*")])
    assert keys == [redis_prefix + unique, redis_prefix + unique + ":g", redis_prefix + unique + ":mirror"]
    msgs = await bus.read({unique: "0"}, block_ms=None)
    assert [m.stream for m in msgs] == [unique]  # callers never see the prefix


async def test_entries_hold_one_json_field(
    make_bus: MakeRedisBus, raw: aioredis.Redis, redis_prefix: str
) -> None:
    bus = make_bus()
    entry = await bus.publish("s", {"price": "1.5"})
    assert await raw.xrange(redis_prefix + "s") == [(entry.encode(), {b"d": b'{"price":"1.5"}'})]


@pytest.mark.parametrize("retries", [1, 0])
async def test_recovers_after_its_connections_are_killed(
    make_bus: MakeRedisBus, raw: aioredis.Redis, retries: int
) -> None:
    bus = make_bus(retries=retries)
    await bus.ensure_group("s", "g")
    first = await bus.publish("s", {"n": 1})
    assert await kill_clients(raw, bus.client_name or "") >= 1

    async def publish_works() -> str:
        try:
            return await bus.publish("s", {"n": 2})
        except BusUnavailable:  # allowed once without retries; never permanently
            assert retries == 0
            raise AssertionError("still unavailable") from None

    second = await eventually(publish_works, timeout=5)
    msgs = await bus.read_group("s", "g", "c", block_ms=None)
    assert [m.id for m in msgs] == [first, second]
    await bus.ping()


async def test_blocked_reader_survives_a_killed_connection(
    make_bus: MakeRedisBus, raw: aioredis.Redis
) -> None:
    bus = make_bus(retries=0)
    await bus.ensure_group("s", "g")
    reader = asyncio.create_task(bus.read_group("s", "g", "c", block_ms=10_000))
    done, _ = await asyncio.wait({reader}, timeout=0.2)
    assert not done
    assert await kill_clients(raw, bus.client_name or "") >= 1
    with pytest.raises(BusUnavailable):  # the worker loop sees one clean, retryable error
        await asyncio.wait_for(reader, timeout=5)

    entry = await bus.publish("s", {"after": "kill"})
    msgs = await bus.read_group("s", "g", "c", block_ms=1000)
    assert [m.id for m in msgs] == [entry]


async def test_vanished_group_is_recreated_transparently(
    make_bus: MakeRedisBus, raw: aioredis.Redis, redis_prefix: str
) -> None:
    bus = make_bus()
    await bus.ensure_group("s", "g")
    old = await bus.publish("s", {"n": 0})
    assert [m.id for m in await bus.read_group("s", "g", "c", block_ms=None)] == [old]
    await bus.ack("s", "g", [old])

    assert await raw.xgroup_destroy(redis_prefix + "s", "g") == 1  # as if Redis restarted without it
    new = await bus.publish("s", {"n": 1})
    # Recreated from "0": the retained history is redelivered (handlers are idempotent), nothing is lost.
    assert [m.id for m in await bus.read_group("s", "g", "c", block_ms=None)] == [old, new]

    await raw.delete(redis_prefix + "s")  # full data loss: stream and group gone
    assert await bus.pending_own("s", "g", "c") == []
    assert await bus.claim_stale("s", "g", "c", min_idle_ms=0) == []
    lost_again = await raw.delete(redis_prefix + "s")
    assert lost_again == 1  # the reads above recreated it (MKSTREAM)
    after = await bus.publish("s", {"n": 2})
    assert [m.id for m in await bus.read_group("s", "g", "c", block_ms=None)] == [after]


async def test_group_vanishing_under_a_blocked_reader(
    make_bus: MakeRedisBus, raw: aioredis.Redis, redis_prefix: str
) -> None:
    bus = make_bus()
    await bus.ensure_group("s", "g")
    reader = asyncio.create_task(bus.read_group("s", "g", "c", block_ms=5_000))
    done, _ = await asyncio.wait({reader}, timeout=0.2)
    assert not done
    await raw.delete(redis_prefix + "s")

    published: list[str] = []

    async def publish_until_read() -> bool:
        published.append(await bus.publish("s", {"n": len(published)}))
        return reader.done()

    await eventually(publish_until_read, timeout=5, interval=0.05)
    msgs = reader.result()
    assert msgs and [m.id for m in msgs] == published[: len(msgs)]


async def test_unreachable_redis_raises_bus_unavailable_quickly() -> None:
    bus = RedisStreamsBus("redis://127.0.0.1:1/0", prefix="x:", connect_timeout=0.5, retries=1)
    started = time.monotonic()
    calls = [
        bus.ping(),
        bus.publish("s", {"a": 1}),
        bus.publish("s", {"a": 1}, mirror_to="m"),
        bus.publish_many([("s", {"a": 1})]),
        bus.ensure_group("s", "g"),
        bus.read_group("s", "g", "c", block_ms=1000),
        bus.claim_stale("s", "g", "c", min_idle_ms=1),
        bus.pending_own("s", "g", "c"),
        bus.read({"s": "$"}, block_ms=1000),
        bus.range_after("s", "0"),
        bus.first_id("s"),
        bus.ack("s", "g", ["1-0"]),
    ]
    for call in calls:
        with pytest.raises(BusUnavailable):
            await call
    assert time.monotonic() - started < 3.0
    await bus.close()


async def test_blocking_longer_than_the_socket_timeout_is_chunked(make_bus: MakeRedisBus) -> None:
    bus = make_bus(socket_timeout=0.4)  # BLOCK is issued in chunks of ~320 ms
    await bus.ensure_group("s", "g")
    group_reader = asyncio.create_task(bus.read_group("s", "g", "c", block_ms=0))
    dollar_reader = asyncio.create_task(bus.read({"s": "$"}, block_ms=5_000))
    done, _ = await asyncio.wait({group_reader, dollar_reader}, timeout=0.9)
    assert not done, "both must still be waiting after several chunks"

    entry = await bus.publish("s", {"late": True})
    assert [m.id for m in await asyncio.wait_for(group_reader, timeout=2)] == [entry]
    # "$" was pinned when the read began, so the entry published between two chunks is not skipped.
    assert [m.id for m in await asyncio.wait_for(dollar_reader, timeout=2)] == [entry]


async def test_mirror_ahead_of_the_source_gets_a_fresh_common_id(
    make_bus: MakeRedisBus, raw: aioredis.Redis, redis_prefix: str
) -> None:
    bus = make_bus()
    await bus.publish("private", {"n": 0})
    future = f"{int(time.time() * 1000) + 60_000}-5"
    await raw.xadd(redis_prefix + "events:u", {b"d": b"{}"}, id=future)

    entry = await bus.publish("private", {"n": 1}, mirror_to="events:u")
    assert parse_id(entry) > parse_id(future)
    assert [m.id for m in await bus.range_after("events:u", "0")] == [future, entry]
    private = await bus.range_after("private", "0")
    assert [m.data["n"] for m in private] == [0, 1]  # no stray copy under the abandoned id
    assert private[-1].id == entry
    nxt = await bus.publish("private", {"n": 2}, mirror_to="events:u")
    assert parse_id(nxt) > parse_id(entry)


async def test_trimmed_pending_entries_are_dropped_not_redelivered(
    make_bus: MakeRedisBus, raw: aioredis.Redis, redis_prefix: str
) -> None:
    bus = make_bus()
    await bus.ensure_group("s", "g")
    ids = await bus.publish_many([("s", {"n": n}) for n in range(3)])
    await bus.read_group("s", "g", "dead", block_ms=None)
    # Trimming with "~" only drops whole nodes; an exact trim makes the point without 100s of entries.
    await raw.xtrim(redis_prefix + "s", maxlen=1, approximate=False)

    assert [m.id for m in await bus.pending_own("s", "g", "dead")] == [ids[2]]
    assert [m.id for m in await bus.claim_stale("s", "g", "alive", min_idle_ms=0)] == [ids[2]]
