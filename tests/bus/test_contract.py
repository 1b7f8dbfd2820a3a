"""One contract, two adapters: every test here runs against MemoryBus and against RedisStreamsBus on real Redis."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.bus import Bus, BusMessage, BusUnavailable, InvalidStreamId, create_bus, parse_id
from shared.bus.memory import MemoryBus
from shared.bus.redis_streams import RedisStreamsBus
from shared.clock import SystemClock
from shared.errors import Unavailable
from tests.bus.conftest import MakeBus
from tests.support.eventually import eventually


def ids_of(msgs: list[BusMessage]) -> list[str]:
    return [m.id for m in msgs]


def assert_strictly_increasing(ids: list[str]) -> None:
    parsed = [parse_id(i) for i in ids]
    assert parsed == sorted(parsed) and len(set(parsed)) == len(parsed), ids


async def drain_group(bus: Bus, stream: str, group: str, consumer: str, count: int = 100) -> list[BusMessage]:
    out: list[BusMessage] = []
    while batch := await bus.read_group(stream, group, consumer, count=count, block_ms=None):
        out.extend(batch)
    return out


# -- publish and read ------------------------------------------------------------------------------------------


async def test_ids_strictly_increase_and_reads_keep_publish_order(bus: Bus) -> None:
    ids = [await bus.publish("orders", {"n": n}) for n in range(20)]
    ids += await bus.publish_many([("orders", {"n": n}) for n in range(20, 40)])
    ids.append(await bus.publish("orders", {"n": 40}))

    assert all("-" in i for i in ids)
    assert_strictly_increasing(ids)
    msgs = await bus.range_after("orders", "0")
    assert ids_of(msgs) == ids
    assert [m.data["n"] for m in msgs] == list(range(41))
    assert {m.stream for m in msgs} == {"orders"}
    assert await bus.first_id("orders") == ids[0]
    assert await bus.last_id("orders") == ids[-1]


async def test_empty_or_missing_stream(bus: Bus) -> None:
    assert await bus.first_id("nothing") is None
    assert await bus.last_id("nothing") is None
    assert await bus.range_after("nothing", "0") == []
    assert await bus.read({"nothing": "0"}, block_ms=None) == []


async def test_publish_many_keeps_order_across_streams(bus: Bus) -> None:
    items = [("a" if n % 3 else "b", {"n": n}) for n in range(30)]
    ids = await bus.publish_many(items)
    assert len(ids) == 30
    for name in ("a", "b"):
        expected = [(i, d["n"]) for i, (s, d) in zip(ids, items, strict=True) if s == name]
        got = [(m.id, m.data["n"]) for m in await bus.range_after(name, "0")]
        assert got == expected
        assert_strictly_increasing([i for i, _ in got])
    assert await bus.publish_many([]) == []


NESTED: dict[str, Any] = {
    "order_id": str(uuid.UUID(int=7)),
    "price": Decimal("64999.12345678"),
    "qty": Decimal("0.00000001"),
    "fills": [{"price": Decimal("1.10"), "qty": "2", "maker": True}, {"price": "3", "qty": None}],
    "meta": {"deep": {"deeper": [1, [2, [3, {"x": "ü€😀"}]]]}, "empty": {}, "list": []},
    "big": 2**62,
    "neg": -5,
    "flag": False,
    "ts": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
}


async def test_json_round_trip_of_nested_data(bus: Bus) -> None:
    await bus.publish("events", NESTED)
    (msg,) = await bus.range_after("events", "0")
    assert msg.data == {
        **NESTED,
        "order_id": "00000000-0000-0000-0000-000000000007",
        "price": "64999.12345678",  # Decimals travel as strings, never floats
        "qty": "0.00000001",  # in plain digits, never "1E-8" (shared.amounts.plain)
        "fills": [{"price": "1.1", "qty": "2", "maker": True}, {"price": "3", "qty": None}],
        "ts": "2026-01-02T03:04:05.678000+00:00",
    }
    assert Decimal(msg.data["qty"]) == Decimal("0.00000001")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.dictionaries(st.text(max_size=8), json_values, max_size=5))
async def test_any_json_object_round_trips(bus: Bus, payload: dict[str, Any]) -> None:
    before = await bus.last_id("rt") or "0"
    entry_id = await bus.publish("rt", payload)
    (msg,) = await bus.range_after("rt", before)
    assert msg.id == entry_id
    assert msg.data == payload


async def test_non_json_payloads_are_refused_before_publishing(bus: Bus) -> None:
    with pytest.raises(TypeError):
        await bus.publish("s", {"x": object()})
    with pytest.raises(TypeError):
        await bus.publish("s", {"x": Decimal("NaN")})
    with pytest.raises(TypeError):
        await bus.publish_many([("s", {"ok": 1}), ("s", {"x": object()})])
    assert await bus.last_id("s") is None  # nothing half-published


async def test_invalid_ids_are_rejected_the_same_way(bus: Bus) -> None:
    for bad in ("abc", "1-2-3", "-1", "", "12-x"):
        with pytest.raises(InvalidStreamId):
            await bus.range_after("s", bad)
        with pytest.raises(InvalidStreamId):
            await bus.read({"s": bad}, block_ms=None)
        with pytest.raises(InvalidStreamId):
            await bus.ack("s", "g", [bad])
    with pytest.raises(ValueError):
        await bus.publish("s", {}, mirror_to="s")


# -- consumer groups -------------------------------------------------------------------------------------------


async def test_group_delivers_each_entry_to_exactly_one_consumer_and_every_group_gets_all(bus: Bus) -> None:
    await bus.ensure_group("cmds", "workers")
    await bus.ensure_group("cmds", "audit")
    ids = await bus.publish_many([("cmds", {"n": n}) for n in range(30)])

    seen: dict[str, list[str]] = {"w1": [], "w2": []}
    while True:
        b1 = await bus.read_group("cmds", "workers", "w1", count=7, block_ms=None)
        b2 = await bus.read_group("cmds", "workers", "w2", count=4, block_ms=None)
        seen["w1"] += ids_of(b1)
        seen["w2"] += ids_of(b2)
        if not b1 and not b2:
            break
    assert seen["w1"] and seen["w2"]
    assert not set(seen["w1"]) & set(seen["w2"])
    assert sorted(seen["w1"] + seen["w2"], key=parse_id) == ids
    assert_strictly_increasing(seen["w1"])
    assert all(m.deliveries == 1 for m in await bus.read_group("cmds", "audit", "a", count=1, block_ms=None))

    audit = await drain_group(bus, "cmds", "audit", "a")
    assert ids_of(audit) == ids[1:]


async def test_ensure_group_is_idempotent_and_start_dollar_means_only_new(bus: Bus) -> None:
    old = await bus.publish("s", {"n": 0})
    await bus.ensure_group("s", "from_start", start="0")
    await bus.ensure_group("s", "only_new", start="$")
    assert ids_of(await drain_group(bus, "s", "from_start", "c")) == [old]
    await bus.ensure_group("s", "from_start", start="0")  # BUSYGROUP tolerated; position kept
    assert await drain_group(bus, "s", "from_start", "c") == []
    assert await drain_group(bus, "s", "only_new", "c") == []
    new = await bus.publish("s", {"n": 1})
    assert ids_of(await drain_group(bus, "s", "only_new", "c")) == [new]
    await bus.ensure_group("fresh", "g")  # creates the stream too
    assert await bus.read_group("fresh", "g", "c", block_ms=None) == []


async def test_ensure_group_from_an_id(bus: Bus) -> None:
    ids = await bus.publish_many([("s", {"n": n}) for n in range(5)])
    await bus.ensure_group("s", "g", start=ids[1])
    assert ids_of(await drain_group(bus, "s", "g", "c")) == ids[2:]


async def test_ack_removes_entries_from_pending(bus: Bus) -> None:
    await bus.ensure_group("s", "g")
    ids = await bus.publish_many([("s", {"n": n}) for n in range(4)])
    assert ids_of(await bus.read_group("s", "g", "c1", block_ms=None)) == ids
    await bus.ack("s", "g", [ids[0], ids[2]])
    await bus.ack("s", "g", [ids[0]])  # acking twice is harmless
    await bus.ack("s", "g", [])

    own = await bus.pending_own("s", "g", "c1")
    assert ids_of(own) == [ids[1], ids[3]]
    claimed = await bus.claim_stale("s", "g", "c2", min_idle_ms=0)
    assert ids_of(claimed) == [ids[1], ids[3]]

    await bus.ack("s", "g", ids_of(claimed))
    assert await bus.pending_own("s", "g", "c1") == []
    assert await bus.pending_own("s", "g", "c2") == []
    assert await bus.claim_stale("s", "g", "c3", min_idle_ms=0) == []


async def test_a_group_read_acks_what_it_is_given_first(bus: Bus) -> None:
    await bus.ensure_group("s", "g")
    ids = await bus.publish_many([("s", {"n": n}) for n in range(3)])
    assert ids_of(await bus.read_group("s", "g", "c", count=2, block_ms=None)) == ids[:2]
    assert ids_of(await bus.read_group("s", "g", "c", block_ms=None, ack=[ids[0]])) == ids[2:]
    assert ids_of(await bus.pending_own("s", "g", "c")) == ids[1:]
    # nothing new: acked all the same
    assert await bus.read_group("s", "g", "c", block_ms=10, ack=ids[1:]) == []
    assert await bus.pending_own("s", "g", "c") == []
    with pytest.raises(InvalidStreamId):
        await bus.read_group("s", "g", "c", block_ms=None, ack=["nope"])
    # A group gone (Redis restarted without persistence) is recreated by the read; the acks go nowhere.
    assert ids_of(await bus.read_group("s", "never_created", "c", block_ms=None, ack=ids[:1])) == ids


async def test_unacked_entry_is_claimed_by_another_consumer_once_idle(bus: Bus) -> None:
    await bus.ensure_group("s", "g")
    entry = await bus.publish("s", {"order": 1})
    (first,) = await bus.read_group("s", "g", "dead", block_ms=None)
    assert (first.id, first.deliveries) == (entry, 1)

    assert await bus.claim_stale("s", "g", "alive", min_idle_ms=60_000) == []  # not idle long enough

    claimed = await eventually(lambda: bus.claim_stale("s", "g", "alive", min_idle_ms=50), timeout=5)
    assert ids_of(claimed) == [entry]
    assert claimed[0].deliveries == 2
    assert claimed[0].data == {"order": 1}
    assert await bus.pending_own("s", "g", "dead") == []  # ownership moved
    # Claimed entries are fresh again for their new owner.
    assert await bus.claim_stale("s", "g", "third", min_idle_ms=60_000) == []

    again = await eventually(lambda: bus.claim_stale("s", "g", "third", min_idle_ms=50), timeout=5)
    assert (again[0].id, again[0].deliveries) == (entry, 3)
    await bus.ack("s", "g", [entry])
    assert await bus.claim_stale("s", "g", "fourth", min_idle_ms=0) == []


async def test_claim_respects_count(bus: Bus) -> None:
    await bus.ensure_group("s", "g")
    ids = await bus.publish_many([("s", {"n": n}) for n in range(10)])
    await bus.read_group("s", "g", "dead", block_ms=None)
    assert ids_of(await bus.claim_stale("s", "g", "c", min_idle_ms=0, count=4)) == ids[:4]
    # With min_idle 0 everything pending qualifies, the just-claimed ones included.
    assert ids_of(await bus.claim_stale("s", "g", "c", min_idle_ms=0, count=100)) == ids


async def test_restarted_consumer_reads_its_own_pending_entries_first(bus: Bus) -> None:
    await bus.ensure_group("s", "g")
    ids = await bus.publish_many([("s", {"n": n}) for n in range(6)])
    assert ids_of(await bus.read_group("s", "g", "w1", count=5, block_ms=None)) == ids[:5]
    await bus.read_group("s", "g", "w2", count=1, block_ms=None)  # another consumer's entry
    await bus.ack("s", "g", [ids[1], ids[3]])

    # "Restart": the worker first drains its own PEL, in id order, with growing delivery counts.
    pending = await bus.pending_own("s", "g", "w1", count=2)
    assert ids_of(pending) == [ids[0], ids[2]]
    assert [m.deliveries for m in pending] == [2, 2]
    assert [m.data["n"] for m in pending] == [0, 2]
    pending = await bus.pending_own("s", "g", "w1")
    assert ids_of(pending) == [ids[0], ids[2], ids[4]]
    assert [m.deliveries for m in pending] == [3, 3, 2]
    await bus.ack("s", "g", ids_of(pending))
    assert await bus.pending_own("s", "g", "w1") == []
    assert ids_of(await bus.pending_own("s", "g", "w2")) == [ids[5]]

    new = await bus.publish("s", {"n": 6})
    assert ids_of(await bus.read_group("s", "g", "w1", block_ms=None)) == [new]


async def test_missing_group_is_created_on_read(bus: Bus) -> None:
    ids = await bus.publish_many([("s", {"n": n}) for n in range(3)])
    assert await bus.pending_own("s", "nogroup", "c") == []
    assert await bus.claim_stale("s", "nogroup2", "c", min_idle_ms=0) == []
    assert ids_of(await bus.read_group("s", "never_created", "c", block_ms=None)) == ids
    assert ids_of(await bus.read_group("brand_new_stream", "g", "c", block_ms=None)) == []


# -- fan-out and blocking --------------------------------------------------------------------------------------


async def test_fan_out_read_gives_every_reader_everything_after_the_id(bus: Bus) -> None:
    a = await bus.publish_many([("fan:a", {"n": n}) for n in range(5)])
    b = await bus.publish_many([("fan:b", {"n": n}) for n in range(3)])

    for _reader in range(2):
        msgs = await bus.read({"fan:a": "0", "fan:b": "0"}, block_ms=None)
        assert [m.id for m in msgs if m.stream == "fan:a"] == a
        assert [m.id for m in msgs if m.stream == "fan:b"] == b
    assert ids_of(await bus.read({"fan:a": a[2]}, block_ms=None)) == a[3:]
    assert ids_of(await bus.read({"fan:a": a[0]}, count=2, block_ms=None)) == a[1:3]
    assert await bus.read({"fan:a": a[-1]}, block_ms=None) == []
    assert await bus.read({"fan:a": "$"}, block_ms=None) == []


async def test_blocking_read_wakes_promptly_on_publish(bus: Bus) -> None:
    after = await bus.publish("live", {"n": 0})
    reader = asyncio.create_task(bus.read({"other": "0-0", "live": after}, block_ms=10_000))
    done, _ = await asyncio.wait({reader}, timeout=0.2)
    assert not done, "a blocking read must wait for data, not return empty"

    published_at = time.monotonic()
    new = await bus.publish("live", {"n": 1})
    msgs = await asyncio.wait_for(reader, timeout=5)
    assert time.monotonic() - published_at < 0.5
    assert [(m.stream, m.id, m.data) for m in msgs] == [("live", new, {"n": 1})]


async def test_blocking_group_read_wakes_promptly_on_publish(bus: Bus) -> None:
    await bus.ensure_group("jobs", "g")
    reader = asyncio.create_task(bus.read_group("jobs", "g", "c", block_ms=10_000))
    done, _ = await asyncio.wait({reader}, timeout=0.2)
    assert not done

    published_at = time.monotonic()
    new = await bus.publish("jobs", {"job": 1})
    msgs = await asyncio.wait_for(reader, timeout=5)
    assert time.monotonic() - published_at < 0.5
    assert ids_of(msgs) == [new]


async def test_blocking_reads_give_up_after_block_ms(bus: Bus) -> None:
    await bus.ensure_group("quiet", "g")
    started = time.monotonic()
    assert await bus.read_group("quiet", "g", "c", block_ms=150) == []
    assert await bus.read({"quiet": "$"}, block_ms=150) == []
    assert 0.25 <= time.monotonic() - started < 2.0


async def test_dollar_read_sees_only_entries_published_after_it_started(bus: Bus) -> None:
    old = await bus.publish("tick", {"n": "old"})
    reader = asyncio.create_task(bus.read({"tick": "$"}, block_ms=10_000))
    published: list[str] = []

    async def publish_until_read() -> bool:
        published.append(await bus.publish("tick", {"n": len(published)}))
        return reader.done()

    await eventually(publish_until_read, timeout=5, interval=0.05)
    msgs = reader.result()
    assert msgs and old not in ids_of(msgs)
    assert set(ids_of(msgs)) <= set(published)


# -- replay, retention, mirror ---------------------------------------------------------------------------------


async def test_range_after_is_exclusive_and_bounded(bus: Bus) -> None:
    ids = await bus.publish_many([("hist", {"n": n}) for n in range(10)])
    assert ids_of(await bus.range_after("hist", ids[3])) == ids[4:]
    assert ids_of(await bus.range_after("hist", ids[3], count=2)) == ids[4:6]
    assert await bus.range_after("hist", ids[-1]) == []
    ms = parse_id(ids[0])[0]
    assert ids_of(await bus.range_after("hist", str(ms - 1))) == ids
    assert await bus.range_after("hist", "18446744073709551615-18446744073709551615") == []


async def test_retention_trims_old_entries_per_stream(make_bus: MakeBus) -> None:
    bus = make_bus(maxlen=5_000, retention={"ticker:*": 10, "small": 20})
    tick = await bus.publish_many([("ticker:BTCUSDT", {"n": n}) for n in range(400)])
    keep = await bus.publish_many([("commands", {"n": n}) for n in range(400)])
    small = [await bus.publish("small", {"n": n}) for n in range(400)]

    assert ids_of(await bus.range_after("commands", "0")) == keep  # default limit not reached
    assert await bus.first_id("commands") == keep[0]
    for ids, name, limit in ((tick, "ticker:BTCUSDT", 10), (small, "small", 20)):
        retained = ids_of(await bus.range_after(name, "0"))
        assert limit <= len(retained) < 250, (name, len(retained))  # approximate, like MAXLEN ~
        assert retained == ids[-len(retained) :]  # the newest survive, in order
        first = await bus.first_id(name)
        assert first == retained[0] and parse_id(first) > parse_id(ids[0])
        assert await bus.last_id(name) == ids[-1]


async def test_mirror_writes_the_same_entry_with_the_same_id(bus: Bus) -> None:
    ids: list[tuple[str, str]] = []
    for n in range(12):
        user = f"user:{n % 3}"
        ids.append((user, await bus.publish("private", {"n": n, "user": user}, mirror_to=f"events:{user}")))

    everything = await bus.range_after("private", "0")
    assert ids_of(everything) == [i for _, i in ids]
    assert_strictly_increasing(ids_of(everything))
    for u in range(3):
        user = f"user:{u}"
        mine = await bus.range_after(f"events:{user}", "0")
        assert ids_of(mine) == [i for who, i in ids if who == user]
        assert all(m.data["user"] == user for m in mine)
        assert [m.data for m in mine] == [m.data for m in everything if m.data["user"] == user]
        # Resume from a global id works in the per-user stream: same id space.
        assert ids_of(await bus.range_after(f"events:{user}", ids[4][1])) == [
            i for who, i in ids[5:] if who == user
        ]


async def test_mirror_stays_increasing_when_the_mirror_is_also_fed_directly(bus: Bus) -> None:
    a = await bus.publish("events:u", {"direct": 1})
    b = await bus.publish("private", {"m": 1}, mirror_to="events:u")
    c = await bus.publish("events:u", {"direct": 2})
    d = await bus.publish("private", {"m": 2}, mirror_to="events:u")
    assert_strictly_increasing([a, b, c, d])
    assert ids_of(await bus.range_after("events:u", "0")) == [a, b, c, d]
    assert ids_of(await bus.range_after("private", "0")) == [b, d]


async def test_publish_many_mirrors_some_items_in_one_batch(bus: Bus) -> None:
    """The outbox relay's batch: plain and mirrored entries mixed, in order, the mirror fed directly too."""
    direct = await bus.publish("events:u1", {"direct": 0})
    items = [("private", {"n": n, "user": f"u{n % 2}"}) for n in range(6)] + [("cmds", {"n": 6})]
    mirrors = [f"events:u{n % 2}" for n in range(6)] + [None]
    ids = await bus.publish_many(items, mirrors=mirrors)
    assert_strictly_increasing(ids[:6])
    assert parse_id(ids[1]) > parse_id(direct)
    assert ids_of(await bus.range_after("private", "0")) == ids[:6]
    assert [m.data for m in await bus.range_after("cmds", "0")] == [{"n": 6}]
    assert ids_of(await bus.range_after("events:u0", "0")) == ids[0:6:2]
    assert ids_of(await bus.range_after("events:u1", "0")) == [direct, *ids[1:6:2]]
    with pytest.raises(ValueError):
        await bus.publish_many(items, mirrors=mirrors[:-1])
    with pytest.raises(ValueError):
        await bus.publish_many([("s", {})], mirrors=["s"])
    with pytest.raises(TypeError):  # all or nothing: a bad payload anywhere publishes none
        await bus.publish_many(
            [("private", {"ok": 1}), ("private", {"x": object()})], mirrors=["events:u0", None]
        )
    assert len(await bus.range_after("private", "0")) == 6


# -- lifecycle -------------------------------------------------------------------------------------------------


async def test_ping_and_close(make_bus: MakeBus) -> None:
    bus = make_bus()
    assert isinstance(bus, Bus)
    await bus.ping()
    await bus.close()
    with pytest.raises(BusUnavailable) as info:
        await bus.ping()
    assert isinstance(info.value, Unavailable) and info.value.status == 503
    with pytest.raises(BusUnavailable):
        await bus.publish("s", {})


def test_create_bus_picks_the_adapter_without_io() -> None:
    clock = SystemClock()
    assert isinstance(create_bus(None, prefix="p:", maxlen=100, clock=clock), MemoryBus)
    redis_bus = create_bus("redis://127.0.0.1:1/0", prefix="p:", maxlen=100, clock=clock)
    assert isinstance(redis_bus, RedisStreamsBus)
    assert isinstance(redis_bus, Bus)


async def test_a_mirrored_payload_published_again_is_appended_once(bus: Bus) -> None:
    """An outbox row published by its writer and again by a relay (or again after a crash before its row was
    deleted) must not reach a user twice: the same private event answers the first id, whichever call sends
    it and in whatever key order its payload comes back from the database (found by benchmarks/chaos.py)."""
    event = {"type": "ORDER_UPDATE", "data": {"order_id": "o1", "version": 2}, "user_id": "u"}
    first = await bus.publish("private", event, mirror_to="events:u")
    again = await bus.publish("private", dict(reversed(list(event.items()))), mirror_to="events:u")
    batch = await bus.publish_many(
        [
            ("private", event),
            ("private", {**event, "data": {"order_id": "o1", "version": 3}}),
            ("cmds", {"n": 1}),
        ],
        mirrors=["events:u", "events:u", None],
    )
    assert again == first and batch[0] == first
    assert [m.data["data"]["version"] for m in await bus.range_after("private", "0")] == [2, 3]
    assert [m.data["data"]["version"] for m in await bus.range_after("events:u", "0")] == [2, 3]
    # Plain entries (commands: idempotent by id downstream) are appended each time, as before.
    await bus.publish_many([("cmds", {"n": 1})])
    assert len(await bus.range_after("cmds", "0")) == 2
