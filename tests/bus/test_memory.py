"""In-memory specifics: ids and idle times come from the injected clock, so they are tested deterministically."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.bus import parse_id
from shared.bus.memory import MemoryBus
from shared.clock import ManualClock

START = datetime(2026, 1, 1, tzinfo=UTC)
START_MS = int(START.timestamp() * 1000)


async def test_ids_come_from_the_clock_and_never_go_back() -> None:
    clock = ManualClock(START)
    bus = MemoryBus(clock=clock)
    assert await bus.publish("s", {}) == f"{START_MS}-0"
    assert await bus.publish("s", {}) == f"{START_MS}-1"  # same millisecond: sequence grows
    clock.advance(0.005)
    assert await bus.publish("s", {}) == f"{START_MS + 5}-0"
    clock.advance(-10)  # wall clock stepped back (NTP): ids keep increasing
    assert await bus.publish("s", {}) == f"{START_MS + 5}-1"
    assert await bus.publish("other", {}) == f"{START_MS - 9995}-0"  # per-stream sequence


@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.integers(-3, 3),  # clock step in ms, backwards too
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from([None, "m1", "m2"]),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_ids_strictly_increase_per_stream_whatever_the_clock_does(
    steps: list[tuple[int, str, str | None]],
) -> None:
    async def scenario() -> None:
        clock = ManualClock(START)
        bus = MemoryBus(clock=clock)
        for n, (step_ms, stream, mirror) in enumerate(steps):
            clock.advance(step_ms / 1000)
            # each payload its own: a mirrored payload published again is appended once (MIRROR_ONCE_S)
            entry = await bus.publish(stream, {"s": stream, "n": n}, mirror_to=mirror)
            if mirror is not None:
                assert await bus.last_id(mirror) == entry
            assert await bus.last_id(stream) == entry
        for name in ("a", "b", "c", "m1", "m2"):
            ids = [parse_id(m.id) for m in await bus.range_after(name, "0")]
            assert ids == sorted(set(ids))

    asyncio.run(scenario())


async def test_idle_time_is_measured_on_the_injected_clock() -> None:
    clock = ManualClock(START)
    bus = MemoryBus(clock=clock)
    await bus.ensure_group("s", "g")
    entry = await bus.publish("s", {})
    await bus.read_group("s", "g", "dead", block_ms=None)
    assert await bus.claim_stale("s", "g", "alive", min_idle_ms=30_000) == []
    clock.advance(29.999)
    assert await bus.claim_stale("s", "g", "alive", min_idle_ms=30_000) == []
    clock.advance(0.001)
    (claimed,) = await bus.claim_stale("s", "g", "alive", min_idle_ms=30_000)
    assert (claimed.id, claimed.deliveries) == (entry, 2)
    assert await bus.claim_stale("s", "g", "third", min_idle_ms=30_000) == []  # idle restarted


async def test_mirror_ahead_of_the_source_gets_a_fresh_common_id() -> None:
    clock = ManualClock(START)
    bus = MemoryBus(clock=clock)
    ahead = await bus.publish("events:u", {})
    clock.advance(-60)
    entry = await bus.publish("private", {}, mirror_to="events:u")
    assert parse_id(entry) > parse_id(ahead)
    assert await bus.last_id("private") == await bus.last_id("events:u") == entry


async def test_trimmed_pending_entries_are_dropped_not_redelivered() -> None:
    bus = MemoryBus(retention={"s": 1})
    await bus.ensure_group("s", "g")
    ids = await bus.publish_many([("s", {"n": n}) for n in range(2)])  # within maxlen + slack
    assert len(await bus.read_group("s", "g", "dead", block_ms=None)) == 2
    ids.append(await bus.publish("s", {"n": 2}))  # over it: trimmed back to the newest one
    assert [m.id for m in await bus.range_after("s", "0")] == ids[2:]
    assert await bus.pending_own("s", "g", "dead") == []
    assert await bus.claim_stale("s", "g", "alive", min_idle_ms=0) == []


async def test_close_releases_a_reader_blocked_forever() -> None:
    bus = MemoryBus()
    reader = asyncio.create_task(bus.read({"x": "$"}, block_ms=0))
    group_reader = asyncio.create_task(bus.read_group("y", "g", "c", block_ms=0))
    done, _ = await asyncio.wait({reader, group_reader}, timeout=0.05)
    assert not done
    await bus.close()
    assert await asyncio.wait_for(reader, timeout=2) == []
    assert await asyncio.wait_for(group_reader, timeout=2) == []


async def test_each_delivery_gets_its_own_copy_of_the_data() -> None:
    bus = MemoryBus()
    payload = {"nested": {"n": 1}}
    await bus.publish("s", payload)
    payload["nested"]["n"] = 2  # the publisher's later mutation does not leak
    (first,) = await bus.range_after("s", "0")
    first.data["nested"]["n"] = 3  # nor does a reader's
    (second,) = await bus.range_after("s", "0")
    assert second.data == {"nested": {"n": 1}}
