"""The account's pictures' arithmetic, pure (shared.equity): an account's value, the interval grid, and
realized PnL per day, whose days add up to the position fold's realized PnL."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.equity import (
    DayPnl,
    asset_prices,
    daily_realized,
    interval_start,
    valuation_quote,
    value_account,
)
from shared.positions import Fill, PositionBook, Side

T0 = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)

amounts = st.decimals(min_value=0, max_value=10**6, places=8, allow_nan=False, allow_infinity=False)
holdings = st.dictionaries(st.sampled_from(["USDT", "BTC", "ETH", "DOGE"]), amounts, max_size=4)
PRICES = {"BTC": Decimal("50000.5"), "ETH": Decimal("2500.25")}


def test_an_account_is_its_quote_plus_each_asset_at_its_price() -> None:
    v = value_account({"USDT": Decimal("100"), "BTC": Decimal("0.5"), "ETH": Decimal(0)}, PRICES, "USDT")
    assert v.equity == Decimal("25100.25") and v.unpriced == () and v.quote == "USDT"


def test_an_asset_without_a_price_is_named_not_counted_as_zero() -> None:
    v = value_account({"USDT": Decimal("1"), "DOGE": Decimal("7")}, PRICES, "USDT")
    assert v.equity == Decimal("1") and v.unpriced == ("DOGE",)


@settings(deadline=None)  # a loaded machine; the property, not the speed, is tested
@given(holdings, holdings)
def test_value_is_additive_over_holdings(a: dict[str, Decimal], b: dict[str, Decimal]) -> None:
    both = {k: a.get(k, Decimal(0)) + b.get(k, Decimal(0)) for k in a.keys() | b.keys()}
    va, vb, vboth = (value_account(h, PRICES, "USDT") for h in (a, b, both))
    assert vboth.equity == va.equity + vb.equity
    assert set(vboth.unpriced) == set(va.unpriced) | set(vb.unpriced)


def test_prices_come_from_the_markets_quoted_in_the_valuation_asset() -> None:
    pairs = {"BTCUSDT": ("BTC", "USDT"), "ETHBTC": ("ETH", "BTC"), "BNBUSDT": ("BNB", "USDT")}
    last = {"BTCUSDT": Decimal("60000"), "ETHBTC": Decimal("0.05"), "BNBUSDT": Decimal(0)}
    assert valuation_quote(pairs.values()) == "USDT"
    assert asset_prices("USDT", pairs, last) == {"BTC": Decimal("60000")}  # no zero price, no cross rate
    with pytest.raises(ValueError):
        valuation_quote([])


@settings(deadline=None)
@given(
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)),
    st.sampled_from([0.25, 1, 60, 300, 3600]),
)
def test_interval_start_is_on_the_grid_and_at_most_one_interval_back(ts: datetime, interval: float) -> None:
    start = interval_start(ts, interval)
    assert timedelta(0) <= ts - start < timedelta(seconds=interval)
    assert interval_start(start, interval) == start  # every process computes the same key
    assert interval_start(start + timedelta(seconds=interval), interval) == start + timedelta(
        seconds=interval
    )


def test_realized_pnl_per_day_books_each_fill_on_its_day() -> None:
    fills = [
        Fill("BTCUSDT", Side.BUY, Decimal("1"), Decimal("100"), Decimal("0.1"), ts=T0),
        Fill(
            "BTCUSDT", Side.SELL, Decimal("0.5"), Decimal("110"), Decimal("0.055"), ts=T0 + timedelta(hours=1)
        ),
        Fill(
            "BTCUSDT", Side.SELL, Decimal("0.5"), Decimal("90"), Decimal("0.045"), ts=T0 + timedelta(days=1)
        ),
    ]
    assert daily_realized(fills) == [
        DayPnl(date(2026, 12, 1), Decimal("4.845"), Decimal("0.155"), 2),  # -0.1 + 5 - 0.055
        DayPnl(date(2026, 12, 2), Decimal("-5.045"), Decimal("0.045"), 1),  # -5 - 0.045
    ]


def test_a_fill_without_a_time_is_refused() -> None:
    with pytest.raises(ValueError):
        daily_realized([Fill("BTCUSDT", Side.BUY, Decimal("1"), Decimal("100"))])


fill_specs = st.lists(
    st.tuples(
        st.sampled_from(["BTCUSDT", "ETHUSDT"]),
        st.sampled_from(["BUY", "SELL"]),
        st.decimals(min_value=Decimal("0.001"), max_value=5, places=3),
        st.decimals(min_value=1, max_value=100000, places=2),
        st.decimals(min_value=0, max_value=5, places=4),
        st.integers(min_value=0, max_value=5 * 24 * 60),  # minutes after T0
    ),
    max_size=40,
)


@settings(deadline=None)
@given(fill_specs)
def test_the_days_add_up_to_the_positions_realized_pnl_and_fees(specs: list[tuple]) -> None:
    specs = sorted(specs, key=lambda s: s[5])
    fills = [Fill(sym, side, q, p, fee, ts=T0 + timedelta(minutes=m)) for sym, side, q, p, fee, m in specs]
    days = daily_realized(fills)
    book = PositionBook()
    for f in fills:
        book.apply_fill("u", "paper", f)
    positions = book.positions()
    assert sum((d.realized_pnl for d in days), Decimal(0)) == sum(
        (p.realized_pnl for p in positions), Decimal(0)
    )
    assert sum((d.fees for d in days), Decimal(0)) == sum((f.fee for f in fills), Decimal(0))
    assert sum(d.trades for d in days) == len(fills)
    assert [d.day for d in days] == sorted({f.ts.date() for f in fills if f.ts})
