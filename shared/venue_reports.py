"""What a venue reports about orders, as plain facts: a status change, a fill, an order the exchange has that
TradeBridge never placed. Below the services, so reconciliation's repairs state them as the venues do and hand
them to the execution engine's port (`reconciliation.repair.RepairPort`)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class OrderChange:
    """The venue's view of an order after something happened to it."""

    order_id: str
    status: str
    filled_quantity: Decimal
    cumulative_quote: Decimal
    avg_price: Decimal | None
    reason: str | None = None
    venue_order_id: str | None = None
    venue_seq: int | None = None
    triggered: bool = False  # a stop order's trigger fired (reported with the first change after it)


@dataclass(frozen=True, slots=True)
class FillReport:
    trade_id: str
    order_id: str
    symbol: str
    side: str
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal
    fee: Decimal
    fee_asset: str
    liquidity: str  # MAKER | TAKER
    ts: datetime


@dataclass(frozen=True, slots=True)
class ExternalOrder:
    """An order the exchange has that TradeBridge never placed: recorded (flagged external), never ignored."""

    user_id: str
    venue_order_id: str
    client_order_id: str | None
    symbol: str
    side: str
    type: str
    time_in_force: str
    quantity: Decimal
    price: Decimal | None
    status: str
    filled_quantity: Decimal
    cumulative_quote: Decimal
    avg_price: Decimal | None
    created_at: datetime


__all__ = ["ExternalOrder", "FillReport", "OrderChange"]
