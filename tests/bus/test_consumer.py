"""GroupConsumer: the pending -> claim stale -> read new sequence, on both adapters."""

from __future__ import annotations

from shared.bus import Bus
from shared.bus.consumer import GroupConsumer
from tests.support.eventually import eventually


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_own_pending_entries_come_first_then_new_ones(bus: Bus) -> None:
    await bus.ensure_group("s", "g")
    first = [await bus.publish("s", {"n": i}) for i in range(3)]
    assert [m.id for m in await bus.read_group("s", "g", "c", count=10, block_ms=None)] == first  # not acked
    later = await bus.publish("s", {"n": 3})
    consumer = GroupConsumer(bus, "s", "g", "c", count=2, block_ms=10, claim_idle_ms=60_000)

    assert [m.id for m in await consumer.next_batch()] == first[:2] and consumer.draining
    await bus.ack("s", "g", first[:2])
    assert [m.id for m in await consumer.next_batch()] == first[2:]
    await bus.ack("s", "g", first[2:])
    assert await consumer.next_batch() == [] and not consumer.draining  # drained
    assert [m.id for m in await consumer.next_batch()] == [later]

    consumer.rewind()  # an error left `later` unacked: it comes again before anything new
    await bus.publish("s", {"n": 4})
    again = await consumer.next_batch()
    assert [m.id for m in again] == [later] and again[0].deliveries == 2


async def test_a_dead_consumers_idle_entries_are_claimed_at_most_every_claim_interval(bus: Bus) -> None:
    await bus.ensure_group("s", "g")
    orphan = await bus.publish("s", {"n": 0})
    assert await bus.read_group("s", "g", "dead", count=10, block_ms=None)  # never acked
    clock = Ticks()
    consumer = GroupConsumer(
        bus, "s", "g", "alive", count=10, block_ms=10, claim_idle_ms=0, claim_every_s=5, clock=clock
    )
    assert await consumer.next_batch() == []  # nothing of its own pending
    fresh = await bus.publish("s", {"n": 1})
    assert [m.id for m in await consumer.next_batch()] == [fresh]  # no claim before the interval
    await bus.ack("s", "g", [fresh])

    async def takes_orphan_once_the_interval_passed() -> bool:
        clock.now += 5  # each look is a claim interval later
        return [m.id for m in await consumer.next_batch()] == [orphan]

    assert await eventually(takes_orphan_once_the_interval_passed, timeout=5)
    assert await bus.pending_own("s", "g", "dead") == []
    assert [m.id for m in await bus.pending_own("s", "g", "alive")] == [orphan]


async def test_handled_entries_are_acked_with_the_next_read_or_on_flush(bus: Bus) -> None:
    await bus.ensure_group("s", "g")
    consumer = GroupConsumer(bus, "s", "g", "c", count=10, block_ms=10, claim_idle_ms=60_000)
    assert await consumer.next_batch() == [] and not consumer.draining
    first = await bus.publish("s", {"n": 0})
    assert [m.id for m in await consumer.next_batch()] == [first]
    consumer.handled([first])
    # not acked yet: with the next read
    assert [m.id for m in await bus.pending_own("s", "g", "c")] == [first]
    second = await bus.publish("s", {"n": 1})
    assert [m.id for m in await consumer.next_batch()] == [second]
    assert [m.id for m in await bus.pending_own("s", "g", "c")] == [second]
    consumer.handled([second])
    await consumer.flush()
    assert await bus.pending_own("s", "g", "c") == []


async def test_handled_entries_are_acked_before_pending_ones_are_read_again(bus: Bus) -> None:
    await bus.ensure_group("s", "g")
    ids = [await bus.publish("s", {"n": i}) for i in range(2)]
    consumer = GroupConsumer(bus, "s", "g", "c", count=1, block_ms=10, claim_idle_ms=60_000)
    assert await consumer.next_batch() == []
    assert [m.id for m in await consumer.next_batch()] == ids[:1]
    consumer.handled(ids[:1])
    assert [m.id for m in await consumer.next_batch()] == ids[1:]
    consumer.rewind()  # the second batch failed: only it comes again, not the handled first one
    assert [m.id for m in await consumer.next_batch()] == ids[1:]
