"""How amounts leave the system: in plain digits, and derived ones at one documented precision.

Every amount a client sees (REST bodies, events, error messages) goes through ``plain``: ``str()`` of a
Decimal writes exponents for small or re-scaled values ("1E-7", "0E-8", "6E+4"), which clients and the web
page would show as they are. Prices and values that are computed rather than given (an average entry price,
an average fill price, unrealized PnL, the cost left after a partial close) would otherwise carry Decimal's 28
significant digits; ``derived`` rounds them (half even) to ``DERIVED_PLACES`` decimal places, the precision
of Binance spot amounts, which is at or beyond every market's tick size and exact for every quantity times
price of the configured markets (see docs/api.md).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

DERIVED_PLACES = 8
DERIVED_QUANTUM = Decimal(1).scaleb(-DERIVED_PLACES)
# What the database keeps (NUMERIC(38, 18) on PostgreSQL): book values computed by a division (the cost a
# partial close takes out of a position) are rounded to it, so both databases hold the same digits.
STORED_PLACES = 18
STORED_QUANTUM = Decimal(1).scaleb(-STORED_PLACES)


def plain(value: Decimal) -> str:
    """Plain digits without trailing zeros: "60000", "0.0000001", "0" (never "6E+4", "1E-7", "0E-8", "-0")."""
    if not value:
        return "0"
    return format(value.normalize(), "f")


def plain_or_none(value: Decimal | None) -> str | None:
    return None if value is None else plain(value)


def derived(value: Decimal) -> Decimal:
    """A computed price or value at the documented precision (``DERIVED_PLACES``, half even).

    The rounding is named rather than taken from the decimal context: ccxt sets the context of the task
    that calls it to ROUND_HALF_UP, so the execution worker rounded positions' averages one way and
    reconciliation (in the gateway) the other (found by benchmarks/chaos.py)."""
    return value.quantize(DERIVED_QUANTUM, rounding=ROUND_HALF_EVEN)


def stored(value: Decimal) -> Decimal:
    """A computed book value at the database's precision (``STORED_PLACES``, half even, named as above)."""
    return value.quantize(STORED_QUANTUM, rounding=ROUND_HALF_EVEN)


def average(total: Decimal, quantity: Decimal) -> Decimal | None:
    """``total / quantity`` (an average price) at the documented precision; None for no quantity."""
    return derived(total / quantity) if quantity else None


__all__ = [
    "DERIVED_PLACES",
    "DERIVED_QUANTUM",
    "STORED_PLACES",
    "STORED_QUANTUM",
    "average",
    "derived",
    "plain",
    "plain_or_none",
    "stored",
]
