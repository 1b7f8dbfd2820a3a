"""Weighted-average positions: hand-checked cases, then the equity identity under random fills."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.positions import Fill, Position, PositionBook, Side

D = Decimal


def buy(qty: str, price: str, **kw: object) -> Fill:
    return Fill("BTCUSDT", Side.BUY, D(qty), D(price), **kw)  # type: ignore[arg-type]


def sell(qty: str, price: str, **kw: object) -> Fill:
    return Fill("BTCUSDT", Side.SELL, D(qty), D(price), **kw)  # type: ignore[arg-type]


def pos_after(*fills: Fill) -> Position:
    pos = Position("u1", "paper", "BTCUSDT")
    for f in fills:
        pos.apply(f)
    return pos


def test_add_to_long_averages_the_entry() -> None:
    pos = pos_after(buy("1", "100"), buy("3", "200"))
    assert pos.quantity == 4
    assert pos.avg_entry_price == D("175")
    assert pos.realized_pnl == 0
    assert pos.unrealized_pnl(D("180")) == D("20")


def test_partial_close_realizes_only_the_closed_part_and_keeps_the_average() -> None:
    pos = pos_after(buy("4", "175"))
    effect = pos.apply(sell("1", "200"))
    assert effect.realized_pnl == D("25")
    assert effect.closed_quantity == 1 and effect.opened_quantity == 0
    assert pos.quantity == 3
    assert pos.avg_entry_price == D("175")
    assert pos.realized_pnl == D("25")


def test_full_close_goes_flat_and_keeps_realized() -> None:
    pos = pos_after(buy("2", "100"), sell("2", "90"))
    assert pos.quantity == 0 and pos.avg_entry_price == 0 and pos.cost == 0
    assert pos.realized_pnl == D("-20")
    assert pos.unrealized_pnl(D("12345")) == 0


def test_flip_realizes_the_closing_part_only_and_opens_the_rest_at_the_fill_price() -> None:
    pos = pos_after(buy("1", "100"))
    effect = pos.apply(sell("3", "120"))
    # Closing 1 long at 120 realizes +20; the other 2 open a short at 120, nothing realized on them.
    assert effect.realized_pnl == D("20")
    assert effect.closed_quantity == 1 and effect.opened_quantity == 2
    assert pos.quantity == D("-2")
    assert pos.avg_entry_price == D("120")
    assert pos.unrealized_pnl(D("110")) == D("20")  # short gains when the price falls


def test_short_open_add_and_cover() -> None:
    pos = pos_after(sell("1", "100"), sell("1", "80"))
    assert pos.quantity == D("-2") and pos.avg_entry_price == D("90")
    assert pos.unrealized_pnl(D("95")) == D("-10")
    pos.apply(buy("2", "70"))
    assert pos.realized_pnl == D("40") and pos.quantity == 0


def test_flip_short_to_long() -> None:
    pos = pos_after(sell("2", "50"))
    pos.apply(buy("5", "40"))
    assert pos.realized_pnl == D("20")
    assert pos.quantity == D("3") and pos.avg_entry_price == D("40")


def test_fee_in_quote_reduces_realized() -> None:
    pos = pos_after(buy("1", "100", fee=D("0.1")))
    assert pos.realized_pnl == D("-0.1") and pos.avg_entry_price == D("100")
    pos.apply(sell("1", "110", fee=D("0.11"), fee_asset="USDT"))
    assert pos.realized_pnl == D("9.79")
    assert pos.fees_paid == D("0.21")


def test_fee_in_base_reduces_the_quantity_received_and_is_expensed_at_the_fill_price() -> None:
    pos = pos_after(buy("1", "100", fee=D("0.001"), fee_asset="BTC"))
    assert pos.quantity == D("0.999")
    assert pos.avg_entry_price == D("100")
    assert pos.realized_pnl == D("-0.1")
    # A sell with a base fee removes qty + fee from the position.
    pos.apply(sell("0.5", "100", fee=D("0.001"), fee_asset="BTC"))
    assert pos.quantity == D("0.498")
    assert pos.realized_pnl == D("-0.2")


def test_fee_in_third_asset_converted_when_a_price_is_given_else_recorded() -> None:
    pos = pos_after(buy("1", "100", fee=D("0.01"), fee_asset="BNB", fee_asset_price=D("600")))
    assert pos.realized_pnl == D("-6") and pos.quantity == 1
    pos.apply(buy("1", "100", fee=D("0.02"), fee_asset="bnb"))
    assert pos.realized_pnl == D("-6")
    assert pos.unconverted_fees == {"BNB": D("0.02")}
    assert pos.snapshot().unconverted_fees == (("BNB", D("0.02")),)


def test_fill_validation_and_side_coercion() -> None:
    with pytest.raises(ValueError):
        Fill("BTCUSDT", Side.BUY, D("0"), D("1"))
    with pytest.raises(ValueError):
        Fill("BTCUSDT", Side.BUY, D("1"), D("-1"))
    with pytest.raises(ValueError):
        Fill("BTCUSDT", Side.BUY, D("1"), D("1"), fee=D("-0.1"))
    with pytest.raises(ValueError):
        Fill("BTCUSDT", "HOLD", D("1"), D("1"))  # type: ignore[arg-type]
    assert Fill("BTCUSDT", "sell", D("1"), D("1")).side is Side.SELL  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Fill("BTCUSDT", Side.BUY, D("1"), D("1"), quote_asset="EUR").assets()
    assert Fill("ETHBTC", Side.BUY, D("1"), D("1")).assets() == ("ETH", "BTC")


def test_book_keys_positions_by_user_mode_symbol_and_restores_snapshots() -> None:
    book = PositionBook()
    book.apply_fill("u1", "paper", buy("1", "100"))
    book.apply_fill("u1", "testnet", buy("2", "100"))
    book.apply_fill("u2", "paper", Fill("BTC/USDT", Side.SELL, D("1"), D("100")))
    assert [(s.user_id, s.mode, s.quantity) for s in book.positions()] == [
        ("u1", "paper", D(1)),
        ("u1", "testnet", D(2)),
        ("u2", "paper", D(-1)),
    ]
    snap = book.positions("u1", "testnet")[0]
    other = PositionBook()
    restored = other.restore(snap)
    assert restored.snapshot() == snap


# --- property: realized + unrealized == change in mark-to-market equity ------------------------

prices = st.decimals(min_value=D("0.01"), max_value=D("100000"), places=2)
qtys = st.decimals(min_value=D("0.00000001"), max_value=D("50"), places=8)
fee_kinds = st.sampled_from(["none", "quote", "base", "bnb-priced", "bnb-unpriced"])
fill_specs = st.tuples(
    st.sampled_from([Side.BUY, Side.SELL]),
    qtys,
    prices,
    fee_kinds,
    st.decimals(min_value=D("0"), max_value=D("0.002"), places=6),
)


@settings(max_examples=300, deadline=None)
@given(fills=st.lists(fill_specs, min_size=1, max_size=25), mark=prices, bnb_price=prices)
def test_realized_plus_unrealized_equals_equity_change(
    fills: list[tuple[Side, Decimal, Decimal, str, Decimal]], mark: Decimal, bnb_price: Decimal
) -> None:
    pos = Position("u", "paper", "BTCUSDT")
    cash = D(0)  # quote balance relative to the start
    base = D(0)  # base holdings relative to the start
    bnb_converted = D(0)  # BNB spent on fees that carried a conversion price (valued at that price)
    unconverted = D(0)
    for side, qty, price, kind, fee_rate in fills:
        signed = qty if side is Side.BUY else -qty
        cash -= signed * price
        base += signed
        fee = D(0)
        kw: dict[str, object] = {}
        if kind == "quote":
            fee = (qty * price * fee_rate).quantize(D("0.00000001"))
            cash -= fee
        elif kind == "base":
            fee = (qty * fee_rate).quantize(D("0.00000001"))
            base -= fee
            kw["fee_asset"] = "BTC"
        elif kind == "bnb-priced":
            fee = (qty * fee_rate).quantize(D("0.00000001"))
            bnb_converted -= fee * bnb_price
            kw.update(fee_asset="BNB", fee_asset_price=bnb_price)
        elif kind == "bnb-unpriced":
            fee = (qty * fee_rate).quantize(D("0.00000001"))
            unconverted += fee
            kw["fee_asset"] = "BNB"
        pos.apply(Fill("BTCUSDT", side, qty, price, fee=fee, **kw))  # type: ignore[arg-type]

        assert pos.quantity == base  # the position is exactly what we hold
        equity_change = cash + base * price + bnb_converted  # marked at the last fill price
        pnl = pos.realized_pnl + pos.unrealized_pnl(price)
        assert abs(pnl - equity_change) <= D("1e-12") * (1 + abs(equity_change) + abs(cash))

    equity_change = cash + base * mark + bnb_converted
    pnl = pos.realized_pnl + pos.unrealized_pnl(mark)
    assert abs(pnl - equity_change) <= D("1e-12") * (1 + abs(equity_change) + abs(cash))
    assert pos.unconverted_fees.get("BNB", D(0)) == unconverted
    if pos.quantity:
        # avg_entry_price is rounded to 8 places (shared.amounts.derived): off by half a unit of the 8th place
        assert abs(pos.unrealized_pnl(mark) - pos.quantity * (mark - pos.avg_entry_price)) <= abs(
            pos.quantity
        ) * D("0.5E-8") + D("1e-12") * (1 + abs(pos.cost))
    else:
        assert pos.avg_entry_price == 0 and pos.cost == 0
