"""The pricefeed loop: source -> price book -> candles -> marks, with a 250 ms coalescing flush.

I/O stays at the edges: the source yields ticks, a `PriceFeedSink` publishes (bus adapters
implement it), a `CandleStore` persists. Everything in between is the synchronous domain.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from pricefeed.domain.candles import Candle, CandleAggregator, CandleStore
from pricefeed.domain.history import history_end
from pricefeed.domain.marking import MarkingEngine, PositionUpdate
from pricefeed.domain.staleness import PriceBook
from pricefeed.domain.ticks import Tick
from pricefeed.sources.base import HistorySource, PriceSource, Sleeper, real_sleep
from shared.clock import Clock
from shared.positions import Fill

log = logging.getLogger(__name__)

BACKFILL_TIMEOUT_S = 20.0  # an exchange that does not answer must not hold the live prices back for long
PUBLISH_CHUNK = 2_000  # position updates per publish call; the loop gets a turn between chunks


class PriceFeedSink(Protocol):
    async def publish_ticks(self, ticks: Sequence[Tick]) -> None: ...

    async def publish_candles(self, candles: Sequence[Candle]) -> None: ...

    async def publish_positions(self, updates: Sequence[PositionUpdate]) -> None: ...


class PriceFeedService:
    def __init__(
        self,
        source: PriceSource,
        clock: Clock,
        sink: PriceFeedSink,
        *,
        book: PriceBook | None = None,
        candles: CandleAggregator | None = None,
        engine: MarkingEngine | None = None,
        candle_store: CandleStore | None = None,
        flush_interval: float = 0.25,
        sleep: Sleeper = real_sleep,
        backfill_timeout_s: float = BACKFILL_TIMEOUT_S,
        inputs: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """``inputs``: brings in what changed positions and candles elsewhere (the worker's fills, paper trades)
        before each tick and each flush, the moments they are used at."""
        self.source = source
        self.clock = clock
        self.sink = sink
        self.book = book or PriceBook(clock)
        self.candles = candles or CandleAggregator()
        self.engine = engine or MarkingEngine(clock)
        self.candle_store = candle_store
        self.flush_interval = flush_interval
        self.backfill_timeout_s = backfill_timeout_s
        self._sleep = sleep
        self._inputs = inputs
        # Latest tick time seen: candles close on market time, so a replay of old data (whose
        # buckets all ended long ago by the wall clock) is not closed out under its own feet.
        self._market_time: datetime | None = None
        # Candles changed since the last flush, by (symbol, interval, start): published once per flush with their
        # latest state (a closed one and its successor both). Every tick and trade changes a candle of every
        # interval: published at once, that was six CANDLE events per paper trade, which the events service
        # read and decoded too, ~1,000 a second at 100 orders/s (issue #16). Binance pushes klines every 1-2 s.
        self._unpublished: dict[tuple[str, str, datetime], Candle] = {}
        self._stopped = False

    def stop(self) -> None:
        """End the loops at their next turn, even if a cancellation is lost on the way: a dependency that
        swallows one (Python 3.11's ``wait_for`` returning a result that came with it) left the consumer
        ticking after its cancel, and the process's shutdown waited for ever (seen in `create_app`)."""
        self._stopped = True

    async def backfill(self, count: int) -> int:
        """History before the first tick, from a source that has it (`HistorySource`): stored where the store
        has nothing for the bucket yet, and the still-running buckets carried on by the aggregator, so a fresh
        system's chart is full and its current candles are not restarted by the first live tick. Returns the
        number of candles the source gave."""
        if count <= 0 or self.candle_store is None or not isinstance(self.source, HistorySource):
            return 0
        now = self.clock.now()
        candles = await self.source.candle_history(history_end(now), count)
        await self.candle_store.insert_missing(candles)
        for symbol, interval in {(c.symbol, c.interval) for c in candles}:
            for stored in await self.candle_store.recent(symbol, interval, 1):
                if stored.start == interval.bucket_start(now):
                    self.candles.resume(stored)
        return len(candles)

    async def run(self, *, history: int = 0) -> None:
        """Backfill `history` candles per interval, then consume the source and flush marks until cancelled
        (a finished replay keeps marking)."""
        try:
            given = await asyncio.wait_for(self.backfill(history), self.backfill_timeout_s)
        except TimeoutError:
            log.warning("pricefeed: no history within %.1f s; starting without it", self.backfill_timeout_s)
            given = 0
        except Exception:
            log.exception("pricefeed: backfill failed; starting without history")
        else:
            if given:
                log.info("pricefeed: %d candles of history from %s", given, self.source.name)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._consume(), name="pricefeed-consume")
            tg.create_task(self._flush_forever(), name="pricefeed-flush")

    async def on_tick(self, tick: Tick) -> None:
        if self._inputs is not None:
            await self._inputs()  # the trades before this tick count in its candle first
        if not self.book.update(tick):
            return  # out of order
        self.engine.on_tick(tick.symbol, tick.price, tick.ts)
        if self._market_time is None or tick.ts > self._market_time:
            self._market_time = tick.ts
        await self.sink.publish_ticks([tick])
        await self._candles(self.candles.on_tick(tick.symbol, tick.price, tick.ts))

    async def on_market_trade(self, symbol: str, price: Decimal, qty: Decimal, ts: datetime) -> None:
        """A public trade (once per trade, not per side) adds candle volume."""
        await self._candles(self.candles.on_trade(symbol, price, qty, ts))

    async def on_fill(self, user_id: str, mode: str, fill: Fill) -> PositionUpdate:
        """A user's fill: the position update is published at once, not coalesced."""
        update, _ = self.engine.on_fill(user_id, mode, fill)
        await self.sink.publish_positions([update])
        return update

    async def flush_once(self, now: float | None = None) -> int:
        """Candles closed by time and every candle changed since the last flush, then the positions re-marked."""
        if self._inputs is not None:
            await self._inputs()  # positions as the fills published so far left them
        if self._market_time is not None:
            await self._candles(self.candles.close_due(self._market_time))
        if self._unpublished:
            candles, self._unpublished = list(self._unpublished.values()), {}
            await self.sink.publish_candles(candles)
        count = 0
        for chunk in self.engine.flush_chunks(now, PUBLISH_CHUNK):
            count += len(chunk)
            await self.sink.publish_positions(chunk)
            await asyncio.sleep(0)  # let ticks and fills in between big flushes
        return count

    async def _consume(self) -> None:
        async for tick in self.source.ticks():
            if self._stopped:
                return
            try:
                await self.on_tick(tick)
            except Exception:
                log.exception("pricefeed: failed to process %r", tick)
        log.info("pricefeed: source %s finished", getattr(self.source, "name", "?"))

    async def _flush_forever(self) -> None:
        # Drift-free schedule; flush(now=scheduled) keeps the rate cap exact despite timer jitter.
        scheduled = self.clock.monotonic()
        while not self._stopped:
            scheduled += self.flush_interval
            await self._sleep(max(0.0, scheduled - self.clock.monotonic()))
            try:
                await self.flush_once(scheduled)
            except Exception:
                log.exception("pricefeed: flush failed")

    async def _candles(self, candles: list[Candle]) -> None:
        """Stored (the store throttles its own writes) and noted for the next flush's publication."""
        if not candles:
            return
        if self.candle_store is not None:
            await self.candle_store.upsert_many(candles)
        for c in candles:
            self._unpublished[(c.symbol, str(c.interval), c.start)] = c
