"""Candle history at start-up: the synthetic walk's own deterministic past, the exchange's klines (through
shared/exchanges, ccxt against the Binance double), every interval rolled up from one path, and the backfill
that stores it without overwriting and lets the live feed carry on the running buckets."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from pricefeed.domain.candles import (
    ALL_INTERVALS,
    Candle,
    InMemoryCandleStore,
    Interval,
    aggregate,
)
from pricefeed.domain.history import history_end, history_layout
from pricefeed.domain.ticks import Tick
from pricefeed.service import PriceFeedService
from pricefeed.sources import ExchangeTickerSource, ReplaySource, SyntheticSource
from shared.candles import CANDLE_INTERVAL_MS
from shared.clock import ManualClock
from tests.binance_double import BinanceDouble
from tests.binance_double.plugin import binance_double
from tests.pricefeed.test_sources import double_sessions
from tests.support.eventually import eventually

__all__ = ["binance_double"]  # the fixture

D = Decimal
NOW = datetime(2026, 12, 3, 11, 7, 31, tzinfo=UTC)
SYMBOLS = ["BTCUSDT", "ETHUSDT"]


def by_interval(candles: list[Candle], symbol: str) -> dict[Interval, list[Candle]]:
    out: dict[Interval, list[Candle]] = defaultdict(list)
    for c in candles:
        if c.symbol == symbol:
            out[c.interval].append(c)
    return out


class NullSink:
    async def publish_ticks(self, ticks: Sequence[Tick]) -> None: ...

    async def publish_candles(self, candles: object) -> None: ...

    async def publish_positions(self, updates: object) -> None: ...


def test_the_intervals_are_the_contracts() -> None:
    assert [str(i) for i in ALL_INTERVALS] == list(CANDLE_INTERVAL_MS)
    assert [i.length for i in ALL_INTERVALS] == [
        timedelta(milliseconds=ms) for ms in CANDLE_INTERVAL_MS.values()
    ]


def test_aggregate_rolls_shorter_candles_up() -> None:
    start = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    minutes = [
        Candle("BTCUSDT", Interval.M1, start + timedelta(minutes=i), D(o), D(h), D(lo), D(c), D(v), n, True)
        for i, (o, h, lo, c, v, n) in enumerate(
            [
                ("100", "103", "99", "102", "1.5", 2),
                ("102", "104", "101", "101", "0.5", 1),
                ("101", "101", "95", "96", "2", 0),
                ("96", "98", "96", "97", "0", 0),
                ("97", "99", "97", "98", "1", 1),
                ("98", "110", "98", "109", "3", 4),  # the next 5m bucket
            ]
        )
    ]
    first, second = aggregate(minutes[::-1], Interval.M5, complete_by=start + timedelta(minutes=6))
    assert (first.start, first.open, first.high, first.low, first.close) == (start, 100, 104, 95, 98)
    assert (first.volume, first.trade_count, first.closed) == (D("5"), 4, True)
    assert (second.start, second.open, second.close, second.closed) == (
        start + timedelta(minutes=5),
        98,
        109,
        False,
    )
    with pytest.raises(ValueError, match="cannot split"):
        aggregate([first], Interval.M1, complete_by=start)


def test_layout_nests_and_covers_each_interval() -> None:
    end = history_end(NOW)
    assert end == datetime(2026, 12, 3, 11, 7, tzinfo=UTC)
    layout = history_layout(end, 100)
    assert [iv for iv, _, _ in layout] == list(reversed(ALL_INTERVALS))
    for (_, _, stop), (iv, begin, _) in itertools.pairwise(layout):
        assert stop == begin  # one unbroken path
    for iv, begin, stop in layout:
        assert iv.bucket_start(begin) == begin and iv.bucket_start(stop) == stop
    assert layout[-1][2] == end
    with pytest.raises(ValueError, match="boundary"):
        history_layout(NOW, 100)


def test_synthetic_history_is_deterministic_full_and_consistent_across_intervals() -> None:
    count = 60
    end = history_end(NOW)
    history = SyntheticSource(SYMBOLS, ManualClock(NOW), seed=7).history(end, count)
    assert history == SyntheticSource(SYMBOLS, ManualClock(NOW), seed=7).history(end, count)
    assert history != SyntheticSource(SYMBOLS, ManualClock(NOW), seed=8).history(end, count)
    for symbol, start_price in (("BTCUSDT", D("65000")), ("ETHUSDT", D("3500"))):
        series = by_interval(history, symbol)
        assert set(series) == set(ALL_INTERVALS)
        for iv, candles in series.items():
            starts = [c.start for c in candles]
            assert len(candles) >= count, iv
            assert starts == [starts[0] + i * iv.length for i in range(len(starts))], f"{iv} has gaps"
            assert candles[-1].start + iv.length >= end > candles[-1].start  # reaches the present
            assert candles[-1].close == start_price  # joins the live walk without a jump
            assert [c.closed for c in candles] == [c.start + iv.length <= end for c in candles]
            for c in candles:
                assert c.low <= min(c.open, c.close) <= max(c.open, c.close) <= c.high and c.volume > 0
        # Every candle is exactly the shorter candles it is made of, wherever those exist.
        for shorter, longer in itertools.pairwise(ALL_INTERVALS):
            parts = series[shorter]
            covered_from = parts[0].start
            rolled = {c.start: c for c in aggregate(parts, longer, complete_by=end)}
            checked = 0
            for c in series[longer]:
                if c.start >= covered_from:
                    assert rolled[c.start] == c, (shorter, longer, c.start)
                    checked += 1
            assert checked >= count * shorter.length // longer.length - 1


async def test_backfill_stores_history_keeps_what_is_stored_and_carries_on_the_running_buckets() -> None:
    clock = ManualClock(NOW)
    store = InMemoryCandleStore()
    kept = Candle(
        "BTCUSDT", Interval.H1, datetime(2026, 12, 3, 9, tzinfo=UTC), D(1), D(2), D(1), D(2), D(9), 3, True
    )
    await store.insert_missing([kept])
    service = PriceFeedService(SyntheticSource(SYMBOLS, clock), clock, NullSink(), candle_store=store)
    given = await service.backfill(50)
    assert given > 6 * 50 * len(SYMBOLS)
    hours = await store.recent("BTCUSDT", Interval.H1, 1000)
    assert len(hours) >= 50 and kept in hours  # the feed's own candle was not overwritten
    day = (await store.recent("BTCUSDT", Interval.D1, 1))[0]
    assert day.start == datetime(2026, 12, 3, tzinfo=UTC) and not day.closed
    # The first live tick extends today's backfilled candle instead of starting the day over from itself.
    clock.advance(20)
    await service.on_tick(Tick("BTCUSDT", D("64000"), clock.now(), "synthetic"))
    live = service.candles.current("BTCUSDT", Interval.D1)
    assert live is not None
    assert (live.start, live.open, live.close, live.volume) == (day.start, day.open, D("64000"), day.volume)
    assert live.low == min(day.low, D("64000")) and live.high == day.high
    stored_day = (await store.recent("BTCUSDT", Interval.D1, 1))[0]
    assert stored_day.open == day.open and stored_day.close == D("64000")


async def test_sources_without_history_start_empty(tmp_path) -> None:
    path = tmp_path / "r.csv"
    path.write_text("2026-01-01T00:00:00Z,BTCUSDT,100\n")
    store = InMemoryCandleStore()
    clock = ManualClock(NOW)
    service = PriceFeedService(ReplaySource(path, clock), clock, NullSink(), candle_store=store)
    assert await service.backfill(50) == 0
    assert await store.recent("BTCUSDT", Interval.M1, 10) == []


async def test_exchange_history_is_the_exchanges_klines(binance_double: BinanceDouble) -> None:
    """ccxt unmodified against the double: every interval's klines as the double's REST answer has them."""
    state = binance_double.state
    for price in ("61000", "61500", "60900"):
        state.set_price("BTCUSDT", price)
    now = datetime.fromtimestamp(state.now_ms() / 1000, UTC)
    clock = ManualClock(now)
    source = ExchangeTickerSource("binance-testnet", ["BTCUSDT"], clock, double_sessions(binance_double))
    history = await source.candle_history(history_end(now), 5)
    series = by_interval(history, "BTCUSDT")
    assert set(series) == set(ALL_INTERVALS)
    async with httpx.AsyncClient(base_url=binance_double.url) as http:
        for iv in ALL_INTERVALS:
            rows = (
                await http.get(
                    "/api/v3/klines", params={"symbol": "BTCUSDT", "interval": str(iv), "limit": 5}
                )
            ).json()
            got = series[iv]
            assert [int(c.start.timestamp() * 1000) for c in got] == [r[0] for r in rows]
            assert [(c.open, c.high, c.low, c.close, c.volume) for c in got] == [
                tuple(D(x) for x in r[1:6]) for r in rows
            ]
            assert got[-1].close == D("60900") and not got[-1].closed
            assert all(c.closed for c in got[:-1])


async def test_exchange_history_stops_at_an_unreachable_exchange_and_skips_a_refused_interval(
    binance_double: BinanceDouble,
) -> None:
    clock = ManualClock(NOW)
    # NOPEUSDT is not listed: each of its calls is refused (-1121), and BTCUSDT's history comes regardless.
    source = ExchangeTickerSource(
        "binance-testnet", ["NOPEUSDT", "BTCUSDT"], clock, double_sessions(binance_double)
    )

    async def series() -> set[tuple[str, Interval]]:
        return {(c.symbol, c.interval) for c in await source.candle_history(history_end(NOW), 5)}

    everything = {("BTCUSDT", iv) for iv in ALL_INTERVALS}
    assert await series() == everything
    binance_double.fail_next("GET", "/api/v3/klines", 503, times=2)
    assert await series() == set()  # unavailable: no further calls...
    assert await series() == set()  # ...so the second fault is still there for the next try
    assert await series() == everything


class Recorder(NullSink):
    def __init__(self) -> None:
        self.ticks: list[Tick] = []

    async def publish_ticks(self, ticks: Sequence[Tick]) -> None:
        self.ticks.extend(ticks)


async def test_an_exchange_slow_to_send_history_does_not_hold_the_live_prices_back(
    binance_double: BinanceDouble,
) -> None:
    # Each klines call answers, but only after 1.5 s (within the client's 2 s timeout): 9 s for the six.
    binance_double.delay_next("GET", "/api/v3/klines", 1.5, times=50)
    clock = ManualClock(NOW)
    sink = Recorder()
    source = ExchangeTickerSource(
        "binance-testnet", ["BTCUSDT"], clock, double_sessions(binance_double), poll_interval=0.05
    )
    service = PriceFeedService(
        source, clock, sink, candle_store=InMemoryCandleStore(), backfill_timeout_s=0.3
    )
    task = asyncio.create_task(service.run(history=5))
    try:
        await eventually(lambda: len(sink.ticks) > 0, timeout=5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
