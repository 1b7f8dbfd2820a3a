"""Binance's view of our orders: its integer ``orderId`` and the look-ups by it or by clientOrderId.

An order's Binance ``orderId`` is the id of its first status row (``order_events``, written when the order
is accepted, whichever API accepted it, never deleted): a stable, unique, increasing integer for every
order of the one book, with no new column and nothing written on reads."""

from __future__ import annotations

import asyncio
import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from gateway.binance_api.parts import Parts
from shared.binance_compat import binance_ids as binance_ids
from shared.models import Order, OrderEvent


async def by_binance_id(session: AsyncSession, user_id: str, binance_id: int) -> Order | None:
    order_id = (
        await session.execute(select(col(OrderEvent.order_id)).where(col(OrderEvent.id) == binance_id))
    ).scalar_one_or_none()
    if order_id is None:
        return None
    order = (
        await session.execute(select(Order).where(col(Order.id) == order_id, col(Order.user_id) == user_id))
    ).scalar_one_or_none()
    if order is None or (await binance_ids(session, [order.id])).get(order.id) != binance_id:
        return None
    return order


async def by_client_id(session: AsyncSession, user_id: str, client_order_id: str) -> Order | None:
    return (
        await session.execute(
            select(Order).where(col(Order.user_id) == user_id, col(Order.client_order_id) == client_order_id)
        )
    ).scalar_one_or_none()


async def settled(rt: Parts, order_id: str, pending: frozenset[str], timeout_s: float) -> Order:
    """The order once its status has left ``pending`` (the worker matched it), or as it is after
    ``timeout_s``: Binance answers a new order's RESULT/FULL and a cancel with the outcome, our API answers
    at acceptance, so the adapter waits for the one book's worker here (read-only sessions, short polls)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.002
    while True:
        async with rt.read_sessions() as reader:
            order = (await reader.execute(select(Order).where(col(Order.id) == order_id))).scalar_one()
        if order.status not in pending or time.monotonic() >= deadline:
            return order
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
