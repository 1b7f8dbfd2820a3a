"""The account's pictures, pure and exact: its value in one quote asset from balances and prices (the equity
curve's points), and realized PnL per day from its fills (the bars), through the same position fold that
books the positions (``shared.positions``), so the days add up to the positions' realized PnL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from shared.positions import Fill, PositionBook

ZERO = Decimal(0)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Valuation:
    """What an account is worth in ``quote``; ``unpriced`` are assets held that no price converts (left out,
    and named, rather than counted as zero silently)."""

    quote: str
    equity: Decimal
    unpriced: tuple[str, ...] = ()


def valuation_quote(pairs: Iterable[tuple[str, str]]) -> str:
    """The asset accounts are valued in: the quote asset most markets share (ties: alphabetical)."""
    counts = Counter(quote for _, quote in pairs)
    if not counts:
        raise ValueError("no markets to value accounts with")
    return min(counts, key=lambda q: (-counts[q], q))


def asset_prices(
    quote: str, pairs: Mapping[str, tuple[str, str]], last: Mapping[str, Decimal]
) -> dict[str, Decimal]:
    """Each base asset's price in ``quote`` from the last prices of the markets quoted in it."""
    out: dict[str, Decimal] = {}
    for symbol, (base, q) in pairs.items():
        price = last.get(symbol)
        if q == quote and price is not None and price > 0:
            out[base] = price
    return out


def value_account(holdings: Mapping[str, Decimal], prices: Mapping[str, Decimal], quote: str) -> Valuation:
    """Σ amount x price over the assets held (free + locked), the quote asset at 1."""
    equity = ZERO
    unpriced = []
    for asset, amount in sorted(holdings.items()):
        if not amount:
            continue
        if asset == quote:
            equity += amount
        elif asset in prices:
            equity += amount * prices[asset]
        else:
            unpriced.append(asset)
    return Valuation(quote, equity, tuple(unpriced))


def interval_start(ts: datetime, interval_s: float) -> datetime:
    """The start of the fixed interval ``ts`` falls in (intervals counted from the Unix epoch, so every
    process agrees on them and a snapshot taken twice has one key)."""
    micros = int(interval_s * 1_000_000)
    if micros <= 0:
        raise ValueError("interval must be positive")
    elapsed = (ts - _EPOCH) // timedelta(microseconds=1)
    return _EPOCH + timedelta(microseconds=elapsed - elapsed % micros)


@dataclass(frozen=True, slots=True)
class DayPnl:
    """One UTC day: the realized PnL its fills booked (fees already deducted), the fees, the fill count."""

    day: date
    realized_pnl: Decimal
    fees: Decimal
    trades: int


def daily_realized(fills: Iterable[Fill]) -> list[DayPnl]:
    """Realized PnL per UTC day of one account's fills in execution order (each with its ``ts``). The fold is
    the positions' own, so Σ days = the positions' realized PnL; a fill's PnL counts on its own day."""
    book = PositionBook()
    days: dict[date, tuple[Decimal, Decimal, int]] = {}
    for fill in fills:
        if fill.ts is None:
            raise ValueError("a fill without a time has no day")
        pos = book.get_or_create("", "", fill.symbol)
        fees_before = pos.fees_paid
        effect = pos.apply(fill)
        day = fill.ts.astimezone(UTC).date()
        realized, fees, count = days.get(day, (ZERO, ZERO, 0))
        days[day] = (realized + effect.realized_pnl, fees + pos.fees_paid - fees_before, count + 1)
    return [DayPnl(d, r, f, n) for d, (r, f, n) in sorted(days.items())]
