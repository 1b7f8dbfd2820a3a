"""`pricefeed.follow.CatchUp`: streams read without waiting at the moments a reader acts (the price feed's ticks
and flushes), so its reads follow its own moments, not the number of events published (issue #16). On the
in-memory bus and on Redis Streams."""

from __future__ import annotations

from collections.abc import Mapping

from pricefeed.follow import UNAVAILABLE_WAIT_S, CatchUp
from shared.bus import Bus, BusMessage, BusUnavailable
from shared.bus.memory import MemoryBus
from shared.clock import SystemClock
from tests.support.bus import CountingReads


async def test_what_came_after_start_is_handed_over_once_in_order_in_reads_of_count(bus: Bus) -> None:
    await bus.publish("a", {"n": "before"})  # before the start: not new
    reads = CountingReads(bus)
    got: list[tuple[str, object]] = []

    async def on_batch(msgs: list[BusMessage]) -> None:
        got.extend((m.stream, m.data["n"]) for m in msgs)

    catch_up = CatchUp(reads, ["a", "b"], on_batch, count=4)  # type: ignore[arg-type]
    await catch_up.start()
    for n in range(10):
        await bus.publish("a", {"n": n})
    await bus.publish("b", {"n": "b0"})  # a stream that did not exist at the start: all of it is new

    await catch_up.catch_up()
    assert [n for s, n in got if s == "a"] == list(range(10))
    assert [n for s, n in got if s == "b"] == ["b0"]
    assert reads.reads == 3  # 4 + 4 + 2 of "a": the last read, short of count, ends the catch-up
    assert reads.blocks == [None] * 3  # never waits for entries

    got.clear()
    await catch_up.catch_up()
    assert got == [] and reads.reads == 4  # nothing new: one read
    await bus.publish("a", {"n": 10})
    await catch_up.catch_up()
    assert got == [("a", 10)] and reads.reads == 5


class Down(MemoryBus):
    """An in-memory bus that cannot be reached while `down`."""

    def __init__(self) -> None:
        super().__init__(clock=SystemClock())
        self.down = True
        self.reads = 0

    async def last_id(self, stream: str) -> str | None:
        if self.down:
            raise BusUnavailable("unreachable")
        return await super().last_id(stream)

    async def read(
        self, streams: Mapping[str, str], *, count: int = 100, block_ms: int | None = 1000
    ) -> list[BusMessage]:
        self.reads += 1
        if self.down:
            raise BusUnavailable("unreachable")
        return await super().read(streams, count=count, block_ms=block_ms)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_a_bus_that_cannot_be_reached_is_not_asked_again_before_the_wait() -> None:
    bus, clock = Down(), Clock()
    got: list[BusMessage] = []

    async def on_batch(msgs: list[BusMessage]) -> None:
        got.extend(msgs)

    catch_up = CatchUp(bus, ["a"], on_batch, clock=clock)
    await catch_up.start()  # down: starts from the ends once the bus answers
    bus.down = False
    await catch_up.catch_up()  # not yet: the wait after the failure has not passed
    await bus.publish("a", {"n": 0})
    clock.now += UNAVAILABLE_WAIT_S
    await catch_up.catch_up()  # takes the ends now
    await bus.publish("a", {"n": 1})
    await catch_up.catch_up()
    assert [m.data["n"] for m in got] == [1]

    bus.down = True
    reads = bus.reads
    await catch_up.catch_up()
    await catch_up.catch_up()
    assert bus.reads == reads + 1  # the second call did not try
    bus.down = False
    await bus.publish("a", {"n": 2})
    clock.now += UNAVAILABLE_WAIT_S
    await catch_up.catch_up()
    assert [m.data["n"] for m in got] == [1, 2]  # nothing lost while it was down
