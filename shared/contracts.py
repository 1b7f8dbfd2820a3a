"""Payloads of the events services exchange (ORDER_UPDATE, POSITION_UPDATE): one definition below every
service, so the gateway (acceptance), execution (fills) and reconciliation (repairs) publish the same shape."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from shared.amounts import derived, plain, plain_or_none
from shared.models import Order, Position
from shared.schemas.orders import OrderOut


def order_out(o: Order) -> OrderOut:
    """An order as the API and the ORDER_UPDATE event show it."""
    return OrderOut(
        order_id=o.id,
        client_order_id=o.client_order_id,
        mode=o.mode,
        symbol=o.symbol,
        side=o.side,
        type=o.type,
        time_in_force=o.time_in_force,
        quantity=o.quantity,
        price=o.price,
        status=o.status,
        filled_quantity=o.filled_quantity,
        cumulative_quote=o.cumulative_quote,
        avg_price=o.avg_price,
        reason=o.reason,
        external=o.external,
        stop_price=o.stop_price,
        triggered_at=o.triggered_at,
        replaces=o.replaces,
        version=o.version,
        created_at=o.created_at,
        updated_at=o.updated_at,
    )


def order_event_payload(o: Order) -> dict[str, Any]:
    """The ORDER_UPDATE data."""
    return order_out(o).model_dump(mode="json")


def position_payload(row: Position, mark: Decimal | None, *, source: str) -> dict[str, object]:
    """The POSITION_UPDATE data (and the REST shape): marked when a mark is known. Amounts in plain digits;
    unrealized PnL at the documented precision (shared.amounts)."""
    mark_price = mark if mark is not None else (row.avg_entry_price if row.quantity else None)
    unrealized = derived(row.quantity * mark_price - row.cost_basis) if mark_price is not None else Decimal(0)
    return {
        "symbol": row.symbol,
        "mode": row.mode,
        "quantity": plain(row.quantity),
        "avg_entry_price": plain(row.avg_entry_price),
        "mark_price": plain_or_none(mark_price),
        "unrealized_pnl": plain(unrealized),
        "realized_pnl": plain(row.realized_pnl),
        "cost_basis": plain(row.cost_basis),
        "fees_paid": plain(row.fees_paid),
        "updated_at": row.updated_at.isoformat(),
        "source": source,
    }
