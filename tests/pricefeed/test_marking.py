"""Live re-marking: per-symbol index, latest-wins coalescing, rate cap, immediate fill updates."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from pricefeed.domain.marking import MarkingEngine, PositionUpdate, _update_of
from shared.clock import ManualClock
from shared.positions import Fill, Position, Side

D = Decimal


def fill(symbol: str, side: Side, qty: str, price: str) -> Fill:
    return Fill(symbol, side, D(qty), D(price))


def engine_with_positions() -> tuple[ManualClock, MarkingEngine]:
    clock = ManualClock()
    eng = MarkingEngine(clock, max_per_second=4)
    eng.on_fill("alice", "paper", fill("BTCUSDT", Side.BUY, "1", "100"))
    eng.on_fill("bob", "paper", fill("BTCUSDT", Side.SELL, "2", "100"))
    eng.on_fill("alice", "paper", fill("ETHUSDT", Side.BUY, "10", "10"))
    clock.advance(1)
    return clock, eng


def test_fill_produces_an_immediate_update_marked_at_the_fill_price_without_a_tick() -> None:
    clock = ManualClock()
    eng = MarkingEngine(clock)
    upd, effect = eng.on_fill("alice", "paper", fill("BTCUSDT", Side.BUY, "2", "100"))
    assert upd == PositionUpdate("alice", "paper", "BTCUSDT", D(2), D(100), D(100), D(0), D(0), clock.now())
    assert effect.opened_quantity == 2
    eng.on_tick("BTCUSDT", D("110"), clock.now())
    upd, _ = eng.on_fill("alice", "paper", fill("BTCUSDT", Side.SELL, "1", "105"))
    assert (upd.quantity, upd.mark_price, upd.unrealized_pnl, upd.realized_pnl) == (D(1), D(110), D(10), D(5))


def test_a_tick_remarks_only_its_symbols_positions_and_latest_wins() -> None:
    clock, eng = engine_with_positions()
    eng.on_tick("BTCUSDT", D("110"), clock.now())
    eng.on_tick("BTCUSDT", D("120"), clock.now())
    ups = sorted(eng.flush(), key=lambda u: u.user_id)
    assert [(u.user_id, u.symbol, u.mark_price, u.unrealized_pnl) for u in ups] == [
        ("alice", "BTCUSDT", D(120), D(20)),
        ("bob", "BTCUSDT", D(120), D(-40)),
    ]
    assert eng.flush() == []  # nothing moved since


def test_rate_cap_defers_then_delivers_the_latest_mark() -> None:
    clock, eng = engine_with_positions()
    eng.on_tick("ETHUSDT", D("11"), clock.now())
    assert len(eng.flush()) == 1
    clock.advance(0.1)
    eng.on_tick("ETHUSDT", D("12"), clock.now())
    assert eng.flush() == []  # 0.1 s after the last one: over 4/s, deferred
    assert eng.pending == 1
    clock.advance(0.1)
    eng.on_tick("ETHUSDT", D("13"), clock.now())
    assert eng.flush() == []
    clock.advance(0.05)
    (upd,) = eng.flush()  # no new tick, but the deferred one is now due, with the latest price
    assert upd.mark_price == D(13) and upd.unrealized_pnl == D(30)
    assert eng.pending == 0 and eng.flush() == []


def test_at_most_n_updates_per_second_per_position_under_a_tick_storm() -> None:
    clock, eng = engine_with_positions()
    emitted: list[float] = []
    for i in range(200):  # a tick every 10 ms for 2 s, flushed every 50 ms
        clock.advance(0.01)
        eng.on_tick("ETHUSDT", D(10) + D(i) / 100, clock.now())
        if i % 5 == 4:
            emitted += [clock.monotonic() for _ in eng.flush()]
    assert 7 <= len(emitted) <= 9
    assert all(b - a >= 0.25 - 1e-9 for a, b in itertools.pairwise(emitted))


def test_fill_bypasses_the_cap_and_supersedes_a_deferred_mark() -> None:
    clock, eng = engine_with_positions()
    eng.on_tick("ETHUSDT", D("11"), clock.now())
    eng.flush()
    clock.advance(0.05)
    eng.on_tick("ETHUSDT", D("12"), clock.now())
    assert eng.flush() == [] and eng.pending == 1
    upd, _ = eng.on_fill("alice", "paper", fill("ETHUSDT", Side.BUY, "10", "12"))
    assert upd.quantity == 20 and upd.mark_price == 12
    assert eng.pending == 0
    clock.advance(1)
    assert eng.flush() == []


def test_flat_positions_leave_the_index_but_keep_realized_pnl() -> None:
    clock, eng = engine_with_positions()
    assert eng.open_positions == 3
    upd, _ = eng.on_fill("bob", "paper", fill("BTCUSDT", Side.BUY, "2", "90"))
    assert upd.quantity == 0 and upd.realized_pnl == D(20) and upd.unrealized_pnl == 0
    assert eng.open_positions == 2
    eng.on_tick("BTCUSDT", D("130"), clock.now())
    assert [u.user_id for u in eng.flush()] == ["alice"]
    bob = eng.current("bob")
    assert [(u.symbol, u.quantity, u.realized_pnl) for u in bob] == [("BTCUSDT", D(0), D(20))]


def test_restored_positions_are_marked_on_the_next_tick() -> None:
    clock, eng = engine_with_positions()
    other = MarkingEngine(clock)
    other.load(eng.book.positions())
    other.on_tick("BTCUSDT", D("150"), clock.now())
    assert sorted((u.user_id, u.unrealized_pnl) for u in other.flush()) == [
        ("alice", D(50)),
        ("bob", D(-100)),
    ]


def test_fast_constructor_builds_an_equal_frozen_update() -> None:
    clock = ManualClock()
    pos = Position("u", "paper", "BTCUSDT")
    pos.apply(fill("BTCUSDT", Side.BUY, "3", "100"))
    fast = _update_of(pos, D("90"), clock.now())
    slow = PositionUpdate("u", "paper", "BTCUSDT", D(3), D(100), D(90), D(-30), D(0), clock.now())
    assert fast == slow and hash(fast) == hash(slow) and type(fast) is PositionUpdate
    with pytest.raises(AttributeError):
        fast.quantity = D(1)  # type: ignore[misc]


def test_ten_thousand_positions_on_one_symbol_one_update_each() -> None:
    clock = ManualClock()
    eng = MarkingEngine(clock)
    for i in range(10_000):
        eng.on_fill(f"u{i}", "paper", fill("BTCUSDT", Side.BUY if i % 2 else Side.SELL, "0.5", "65000"))
    clock.advance(1)
    eng.on_tick("ETHUSDT", D("3500"), clock.now())  # another symbol: touches nothing
    assert eng.flush() == []
    eng.on_tick("BTCUSDT", D("65010"), clock.now())
    ups = eng.flush()
    assert len(ups) == 10_000 and len({u.user_id for u in ups}) == 10_000
    assert sum(u.unrealized_pnl for u in ups) == 0  # half long, half short


def test_chunked_flush_tolerates_fills_and_ticks_between_chunks() -> None:
    clock = ManualClock()
    eng = MarkingEngine(clock)
    for i in range(5_000):
        eng.on_fill(f"u{i}", "paper", fill("BTCUSDT", Side.BUY, "1", "100"))
    eng.on_fill("eve", "paper", fill("ETHUSDT", Side.BUY, "1", "10"))
    clock.advance(1)
    eng.on_tick("BTCUSDT", D("101"), clock.now())
    chunks = eng.flush_chunks(chunk_size=1_000)
    first = next(chunks)
    assert len(first) == 1_000
    emitted = {u.user_id for u in first}
    victim = next(f"u{i}" for i in range(5_000) if f"u{i}" not in emitted)
    closed, _ = eng.on_fill(victim, "paper", fill("BTCUSDT", Side.SELL, "1", "101"))  # closes mid-flush
    assert closed.quantity == 0
    eng.on_tick("ETHUSDT", D("11"), clock.now())  # a tick mid-flush lands in the next flush
    rest = [u for chunk in chunks for u in chunk]
    assert all(len(c) <= 1_000 for c in [first])
    assert len(first) + len(rest) == 4_999 and victim not in {u.user_id for u in rest}
    assert [(u.user_id, u.mark_price) for u in eng.flush()] == [("eve", D(11))]
