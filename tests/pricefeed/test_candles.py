"""Candle aggregation: OHLC invariants, volume conservation and rollover, against a naive reference."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pricefeed.domain.candles import ALL_INTERVALS, Candle, CandleAggregator, InMemoryCandleStore, Interval

D = Decimal
T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def test_bucket_alignment() -> None:
    ts = datetime(2026, 1, 1, 12, 34, 56, 789000, tzinfo=UTC)
    assert Interval.M1.bucket_start(ts) == datetime(2026, 1, 1, 12, 34, tzinfo=UTC)
    assert Interval.M5.bucket_start(ts) == datetime(2026, 1, 1, 12, 30, tzinfo=UTC)
    assert Interval.H1.bucket_start(ts) == datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        Interval.M1.bucket_start(datetime(2026, 1, 1))  # naive


def test_ticks_move_ohlc_without_volume_and_trades_add_volume() -> None:
    agg = CandleAggregator((Interval.M1,))
    agg.on_tick("BTCUSDT", D("100"), T0)
    agg.on_trade("BTCUSDT", D("105"), D("0.5"), T0 + timedelta(seconds=1))
    agg.on_tick("BTCUSDT", D("95"), T0 + timedelta(seconds=2))
    (upd,) = agg.on_trade("BTCUSDT", D("101"), D("0.25"), T0 + timedelta(seconds=3))
    assert (upd.open, upd.high, upd.low, upd.close) == (D("100"), D("105"), D("95"), D("101"))
    assert upd.volume == D("0.75") and upd.trade_count == 2 and not upd.closed


def test_rollover_emits_the_closed_candle_then_the_new_one() -> None:
    agg = CandleAggregator((Interval.M1,))
    agg.on_trade("BTCUSDT", D("100"), D("1"), T0)
    closed, current = agg.on_tick("BTCUSDT", D("110"), T0 + timedelta(minutes=1, seconds=5))
    assert closed.closed and closed.start == T0 and closed.close == D("100") and closed.volume == 1
    assert not current.closed and current.start == T0 + timedelta(minutes=1)
    assert current.open == current.close == D("110") and current.volume == 0
    # Late data for the closed bucket is dropped, not reopened.
    assert agg.on_trade("BTCUSDT", D("1"), D("9"), T0 + timedelta(seconds=30)) == []
    cur = agg.current("BTCUSDT", Interval.M1)
    assert cur is not None and cur.low == D("110")


def test_close_due_publishes_closes_for_quiet_markets() -> None:
    agg = CandleAggregator()
    agg.on_tick("ETHUSDT", D("3500"), T0 + timedelta(seconds=10))
    assert agg.close_due(T0 + timedelta(seconds=59)) == []
    closed = agg.close_due(T0 + timedelta(minutes=1))
    assert [(c.interval, c.closed) for c in closed] == [(Interval.M1, True)]
    assert agg.current("ETHUSDT", Interval.M1) is None
    assert agg.on_tick("ETHUSDT", D("1"), T0 + timedelta(seconds=20)) != []  # 5m and 1h still open
    assert agg.current("ETHUSDT", Interval.M1) is None


async def test_in_memory_store_upserts_and_returns_recent_oldest_first() -> None:
    store = InMemoryCandleStore()
    agg = CandleAggregator((Interval.M1,))
    for i in range(5):
        for c in agg.on_trade("BTCUSDT", D(100 + i), D("1"), T0 + timedelta(minutes=i)):
            await store.upsert(c)
    recent = await store.recent("BTC/USDT", Interval.M1, 3)
    assert [c.close for c in recent] == [D(102), D(103), D(104)]
    assert [c.closed for c in recent] == [True, True, False]
    assert await store.recent("BTCUSDT", Interval.M1, 0) == []


events = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=3 * 3600 * 1000),  # ms offset within 3 hours
        st.sampled_from(["BTCUSDT", "ETHUSDT"]),
        st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2),
        st.one_of(st.none(), st.decimals(min_value=D("0.00000001"), max_value=D("10"), places=8)),
    ),
    min_size=1,
    max_size=80,
)


@settings(max_examples=150, deadline=None)
@given(evs=events)
def test_candles_match_a_naive_reference(evs: list[tuple[int, str, Decimal, Decimal | None]]) -> None:
    evs = sorted(evs, key=lambda e: e[0])  # in time order: nothing is late
    agg = CandleAggregator()
    emitted: list[Candle] = []
    for ms, symbol, price, qty in evs:
        ts = T0 + timedelta(milliseconds=ms)
        emitted += agg.on_tick(symbol, price, ts) if qty is None else agg.on_trade(symbol, price, qty, ts)

    for c in emitted:
        assert c.low <= c.open <= c.high and c.low <= c.close <= c.high
        assert c.volume >= 0

    for interval in ALL_INTERVALS:
        ref: dict[tuple[str, datetime], list[tuple[Decimal, Decimal | None]]] = defaultdict(list)
        for ms, symbol, price, qty in evs:
            ref[(symbol, interval.bucket_start(T0 + timedelta(milliseconds=ms)))].append((price, qty))
        last: dict[tuple[str, datetime], Candle] = {}
        closes: dict[tuple[str, datetime], int] = defaultdict(int)
        for c in emitted:
            if c.interval is interval:
                last[(c.symbol, c.start)] = c
                closes[(c.symbol, c.start)] += c.closed
        assert set(last) == set(ref)
        for key, rows in ref.items():
            c = last[key]
            ps = [p for p, _ in rows]
            vols = [q for _, q in rows if q is not None]
            assert (c.open, c.high, c.low, c.close) == (ps[0], max(ps), min(ps), ps[-1])
            assert c.volume == sum(vols, D(0)) and c.trade_count == len(vols)
        # Every bucket but each symbol's latest closed exactly once; the latest is still open.
        for symbol in {k[0] for k in ref}:
            starts = sorted(s for (sym, s) in ref if sym == symbol)
            assert [closes[(symbol, s)] for s in starts] == [1] * (len(starts) - 1) + [0]
        total = sum((c.volume for k, c in last.items()), D(0))
        assert total == sum((q for _, _, _, q in evs if q is not None), D(0))
