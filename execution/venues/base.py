"""The venue port: what the execution worker asks of a paper or exchange venue, and what comes back.

A venue reports what happened as immutable facts (order state changes, fills, ledger entries); the worker
persists them in one transaction with the outbox events. Venues never touch the database themselves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from shared.paper.ledger import JournalEntry
from shared.venue_reports import ExternalOrder, FillReport, OrderChange


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """An order as the worker hands it to a venue."""

    order_id: str  # TradeBridge's id; also the venue's client order id
    user_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    quantity: Decimal
    price: Decimal | None
    status: str
    filled_quantity: Decimal = Decimal(0)
    reserved_asset: str | None = None
    reserved_amount: Decimal | None = None
    reserved_price_cap: Decimal | None = None
    venue_order_id: str | None = None
    stop_price: Decimal | None = None  # the four stop types (STOP_LOSS, ..._LIMIT, TAKE_PROFIT, ..._LIMIT)
    triggered: bool = False  # a stop order whose trigger fired (it works as its LIMIT/MARKET order)
    replaces: str | None = None  # cancel-replace: the order this one replaces (its order_id)


@dataclass(frozen=True, slots=True)
class BalanceLine:
    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class BalanceReport:
    """A user's balances as an exchange venue pushed them (the assets that moved), for a BALANCE_UPDATE event.
    Paper balances are not reported this way: they move through journal entries."""

    user_id: str
    mode: str
    balances: tuple[BalanceLine, ...]


@dataclass(frozen=True, slots=True)
class VenueResult:
    changes: tuple[OrderChange, ...] = ()
    fills: tuple[FillReport, ...] = ()
    journal: tuple[JournalEntry, ...] = ()
    public_trades: tuple[dict[str, object], ...] = field(default=())
    touched_symbols: frozenset[str] = frozenset()
    external_orders: tuple[ExternalOrder, ...] = ()
    balances: tuple[BalanceReport, ...] = ()

    def __add__(self, other: VenueResult) -> VenueResult:
        return VenueResult(
            self.changes + other.changes,
            self.fills + other.fills,
            self.journal + other.journal,
            self.public_trades + other.public_trades,
            self.touched_symbols | other.touched_symbols,
            self.external_orders + other.external_orders,
            self.balances + other.balances,
        )

    def __bool__(self) -> bool:
        return bool(
            self.changes
            or self.fills
            or self.journal
            or self.external_orders
            or self.public_trades
            or self.balances
        )


EMPTY = VenueResult()

ResultSink = Callable[[VenueResult], Awaitable[None]]


class Venue(Protocol):
    name: str

    async def place(self, order: VenueOrder) -> VenueResult: ...

    async def cancel(self, order: VenueOrder) -> VenueResult: ...

    async def replace(self, old: VenueOrder, new: VenueOrder) -> VenueResult:
        """Cancel `old` and place `new` (its `replaces` = old) as one operation: afterwards at most one is live,
        and if the cancel fails `new` is REJECTED and `old` stands."""
        ...


# The reports themselves are shared.venue_reports' (reconciliation states them too); re-exported for the venues.
__all__ = [
    "EMPTY",
    "BalanceLine",
    "BalanceReport",
    "ExternalOrder",
    "FillReport",
    "OrderChange",
    "ResultSink",
    "Venue",
    "VenueOrder",
    "VenueResult",
]
