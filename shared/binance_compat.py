"""Binance's spellings of our data, shared by the Binance-compatible REST API (``gateway.binance_api``) and its
WebSocket side (``events.binance_ws``), so both show one order with the same ``orderId``, the same amounts and
the same depth update ids.

- Amounts are plain digits with eight decimals (``0.00100000``), times epoch milliseconds.
- An order's ``orderId`` is the id of its first status row (``order_events``, written when the order is
  accepted, whichever API accepted it, never deleted); a trade's id is its fill row's id.
- A depth snapshot's update id is its build time in microseconds (``ts`` in the snapshot the paper book
  publishes to the market data store and on ``market.depth``): REST ``depth``'s ``lastUpdateId`` and the diff
  stream's ``U``/``u`` count on the same clock, so a client can sync one with the other.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from shared.models import Fill, OrderEvent

EIGHT = Decimal("0.00000001")
# Our statuses as Binance names them: an order accepted but not yet at the paper book is already NEW there.
STATUS = {"PENDING": "NEW"}


def amount(value: Decimal | None) -> str:
    """Plain digits, eight decimals (``0.00100000``); never exponent notation."""
    if value is None:
        value = Decimal(0)
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent >= -8:  # more decimals than eight are shown, never rounded away
        value = value.quantize(EIGHT)
    return format(value, "f")


def millis(ts: datetime | None) -> int:
    return int(ts.timestamp() * 1000) if ts is not None else 0


def binance_status(status: str) -> str:
    return STATUS.get(status, status)


def depth_update_id(snapshot: Mapping[str, Any] | None) -> int:
    """The update id of a published depth snapshot (its ``ts`` in microseconds; 0 if it has none)."""
    raw = snapshot.get("ts") if snapshot else None
    if not isinstance(raw, str):
        return 0
    try:
        ts = datetime.fromisoformat(raw)
    except ValueError:
        return 0
    return int(ts.timestamp()) * 1_000_000 + ts.microsecond


async def binance_ids(session: AsyncSession, order_ids: Iterable[str]) -> dict[str, int]:
    """Our order ids -> their Binance ``orderId``."""
    ids = list(order_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(col(OrderEvent.order_id), func.min(OrderEvent.id))
        .where(col(OrderEvent.order_id).in_(ids))
        .group_by(col(OrderEvent.order_id))
    )
    return {order_id: int(first) for order_id, first in rows.all() if first is not None}


async def fill_ids(session: AsyncSession, order_id: str) -> dict[str, int]:
    """An order's venue trade ids -> its fill rows' ids (Binance's ``tradeId``)."""
    rows = await session.execute(
        select(col(Fill.trade_id), col(Fill.id)).where(col(Fill.order_id) == order_id)
    )
    return {trade_id: int(row_id) for trade_id, row_id in rows.all() if row_id is not None}
