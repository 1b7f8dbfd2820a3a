"""A price older than the threshold is flagged stale and never handed out for fills."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from pricefeed.domain.staleness import PriceBook, StalePrice
from pricefeed.domain.ticks import Tick
from shared.clock import ManualClock
from shared.errors import Unavailable


def test_fresh_then_stale_then_fresh_again() -> None:
    clock = ManualClock()
    book = PriceBook(clock, stale_after=timedelta(seconds=10))
    assert book.fresh_price("BTCUSDT") is None and book.is_stale("BTCUSDT")
    with pytest.raises(StalePrice, match="no price yet"):
        book.require_fresh("BTCUSDT")

    book.update(Tick("BTCUSDT", Decimal("65000"), clock.now(), "test"))
    clock.advance(10)
    assert book.fresh_price("BTC/USDT") == Decimal("65000")  # exactly at the threshold: still fresh
    assert book.require_fresh("BTCUSDT") == Decimal("65000")

    clock.advance(0.001)
    mark = book.mark("BTCUSDT")
    assert mark is not None and mark.stale and mark.age > timedelta(seconds=10)
    assert book.fresh_price("BTCUSDT") is None
    assert book.last_price("BTCUSDT") == Decimal("65000")  # still visible for display, flagged
    with pytest.raises(StalePrice) as err:
        book.require_fresh("BTCUSDT")
    assert isinstance(err.value, Unavailable) and err.value.status == 503 and "10.0s old" in err.value.detail

    book.update(Tick("BTCUSDT", Decimal("65100"), clock.now(), "test"))
    assert book.fresh_price("BTCUSDT") == Decimal("65100")


def test_a_stuck_upstream_timestamp_is_stale_even_if_delivered_now() -> None:
    clock = ManualClock()
    book = PriceBook(clock, stale_after=timedelta(seconds=5))
    book.update(Tick("ETHUSDT", Decimal("3500"), clock.now() - timedelta(seconds=6), "test"))
    assert book.fresh_price("ETHUSDT") is None


def test_out_of_order_ticks_do_not_move_the_price_back() -> None:
    clock = ManualClock()
    book = PriceBook(clock)
    assert book.update(Tick("BNBUSDT", Decimal("600"), clock.now(), "a"))
    assert not book.update(Tick("BNBUSDT", Decimal("1"), clock.now() - timedelta(seconds=1), "b"))
    assert book.fresh_price("BNBUSDT") == Decimal("600")
    assert book.symbols() == ["BNBUSDT"]


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError):
        PriceBook(ManualClock(), stale_after=timedelta(0))
