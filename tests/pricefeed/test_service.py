"""The assembled loop over a real replay file, publishing to an in-memory sink."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from decimal import Decimal
from pathlib import Path

from pricefeed.domain.candles import Candle, InMemoryCandleStore, Interval
from pricefeed.domain.marking import PositionUpdate
from pricefeed.domain.ticks import Tick
from pricefeed.service import PriceFeedService
from pricefeed.sources import ReplaySource
from shared.clock import ManualClock
from shared.positions import Fill, Side
from tests.support.eventually import eventually


class RecordingSink:
    def __init__(self) -> None:
        self.ticks: list[Tick] = []
        self.candles: list[Candle] = []
        self.positions: list[PositionUpdate] = []

    async def publish_ticks(self, ticks: Sequence[Tick]) -> None:
        self.ticks += ticks

    async def publish_candles(self, candles: Sequence[Candle]) -> None:
        self.candles += candles

    async def publish_positions(self, updates: Sequence[PositionUpdate]) -> None:
        self.positions += updates


async def test_replay_drives_prices_candles_and_coalesced_position_updates(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        "".join(f"2024-05-01T00:0{i}:00Z,BTCUSDT,{100 + i}\n" for i in range(5)), encoding="utf-8"
    )
    clock = ManualClock()
    sink = RecordingSink()
    store = InMemoryCandleStore()

    async def tick_sleep(seconds: float) -> None:  # the flusher's timer, driven by the manual clock
        clock.advance(max(seconds, 0.25))
        await asyncio.sleep(0.001)

    gate = asyncio.Event()

    class GatedReplay(ReplaySource):
        async def ticks(self) -> AsyncIterator[Tick]:
            await gate.wait()  # hold ticks until the position exists
            async for t in super().ticks():
                yield t

    service = PriceFeedService(GatedReplay(path, clock), clock, sink, candle_store=store, sleep=tick_sleep)
    update = await service.on_fill("alice", "paper", Fill("BTCUSDT", Side.BUY, Decimal(2), Decimal(100)))
    assert sink.positions == [update]
    task = asyncio.create_task(service.run())
    try:
        gate.set()
        await eventually(lambda: len(sink.ticks) == 5)
        await eventually(lambda: sink.positions[-1].mark_price == 104)
        assert sink.positions[-1].unrealized_pnl == Decimal(8)
        assert all(u.user_id == "alice" for u in sink.positions)
        assert len(sink.positions) <= 1 + 5  # coalesced: never more than one per tick
        recent = await store.recent("BTCUSDT", Interval.M1, 10)
        assert [c.close for c in recent] == [Decimal(100 + i) for i in range(5)]
        # Old data under a newer clock: buckets close on market time, so none is cut short.
        assert [c.closed for c in recent] == [True] * 4 + [False]
        assert all(c.open == c.close for c in recent)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_candles_are_published_once_per_flush_with_their_latest_state() -> None:
    """Issue #16: every tick and trade changes a candle of every interval; published at once, that was six CANDLE
    events per paper trade. Now each changed candle goes out once per flush, as it stands then, and a candle a
    tick closed goes out beside its successor."""
    from datetime import UTC, datetime, timedelta

    clock = ManualClock(datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC))
    sink = RecordingSink()
    service = PriceFeedService(ReplaySource(Path("/nonexistent"), clock), clock, sink)
    await service.on_tick(Tick("BTCUSDT", Decimal(100), clock.now(), "replay"))
    for i in range(20):
        await service.on_market_trade("BTCUSDT", Decimal(100 + i), Decimal("0.5"), clock.now())
    assert sink.candles == []  # not yet: at the flush
    await service.flush_once()
    assert len(sink.candles) == len(Interval)  # one per interval, not 21 per interval
    m1 = next(c for c in sink.candles if c.interval == Interval.M1)
    assert (m1.open, m1.high, m1.close, m1.volume, m1.trade_count) == (100, 119, 119, 10, 20)

    sink.candles.clear()
    await service.flush_once()
    assert sink.candles == []  # nothing changed since

    later = clock.now() + timedelta(minutes=1)  # the next minute: its tick closes the first minute's candle
    await service.on_tick(Tick("BTCUSDT", Decimal(120), later, "replay"))
    await service.flush_once()
    minutes = [c for c in sink.candles if c.interval == Interval.M1]
    assert [(c.close, c.closed) for c in minutes] == [(119, True), (120, False)]


async def test_a_stopped_feed_ends_even_when_a_cancellation_is_lost() -> None:
    """Python 3.11's `wait_for` (in dependencies) can swallow a cancellation that arrives with its result: the
    consumer then went on ticking after its cancel and shutdown waited for ever (seen in `create_app`'s teardown).
    `stop` ends both loops at their next turn whatever the cancellations did."""
    clock = ManualClock()
    swallowed = 0

    class LosesCancellations:
        name = "lossy"

        async def ticks(self) -> AsyncIterator[Tick]:
            nonlocal swallowed
            while True:
                try:
                    await asyncio.sleep(0.01)
                except asyncio.CancelledError:
                    swallowed += 1  # as `wait_for` does when the result comes with the cancellation
                yield Tick("BTCUSDT", Decimal(100), clock.now(), self.name)

    service = PriceFeedService(LosesCancellations(), clock, RecordingSink(), flush_interval=0.01)
    task = asyncio.create_task(service.run())
    await asyncio.sleep(0.05)
    task.cancel()
    await eventually(lambda: swallowed > 0)
    await asyncio.sleep(0.05)
    assert not task.done()  # the cancellation was lost: the feed goes on
    service.stop()
    await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)


async def test_inputs_are_brought_in_before_each_tick_and_each_flush() -> None:
    """The price feed reads what changes positions and candles elsewhere (the worker's fills, paper trades) at the
    moments it uses them, not as each is published (issue #16): a trade published before a tick counts in the
    candle before the tick's price, and a fill's position is what the next flush marks."""
    from datetime import UTC, datetime

    from shared.positions import PositionSnapshot

    clock = ManualClock(datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC))
    sink = RecordingSink()
    arrived: list[str] = []  # published elsewhere since the last look

    async def inputs() -> None:
        while arrived:
            kind = arrived.pop(0)
            if kind == "trade":
                await service.on_market_trade("BTCUSDT", Decimal(90), Decimal(1), clock.now())
            else:  # the worker's fill: alice holds 2 BTC now
                qty = Decimal(2)
                service.engine.load(
                    [
                        PositionSnapshot(
                            "alice", "paper", "BTCUSDT", qty, Decimal(100), qty * 100, Decimal(0), Decimal(0)
                        )
                    ]
                )

    service = PriceFeedService(ReplaySource(Path("/nonexistent"), clock), clock, sink, inputs=inputs)
    arrived.append("trade")
    await service.on_tick(Tick("BTCUSDT", Decimal(100), clock.now(), "replay"))
    await service.flush_once()
    m1 = next(c for c in sink.candles if c.interval == Interval.M1)
    assert (m1.open, m1.low, m1.close, m1.volume) == (90, 90, 100, 1)  # the trade came first
    sink.candles.clear()
    arrived.append("trade")  # after the tick: in the flush's candle
    await service.flush_once()
    m1 = next(c for c in sink.candles if c.interval == Interval.M1)
    assert (m1.close, m1.volume) == (90, 2)

    arrived.append("fill")
    await service.on_tick(Tick("BTCUSDT", Decimal(101), clock.now(), "replay"))
    assert sink.positions == []  # marks go out at the flush
    clock.advance(1)
    await service.flush_once()
    assert [(u.user_id, u.quantity, u.mark_price) for u in sink.positions] == [("alice", 2, 101)]
