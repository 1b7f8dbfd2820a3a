"""The account's pictures and history, read-only: equity snapshots, realized PnL per day (the position fold
over the user's fills, ``shared.equity``), filtered and paged order and trade history, its CSV, and the
figures the order ticket shows before sending."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from gateway.services.orders import decode_cursor, encode_cursor, fill_out
from shared.contracts import order_out
from shared.equity import daily_realized
from shared.errors import InvalidInput
from shared.models import EquitySnapshot, Fill, Order
from shared.orders import FINAL, OPEN, Status
from shared.positions import Fill as PositionFill
from shared.schemas.orders import TradeOut
from shared.schemas.portfolio import (
    DayPnlOut,
    EquityOut,
    EquityPoint,
    OrderHistoryPage,
    TradeHistoryPage,
)

# A status filter's words: each order status, and the two groups GET /api/orders knows.
STATUS_GROUPS: dict[str, frozenset[str]] = {
    "open": frozenset({Status.PENDING, *OPEN}),
    "closed": frozenset(FINAL),
    **{s.value: frozenset({s.value}) for s in Status},
}


@dataclass(frozen=True, slots=True)
class HistoryFilter:
    """Who and what: the symbol already canonical, times as given (``since`` inclusive, ``until`` exclusive)."""

    user_id: str
    mode: str
    symbol: str | None = None
    side: str | None = None
    statuses: frozenset[str] | None = None
    since: datetime | None = None
    until: datetime | None = None

    def __post_init__(self) -> None:
        if self.since is not None and self.until is not None and self.since >= self.until:
            raise InvalidInput(
                "the date range is empty: 'since' must be before 'until'",
                errors=[{"field": "until", "message": "must be after since"}],
            )

    def applied(self, stmt: Select[Any], table: type[Order] | type[Fill], when: Any) -> Select[Any]:
        """``stmt`` narrowed to this filter: the user's rows of the mode, symbol, side, and ``when`` in range."""
        stmt = stmt.where(col(table.user_id) == self.user_id, col(table.mode) == self.mode)
        if self.symbol:
            stmt = stmt.where(col(table.symbol) == self.symbol)
        if self.side:
            stmt = stmt.where(col(table.side) == self.side)
        if self.since:
            stmt = stmt.where(when >= self.since)
        if self.until:
            stmt = stmt.where(when < self.until)
        return stmt


def statuses_of(words: Sequence[str]) -> frozenset[str] | None:
    """The statuses ``?status=`` names (repeated or comma-separated; case-insensitive); None for all."""
    out: set[str] = set()
    for word in (w.strip() for raw in words for w in raw.split(",")):
        if not word:
            continue
        group = STATUS_GROUPS.get(word.upper()) or STATUS_GROUPS.get(word.lower())
        if group is None:
            raise InvalidInput(
                f"unknown status {word!r}; use open, closed or one of {', '.join(s.value for s in Status)}",
                errors=[{"field": "status", "message": "unknown status"}],
            )
        out |= group
    return frozenset(out) or None


async def order_history(
    session: AsyncSession, f: HistoryFilter, *, limit: int, cursor: str | None
) -> OrderHistoryPage:
    """Newest first (by id, which starts with its creation time), ``limit`` per page."""
    stmt = f.applied(select(Order), Order, col(Order.created_at))
    if f.statuses:
        stmt = stmt.where(col(Order.status).in_(sorted(f.statuses)))
    if cursor:
        stmt = stmt.where(col(Order.id) < decode_cursor(cursor))
    rows = list((await session.execute(stmt.order_by(col(Order.id).desc()).limit(limit + 1))).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return OrderHistoryPage(
        items=[order_out(o) for o in rows], next_cursor=encode_cursor(rows[-1].id) if more else None
    )


def _fill_cursor(cursor: str) -> int:
    if not cursor.isdigit() or len(cursor) > 18:
        raise InvalidInput("cursor is not valid", errors=[{"field": "cursor", "message": "malformed"}])
    return int(cursor)


async def trade_history(
    session: AsyncSession, f: HistoryFilter, *, limit: int, cursor: str | None
) -> TradeHistoryPage:
    """Newest first (by the fill's row id: the order they were recorded in), ``limit`` per page."""
    stmt = f.applied(select(Fill), Fill, col(Fill.ts))
    if cursor:
        stmt = stmt.where(col(Fill.id) < _fill_cursor(cursor))
    rows = list((await session.execute(stmt.order_by(col(Fill.id).desc()).limit(limit + 1))).scalars())
    more = len(rows) > limit
    rows = rows[:limit]
    return TradeHistoryPage(
        items=[TradeOut(**fill_out(r).model_dump()) for r in rows],
        next_cursor=str(rows[-1].id) if more else None,
    )


def to_csv(items: Sequence[BaseModel], model: type[BaseModel]) -> str:
    """The items as CSV with the JSON answer's exact values: one column per field, in the model's order;
    each cell is the field's JSON value (amounts in plain digits, times in ISO 8601), null as empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    fields = list(model.model_fields)
    writer.writerow(fields)
    for item in items:
        data: dict[str, Any] = item.model_dump(mode="json")
        writer.writerow([_cell(data.get(name)) for name in fields])
    return out.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


async def equity_curve(
    session: AsyncSession,
    user_id: str,
    mode: str,
    *,
    since: datetime | None,
    until: datetime | None,
    limit: int,
    interval_s: float,
) -> EquityOut:
    """The latest ``limit`` snapshots in the range, oldest first; ``interval_s``: the schedule's."""
    stmt = select(EquitySnapshot).where(
        col(EquitySnapshot.user_id) == user_id, col(EquitySnapshot.mode) == mode
    )
    if since:
        stmt = stmt.where(col(EquitySnapshot.ts) >= since)
    if until:
        stmt = stmt.where(col(EquitySnapshot.ts) < until)
    rows = list(
        (
            await session.execute(
                stmt.order_by(col(EquitySnapshot.ts).desc(), col(EquitySnapshot.id).desc()).limit(limit)
            )
        ).scalars()
    )
    rows.reverse()
    return EquityOut(
        mode=mode,
        interval_s=interval_s,
        quote_asset=rows[-1].quote_asset if rows else None,
        points=[
            EquityPoint(
                ts=r.ts,
                equity=r.equity,
                reason=r.reason,
                unpriced=r.unpriced.split(",") if r.unpriced else [],
            )
            for r in rows
        ],
    )


async def daily_pnl(
    session: AsyncSession, user_id: str, mode: str, *, since: date | None, until: date | None
) -> list[DayPnlOut]:
    """Realized PnL per UTC day in [since, until]: all the user's fills are folded (a day's PnL depends on the
    positions the earlier days left), only the days asked for are answered."""
    rows = (
        await session.execute(
            select(Fill)
            .where(col(Fill.user_id) == user_id, col(Fill.mode) == mode)
            .order_by(col(Fill.ts), col(Fill.id))
        )
    ).scalars()
    fills = (
        PositionFill(r.symbol, r.side, r.quantity, r.price, r.fee or Decimal(0), r.fee_asset or None, ts=r.ts)  # type: ignore[arg-type]
        for r in rows
    )
    return [
        DayPnlOut(day=d.day, realized_pnl=d.realized_pnl, fees=d.fees, trades=d.trades)
        for d in daily_realized(fills)
        if (since is None or d.day >= since) and (until is None or d.day <= until)
    ]
