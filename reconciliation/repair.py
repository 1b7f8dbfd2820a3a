"""Repairs, only on an admin's explicit request for mismatches of one report; each audited (who, when, what).

Every repair goes through the same paths the worker uses (the execution engine's port, `RepairPort`, injected
by the composition root: status machine, order events, outbox events), so a repaired order looks to clients
exactly like a venue update."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from shared.amounts import average
from shared.clock import Clock
from shared.errors import Conflict, InvalidInput
from shared.models import Order, User
from shared.models.reconciliation import ReconciliationMismatch, ReconciliationReport
from shared.orders import FINAL, Status
from shared.outbox import add_outbox
from shared.streams import CommandRouting, order_command
from shared.venue_reports import ExternalOrder, FillReport, OrderChange


class Applied(Protocol):
    orders: list[Order]
    fills: int
    rejected_transitions: list[str]


class RepairPort(Protocol):
    """The execution engine's public port: apply a venue result (status machine, fills, ledger, events) and
    load orders under their row locks, in the caller's transaction."""

    @property
    def clock(self) -> Clock: ...

    @property
    def routing(self) -> CommandRouting: ...

    async def apply(
        self,
        session: AsyncSession,
        *,
        changes: tuple[OrderChange, ...] = (),
        fills: tuple[FillReport, ...] = (),
        external_orders: tuple[ExternalOrder, ...] = (),
    ) -> Applied:
        """Persist these reports as a venue's result is persisted."""
        ...

    async def load_orders(self, session: AsyncSession, ids: list[str]) -> dict[str, Order]: ...


class AuditRecorder(Protocol):
    """Who repaired what (the gateway's auditor)."""

    async def record(
        self,
        session: AsyncSession,
        action: str,
        *,
        actor_id: str | None,
        target: str | None = None,
        **details: Any,
    ) -> None: ...


@dataclass
class RepairOutcome:
    repaired: list[int] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)


class Skip(Exception):
    """This mismatch can't be repaired (now); the reason goes back to the admin."""


async def repair_report(
    session: AsyncSession,
    port: RepairPort,
    auditor: AuditRecorder,
    admin: User,
    report: ReconciliationReport,
    *,
    ids: list[int] | None = None,
    kinds: list[str] | None = None,
) -> RepairOutcome:
    if report.status != "done":
        raise Conflict(f"report {report.id} is {report.status}; only a finished report can be repaired")
    if not ids and not kinds:
        raise InvalidInput("name the mismatch ids or kinds to repair")
    stmt = select(ReconciliationMismatch).where(col(ReconciliationMismatch.report_id) == report.id)
    rows = list(
        (await session.execute(stmt.order_by(col(ReconciliationMismatch.id)).with_for_update())).scalars()
    )
    chosen = [m for m in rows if (ids and m.id in ids) or (kinds and m.kind in kinds)]
    out = RepairOutcome()
    unknown = set(ids or ()) - {m.id for m in rows}
    out.skipped += [{"id": i, "reason": "no such mismatch in this report"} for i in sorted(unknown)]
    for m in chosen:
        assert m.id is not None
        if m.repaired_at is not None:
            out.skipped.append({"id": m.id, "reason": "already repaired"})
            continue
        if m.repair is None:
            out.skipped.append({"id": m.id, "reason": f"{m.kind} has no automatic repair: {m.action}"})
            continue
        try:
            done = await _REPAIRS[m.repair](session, port, m)
        except Skip as exc:
            out.skipped.append({"id": m.id, "reason": str(exc)})
            continue
        m.repaired_at, m.repaired_by = port.clock.now(), admin.id
        session.add(m)
        await auditor.record(
            session,
            "reconciliation.repair",
            actor_id=admin.id,
            target=f"{report.id}/{m.id}",
            kind=m.kind,
            repair=m.repair,
            user_id=m.user_id,
            order_id=m.order_id,
            trade_id=m.trade_id,
            result=done,
        )
        out.repaired.append(m.id)
    await session.flush()
    return out


async def _order(session: AsyncSession, port: RepairPort, order_id: str | None) -> Order:
    order = (await port.load_orders(session, [order_id])).get(order_id or "") if order_id else None
    if order is None:
        raise Skip("the order no longer exists")
    return order


async def _republish(session: AsyncSession, port: RepairPort, m: ReconciliationMismatch) -> str:
    order = await _order(session, port, m.order_id)
    if order.status not in (Status.PENDING, Status.PENDING_CANCEL):
        raise Skip(f"the order is {order.status} now: no longer stuck")
    now = port.clock.now()
    kind = "place" if order.status == Status.PENDING else "cancel"
    add_outbox(
        session,
        port.routing.stream(order.mode, order.symbol),
        order_command(kind, order.id, order.mode, tag=f"recon-{m.id}"),
        now=now,
    )
    order.updated_at = now  # re-published now: stuck again only if this one is not handled either
    session.add(order)
    return f"republished {kind}"


def _avg(cum: Decimal, filled: Decimal) -> Decimal | None:
    return average(cum, filled)


async def _apply(
    session: AsyncSession,
    port: RepairPort,
    *,
    changes: tuple[OrderChange, ...] = (),
    fills: tuple[FillReport, ...] = (),
    external_orders: tuple[ExternalOrder, ...] = (),
) -> Applied:
    applied = await port.apply(session, changes=changes, fills=fills, external_orders=external_orders)
    if applied.rejected_transitions:
        raise Skip("; ".join(applied.rejected_transitions))
    return applied


async def _sync_order(session: AsyncSession, port: RepairPort, m: ReconciliationMismatch) -> str:
    order = await _order(session, port, m.order_id)
    ex = m.details.get("exchange") or {}
    filled, cum = Decimal(ex["filled"]), Decimal(ex["cum_quote"])
    if order.status == ex["status"] and order.filled_quantity == filled:
        return "already in sync"
    change = OrderChange(
        order.id, ex["status"], filled, cum, _avg(cum, filled), venue_order_id=ex["venue_order_id"]
    )
    await _apply(session, port, changes=(change,))
    return f"{ex['status']} filled {ex['filled']}"


def _fill_report(t: dict[str, Any], order_id: str) -> FillReport:
    return FillReport(
        trade_id=str(t["trade_id"]),
        order_id=order_id,
        symbol=t["symbol"],
        side=t["side"],
        price=Decimal(t["price"]),
        quantity=Decimal(t["quantity"]),
        quote_quantity=Decimal(t["quote_quantity"]),
        fee=Decimal(t["fee"]),
        fee_asset=t["fee_asset"],
        liquidity="MAKER" if t["is_maker"] else "TAKER",
        ts=datetime.fromtimestamp(int(t["time_ms"]) / 1000, tz=UTC),
    )


async def _adopt_fill(session: AsyncSession, port: RepairPort, m: ReconciliationMismatch) -> str:
    order = await _order(session, port, m.order_id)
    applied = await _apply(session, port, fills=(_fill_report(m.details["exchange"], order.id),))
    return f"adopted {applied.fills} fill(s)"


async def _adopt_order(session: AsyncSession, port: RepairPort, m: ReconciliationMismatch) -> str:
    ex = m.details["exchange"]
    filled, cum = Decimal(ex["filled"]), Decimal(ex["cum_quote"])
    ext = ExternalOrder(
        user_id=m.user_id or "",
        venue_order_id=ex["venue_order_id"],
        client_order_id=ex["client_order_id"] or None,
        symbol=ex["symbol"],
        side=ex["side"],
        type=ex["type"],
        time_in_force=ex["time_in_force"],
        quantity=Decimal(ex["quantity"]),
        price=Decimal(ex["price"]) if ex["price"] else None,
        status=ex["status"],
        filled_quantity=filled,
        cumulative_quote=cum,
        avg_price=_avg(cum, filled),
        created_at=datetime.fromtimestamp(int(ex["time_ms"]) / 1000, tz=UTC),
    )
    applied = await _apply(session, port, external_orders=(ext,))
    order = applied.orders[0]
    fills = tuple(_fill_report(t, order.id) for t in m.details.get("trades", []))
    if fills:
        await _apply(session, port, fills=fills)
    return f"adopted as order {order.id} with {len(fills)} fill(s)"


async def _close_missing(session: AsyncSession, port: RepairPort, m: ReconciliationMismatch) -> str:
    order = await _order(session, port, m.order_id)
    if order.status in FINAL:
        raise Skip(f"the order is already {order.status}: nothing to close")
    change = OrderChange(
        order.id,
        Status.CANCELED,
        order.filled_quantity,
        order.cumulative_quote,
        order.avg_price,
        reason="not found on the exchange (reconciliation)",
    )
    await _apply(session, port, changes=(change,))
    return "closed as CANCELED"


async def _close_reset(session: AsyncSession, port: RepairPort, m: ReconciliationMismatch) -> str:
    rows = await session.execute(
        select(Order.id).where(
            col(Order.user_id) == m.user_id,
            col(Order.mode) == "testnet",
            col(Order.status).not_in([str(s) for s in FINAL]),
        )
    )
    orders = await port.load_orders(session, list(rows.scalars()))
    changes = tuple(
        OrderChange(
            o.id,
            Status.CANCELED,
            o.filled_quantity,
            o.cumulative_quote,
            o.avg_price,
            reason="testnet reset (reconciliation)",
        )
        for o in orders.values()
    )
    if changes:
        await _apply(session, port, changes=changes)
    return f"closed {len(changes)} open testnet order(s); older history acknowledged as reset"


_REPAIRS = {
    "republish": _republish,
    "sync_order": _sync_order,
    "adopt_fill": _adopt_fill,
    "adopt_order": _adopt_order,
    "close_missing": _close_missing,
    "close_reset": _close_reset,
}
