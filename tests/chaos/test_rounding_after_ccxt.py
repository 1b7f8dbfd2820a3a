"""Found by the chaos run (benchmarks/chaos.py): reconciliation reported a testnet user's position as not the
fold of its fills, one unit apart in the 8th place (63659.68414063 against 63659.68414062). ccxt's precision
helper sets the decimal context of the task that calls it to ROUND_HALF_UP, and the execution worker calls it
for testnet orders; averages rounded with the context's rounding then came out half up in the worker and half
even everywhere else. Derived and stored amounts name their rounding, so the context does not matter."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, getcontext, localcontext

from ccxt.base.decimal_to_precision import ROUND, decimal_to_precision

from shared.amounts import derived, stored
from shared.positions import Fill, PositionBook, Side

TS = datetime(2026, 1, 1, tzinfo=UTC)


def _fold() -> tuple[Decimal, Decimal]:
    book = PositionBook()
    for qty, price in (
        ("0.00096", "60030"),
        ("0.00114", "64915.55"),
        ("0.00081", "64855.35"),
        ("0.00093", "64825.62"),
    ):
        pos, _ = book.apply_fill(
            "u",
            "testnet",
            Fill("BTCUSDT", Side.BUY, Decimal(qty), Decimal(price), Decimal(0), "USDT", "USDT", ts=TS),
        )
    return pos.quantity, pos.avg_entry_price


def test_amounts_round_half_even_whatever_ccxt_left_in_the_context() -> None:
    expected = _fold()
    assert expected == (Decimal("0.00384"), Decimal("63659.68414062"))  # 63659.684140625, half even
    with localcontext():
        decimal_to_precision("1.5", ROUND, 0)  # what ccxt does when it formats an amount
        assert getcontext().rounding == ROUND_HALF_UP  # the cause: ccxt leaves it in the caller's context
        assert _fold() == expected
        assert derived(Decimal("0.000000005")) == Decimal("0E-8")
        assert stored(Decimal("1.0000000000000000005")) == Decimal("1.000000000000000000")
