"""Binance's view of our orders: its integer ``orderId`` and the look-ups by it or by clientOrderId, each one
query that answers the order with its ``orderId``.

An order's Binance ``orderId`` is the id of its first status row (``order_events``, written when the order
is accepted, whichever API accepted it, never deleted): a stable, unique, increasing integer for every
order of the one book, with no new column and nothing written on reads. ``ix_order_events_order``
(order_id, id) serves both directions: an order's first row, and whether a row is its order's first."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from sqlalchemy import bindparam, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlmodel import col

from shared.binance_compat import binance_ids as binance_ids
from shared.models import Order, OrderEvent
from shared.schemas.orders import OrderOut


def binance_id_of_order() -> Any:
    """The order's ``orderId`` as a column of a select of ``Order`` (a correlated, indexed subquery)."""
    return (
        select(func.min(OrderEvent.id))
        .where(col(OrderEvent.order_id) == col(Order.id))
        .correlate(Order)
        .scalar_subquery()
    )


def with_binance_ids() -> Any:
    """``select(Order, orderId)``: orders with their Binance id, in one query."""
    return select(Order, binance_id_of_order())


@functools.cache
def _by_binance_id() -> Any:
    earlier = aliased(OrderEvent)
    return (
        select(Order)
        .join(OrderEvent, col(OrderEvent.order_id) == col(Order.id))
        .where(
            col(OrderEvent.id) == bindparam("binance_id"),
            col(Order.user_id) == bindparam("user_id"),
            ~exists().where(
                col(earlier.order_id) == col(OrderEvent.order_id), col(earlier.id) < bindparam("binance_id")
            ),
        )
    )


@functools.cache
def _by_client_id() -> Any:
    return with_binance_ids().where(
        col(Order.user_id) == bindparam("user_id"), col(Order.client_order_id) == bindparam("client_order_id")
    )


@functools.cache
def _by_order_id() -> Any:
    return with_binance_ids().where(col(Order.id) == bindparam("order_id"))


# The look-ups are built once, on first use: building a select and its cache key costs more than running it.


async def by_binance_id(session: AsyncSession, user_id: str, binance_id: int) -> Order | None:
    """The user's order whose first status row is ``binance_id`` (a later row of an order names nothing)."""
    params = {"binance_id": binance_id, "user_id": user_id}
    return (await session.execute(_by_binance_id(), params)).scalar_one_or_none()


async def by_client_id(session: AsyncSession, user_id: str, client_order_id: str) -> tuple[Order, int] | None:
    params = {"user_id": user_id, "client_order_id": client_order_id}
    row = (await session.execute(_by_client_id(), params)).first()
    return (row[0], int(row[1])) if row is not None else None


async def by_order_id(session: AsyncSession, order_id: str) -> tuple[Order, int]:
    row = (await session.execute(_by_order_id(), {"order_id": order_id})).one()
    return row[0], int(row[1])


@functools.cache
def _first_event_id() -> Any:
    return select(func.min(OrderEvent.id)).where(col(OrderEvent.order_id) == bindparam("order_id"))


async def binance_id_of(session: AsyncSession, order_id: str) -> int:
    """One order's ``orderId``."""
    return int((await session.execute(_first_event_id(), {"order_id": order_id})).scalar_one())


def order_from_update(user_id: str, data: Mapping[str, Any] | None) -> Order | None:
    """The order as its ORDER_UPDATE shows it (every field an answer renders), so an answer that waited for
    the update needs no read of the order; None without one (then the caller reads the order)."""
    if data is None:
        return None
    try:
        out = OrderOut.model_validate(data)
    except ValidationError:
        return None
    return Order(
        id=out.order_id,
        user_id=user_id,
        request_hash="",  # not in the update, not in any answer
        client_order_id=out.client_order_id,
        mode=out.mode,
        symbol=out.symbol,
        side=out.side,
        type=out.type,
        time_in_force=out.time_in_force,
        quantity=out.quantity,
        price=out.price,
        stop_price=out.stop_price,
        triggered_at=out.triggered_at,
        status=out.status,
        filled_quantity=out.filled_quantity,
        cumulative_quote=out.cumulative_quote,
        avg_price=out.avg_price,
        reason=out.reason,
        version=out.version,
        created_at=out.created_at,
        updated_at=out.updated_at,
    )
