"""Persisting what venues report: order status changes (through the status machine), fills, ledger entries
and external orders, with their private events written to the outbox in the same transaction."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple, cast

import structlog
from sqlalchemy import (
    ARRAY,
    Insert,
    TextClause,
    Update,
    and_,
    any_,
    bindparam,
    func,
    insert,
    text,
    tuple_,
    update,
)
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select

from execution.venues.base import ExternalOrder, FillReport, OrderChange, VenueResult
from shared.amounts import plain
from shared.clock import Clock
from shared.contracts import order_event_payload, position_payload
from shared.db import detached_rows, exact_amount, pg_fetch, pg_json, upsert_insert
from shared.ids import new_id
from shared.ledger_store import (
    BalanceView,
    Movement,
    SqlLedger,
    balance_payload,
    pg_apply_ctes,
    pg_balance_payload,
)
from shared.metrics import ORDER_EVENTS
from shared.models import Fill, Order, OrderEvent, Position, ProcessedCommand
from shared.orders import FINAL, IllegalTransition, Status, check_transition
from shared.outbox import add_outbox_row, outbox_param, outbox_written, private_row, write_outbox
from shared.positions import Fill as PositionFill
from shared.positions import PositionBook, PositionSnapshot
from shared.positions import Side as PositionSide
from shared.streams import CommandRouting
from shared.symbols import split_symbol

log = structlog.get_logger(__name__)


@dataclass
class Applied:
    """What a result changed, for the caller's follow-up (metrics, market data)."""

    orders: list[Order] = field(default_factory=list)
    fills: int = 0
    rejected_transitions: list[str] = field(default_factory=list)


def next_status(current: str, reported: str) -> str:
    """A resting order with a cancel in flight stays PENDING_CANCEL while fills arrive."""
    if current == Status.PENDING_CANCEL and reported in (Status.NEW, Status.PARTIALLY_FILLED):
        return Status.PENDING_CANCEL
    return reported


@dataclass(frozen=True, slots=True)
class EnginePort:
    """The engine's public port for other services (reconciliation's repairs, through the composition root):
    a change made through it is persisted exactly as a venue update is."""

    clock: Clock
    routing: CommandRouting  # where a republished command goes

    async def apply(
        self,
        session: AsyncSession,
        *,
        changes: tuple[OrderChange, ...] = (),
        fills: tuple[FillReport, ...] = (),
        external_orders: tuple[ExternalOrder, ...] = (),
    ) -> Applied:
        """Reports stated by another service (shared.venue_reports), persisted as a venue's result."""
        result = VenueResult(changes=changes, fills=fills, external_orders=external_orders)
        return await apply_result(session, self.clock, result)

    async def load_orders(self, session: AsyncSession, ids: list[str]) -> dict[str, Order]:
        return await load_orders(session, ids)


async def load_orders(session: AsyncSession, ids: Iterable[str], *, lock: bool = True) -> dict[str, Order]:
    ids = sorted(set(ids))
    if not ids:
        return {}
    stmt = select(Order).where(col(Order.id).in_(ids)).order_by(col(Order.id))
    if lock:
        stmt = stmt.with_for_update()
    return {
        o.id: o for o in (await session.execute(stmt.execution_options(populate_existing=True))).scalars()
    }


PositionKey = tuple[str, str, str]  # (user_id, mode, symbol)


@dataclass(frozen=True, slots=True)
class HeldPositions:
    """The positions of a batch's orders, read and locked with the orders (``mark_and_load`` on PostgreSQL):
    ``keys`` every (user, mode, symbol) of the orders, ``rows`` those that exist. A fill of one of these keys
    needs no statement of its own to lock its position: it goes in with the batch's writes (``apply_result``)."""

    keys: frozenset[PositionKey]
    rows: Mapping[PositionKey, Any]


class Marked(NamedTuple):
    """``mark_and_load``'s answer: the commands not marked before, the orders, their positions where read."""

    fresh: set[str]
    orders: dict[str, Order]
    positions: HeldPositions | None = None


@functools.cache
def _mark_and_load_pg() -> Any:
    """``mark_and_load``'s PostgreSQL statement, built once, run by asyncpg itself (``pg_fetch``): the marks
    come as one array parameter (``unnest``), the order ids as another. The orders' positions are locked in the
    same statement, each order's row carrying its position's values: a fill then needs no round trip of its own
    to lock its position. (Which lock comes first matters only against a transaction taking both for the same
    paper order and position: the gateway's cancels lock orders only, and the other fills are testnet's. A
    deadlock PostgreSQL finds fails the batch, retried as after any failure.)"""
    table = ProcessedCommand.__table__  # type: ignore[attr-defined]
    source = sa_select(
        func.unnest(bindparam("command_ids", type_=ARRAY(table.c.command_id.type))),
        bindparam("processed_at", type_=table.c.processed_at.type),
    )
    marked = (
        upsert_insert("postgresql")(table)
        .from_select(["command_id", "processed_at"], source)
        .on_conflict_do_nothing(index_elements=["command_id"])
        .returning(table.c.command_id)
        .cte("marked")
    )
    new = select(func.array_agg(marked.c.command_id)).scalar_subquery().label("new")
    p = Position.__table__  # type: ignore[attr-defined]
    ids = bindparam("order_ids", type_=ARRAY(p.c.user_id.type))
    owners = sa_select(col(Order.user_id), col(Order.mode), col(Order.symbol)).where(
        col(Order.id) == any_(ids)
    )
    locked = (
        sa_select(*p.c)
        .where(tuple_(*(p.c[c] for c in _POSITION_KEY)).in_(owners))
        .order_by(*(p.c[c] for c in _POSITION_KEY))
        .with_for_update()
        .cte("held")
    )
    mine = and_(*(locked.c[c] == getattr(Order, c) for c in _POSITION_KEY))
    return (
        sa_select(*Order.__table__.c, new, *(locked.c[c].label(f"held_{c}") for c in _HELD_COLUMNS))  # type: ignore[attr-defined]
        .outerjoin(locked, mine)
        .where(col(Order.id) == any_(ids))
        .order_by(col(Order.id))
        .with_for_update(of=Order)
    )


async def mark_and_load(
    session: AsyncSession, command_ids: Sequence[str], order_ids: Iterable[str], now: datetime
) -> Marked:
    """Mark commands processed and load their orders, locked: (the commands not marked before, the orders, on
    PostgreSQL their positions, locked too). A redelivered command conflicts with its earlier mark; the marks
    commit (or roll back) with what the batch did. On PostgreSQL one statement (the marks a data-modifying CTE
    of the orders' locking read: issue #16, a batch's cost is its round trips), its orders detached snapshots
    (``detached_rows``: the tail's statement writes their changes); if none of the orders exists, every command
    counts as new (none has an order to act on)."""
    dialect = session.bind.dialect.name  # type: ignore[union-attr]
    ids = sorted(set(order_ids))
    if dialect != "postgresql" or not ids or not command_ids:
        fresh: set[str] = set()
        if command_ids:
            table = ProcessedCommand.__table__  # type: ignore[attr-defined]
            mark = upsert_insert(dialect)(table).on_conflict_do_nothing(index_elements=["command_id"])
            marks = [{"command_id": c, "processed_at": now} for c in command_ids]
            fresh = set((await session.execute(mark.returning(table.c.command_id), marks)).scalars())
        return Marked(fresh, await load_orders(session, ids))
    params = {"command_ids": list(command_ids), "processed_at": now, "order_ids": ids}
    rows = await pg_fetch(session, _mark_and_load_pg(), params)
    if not rows:
        return Marked(set(command_ids), {})
    orders = {o.id: o for o in detached_rows(Order, rows)}
    held = {
        (r["user_id"], r["mode"], r["symbol"]): _HeldRow(
            *(cast(Decimal, exact_amount(r[f"held_{c}"])) for c in _POSITION_AMOUNTS)
        )
        for r in rows
        if r["held_user_id"] is not None
    }
    keys = frozenset((o.user_id, o.mode, o.symbol) for o in orders.values())
    return Marked(set(rows[0]["new"] or ()), orders, HeldPositions(keys, held))


class _HeldRow(NamedTuple):
    """A position's values as ``_update_positions`` folds from them."""

    quantity: Decimal
    avg_entry_price: Decimal
    cost_basis: Decimal
    realized_pnl: Decimal
    fees_paid: Decimal


async def apply_result(
    session: AsyncSession,
    clock: Clock,
    result: VenueResult,
    *,
    orders: dict[str, Order] | None = None,
    reopened: frozenset[str] = frozenset(),
    positions: HeldPositions | None = None,
) -> Applied:
    """Persist what a venue reported. `reopened`: orders whose cancel was given up (a parked command), so a
    reported NEW / PARTIALLY_FILLED takes them out of PENDING_CANCEL instead of being read as a fill.
    `positions`: the positions ``mark_and_load`` locked with the orders; on PostgreSQL fills of those keys are
    then written by the tail's statement, none of them recorded before (one that was is the database's error:
    a batch's fills are the book's, each new), instead of a statement of their own first."""
    now = clock.now()
    applied = Applied()
    ids = {c.order_id for c in result.changes} | {f.order_id for f in result.fills}
    if orders is None:
        orders = await load_orders(session, ids)
    else:
        missing = ids - orders.keys()
        if missing:
            orders.update(await load_orders(session, missing))

    for ext in result.external_orders:
        recorded = await _record_external_isolated(session, ext, now)
        if recorded is not None:
            applied.orders.append(recorded)
    if result.external_orders:
        await session.flush()  # their events first: the outbox rows below are written in one statement
    # Status rows and outbox rows are plain multi-row inserts at the end (no ORM units of work for them),
    # in the order built here, which is the order they are published in.
    outbox: list[dict[str, object]] = []
    events: list[dict[str, object]] = []

    touched: dict[str, Order] = {}
    for change in result.changes:
        order = orders.get(change.order_id)
        if order is None:
            log.warning("venue reported an unknown order", order_id=change.order_id)
            continue
        if _apply_change(order, change, now, applied, reopen=order.id in reopened):
            touched[order.id] = order

    users_fills: list[dict[str, object]] = []
    for f in result.fills:
        order = orders.get(f.order_id)
        if order is None:
            continue
        users_fills.append(
            {
                "trade_id": f.trade_id,
                "order_id": f.order_id,
                "user_id": order.user_id,
                "mode": order.mode,
                "symbol": f.symbol,
                "side": f.side,
                "price": f.price,
                "quantity": f.quantity,
                "quote_quantity": f.quote_quantity,
                "fee": f.fee,
                "fee_asset": f.fee_asset,
                "liquidity": f.liquidity,
                "ts": f.ts,
            }
        )
    postgres = session.bind.dialect.name == "postgresql"  # type: ignore[union-attr]
    written: list[dict[str, object]] = []  # the positions' new values, written with the events below
    fills: list[dict[str, object]] = []  # fills for the tail's statement to insert
    made: set[PositionKey] = set()  # positions the tail's statement makes
    if users_fills:
        keys = {_position_key(f) for f in users_fills}
        # paper only: other fills may come late or twice (``_insert_fills`` skips, ``_out_of_order`` refolds)
        if (
            positions is not None
            and postgres
            and keys <= positions.keys
            and all(k[1] == "paper" for k in keys)
        ):
            new_fills, fills = users_fills, users_fills
            made = keys - positions.rows.keys()
            held: Mapping[PositionKey, Any] = {**dict.fromkeys(made, _ZERO_HELD), **positions.rows}
        else:
            new_fills, held = await _insert_fills(session, users_fills, now)
        applied.fills = len(new_fills)
        written = await _update_positions(session, new_fills, now, outbox, held)
        for row in new_fills:
            outbox.append(private_row("TRADE", str(row["user_id"]), _trade_payload(row), now=now))

    for order in touched.values():
        events.append(
            {
                "order_id": order.id,
                "status": order.status,
                "filled_quantity": order.filled_quantity,
                "reason": order.reason,
                "ts": now,
            }
        )
        outbox.append(private_row("ORDER_UPDATE", order.user_id, order_event_payload(order), now=now))
        ORDER_EVENTS.labels(order.mode, order.status).inc()
        applied.orders.append(order)

    movement = Movement(result.journal) if result.journal and postgres else None
    if movement is not None:
        # PostgreSQL: the ledger moves in the tail's statement, which fills in each user's balances
        for user_id in sorted({account for account, _ in movement.deltas if _user_account(account)}):
            outbox.append(
                private_row("BALANCE_UPDATE", user_id, {"mode": "paper", "balances": None}, now=now)
            )
    elif result.journal:
        views = await SqlLedger(session, clock).apply(list(result.journal))
        by_user: dict[str, list[BalanceView]] = {}
        for v in views:
            if _user_account(v.account_id):
                by_user.setdefault(v.account_id, []).append(v)
        for user_id, vs in by_user.items():
            outbox.append(
                private_row(
                    "BALANCE_UPDATE", user_id, {"mode": "paper", "balances": balance_payload(vs)}, now=now
                )
            )
    for report in result.balances:  # an exchange's pushed balances, shaped as the paper ledger's
        outbox.append(
            private_row(
                "BALANCE_UPDATE",
                report.user_id,
                {"mode": report.mode, "balances": balance_payload(report.balances)},  # type: ignore[arg-type]
                now=now,
            )
        )
    # PostgreSQL: the orders' changes are written by the tail's statement too, taken out of the flush
    changed = _take_order_changes(touched.values()) if postgres else []
    if session.new or session.dirty or session.deleted:  # a paper batch on PostgreSQL has nothing pending
        await session.flush()  # the orders' changes (SQLite), external orders, anything else pending
    updated = [p for p in written if _position_key(p) not in made]
    new_positions = [p for p in written if _position_key(p) in made]
    await _write_tail(session, now, _Tail(movement, changed, updated, events, outbox, fills, new_positions))
    return applied


# What the tail's statement writes of a changed order (``_apply_change``); id is the key.
_ORDER_WRITES = (
    "status",
    "filled_quantity",
    "cumulative_quote",
    "avg_price",
    "reason",
    "venue_order_id",
    "venue_seq",
    "triggered_at",
    "version",
    "updated_at",
)
_ORDER_WRITABLE = frozenset(_ORDER_WRITES)


def _take_order_changes(orders: Iterable[Order]) -> list[dict[str, object]]:
    """The rows of changed orders that the tail's statement writes, each taken out of the session's next flush
    (its changed attributes marked as stored, ``set_committed_value``), so it is not written twice: a session's
    orders, and the detached ones ``mark_and_load`` made, which no flush writes. An order with other changes, or
    not yet stored, is left to the flush."""
    rows: list[dict[str, object]] = []
    for order in orders:
        state = sa_inspect(order)
        changed = set(state.committed_state)
        if not (state.persistent or state.detached) or not changed <= _ORDER_WRITABLE:
            continue
        rows.append({"id": order.id, **{c: getattr(order, c) for c in _ORDER_WRITES}})
        for key in changed:
            set_committed_value(order, key, getattr(order, key))
    return rows


@dataclass(frozen=True, slots=True)
class _Tail:
    """What ``_write_tail`` writes: rows as plain values in the order they go out."""

    movement: Movement | None  # PostgreSQL: the ledger's entries (SQLite applied them before)
    orders: list[dict[str, object]]  # PostgreSQL: orders' changes (``_take_order_changes``)
    positions: list[dict[str, object]]  # positions' new values, rows that exist
    events: list[dict[str, object]]
    outbox: list[dict[str, object]]
    fills: list[dict[str, object]] = field(default_factory=list)  # PostgreSQL: fills to insert
    new_positions: list[dict[str, object]] = field(default_factory=list)  # PostgreSQL: positions to make


def _user_account(account_id: str) -> bool:
    """User accounts; system accounts have a "system/" or "external/" id."""
    return "/" not in account_id


async def _write_tail(session: AsyncSession, now: datetime, tail: _Tail) -> None:
    """The ledger's movement, the orders' changes, the positions' new values (and, for a batch whose positions
    ``mark_and_load`` locked, its fills and the positions they make), the status rows and the outbox rows: on
    PostgreSQL one statement (``_tail_pg``), a round trip where they were six (issue #16: a paper
    batch's cost is its round trips); then the balances it left are held to the ledger's rule (an error rolls
    the caller's transaction back). On SQLite (the ledger applied and the orders flushed before) a Core
    statement each."""
    movement, positions, events, outbox = tail.movement, tail.positions, tail.events, tail.outbox
    if session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]
        if not (movement or tail.orders or positions or events or outbox or tail.fills or tail.new_positions):
            return
        params = {
            **(movement or Movement(())).pg_params(),
            "now": now,
            "orders": pg_json(tail.orders),
            "positions": pg_json(positions),
            "fills": pg_json(tail.fills),
            "new_positions": pg_json(tail.new_positions),
            "events": pg_json(events),
            "outbox": outbox_param(session, outbox),
        }
        rows = await pg_fetch(session, _tail_pg(), params)
        if movement is not None:
            moved = {
                (r["account_id"], r["asset"]): (r["free"], r["locked"])
                for r in rows
                if r["account_id"] is not None
            }
            movement.checked(moved, check_funds=False)
        # decoded by the driver (the engine sets its json codec), once: it was repeated on every balance's row
        written = next((r["outbox"] for r in rows if r["account_id"] is None), None) or []
        filled_in = {w["id"]: w["payload"] for w in written if w["payload"] is not None}
        ids = [w["id"] for w in written]
        final = [  # a BALANCE_UPDATE's balances as the statement filled them in
            {**r, "payload": filled_in[i]} if i in filled_in else r for r, i in zip(outbox, ids, strict=True)
        ]
        outbox_written(session, final, ids)
        return
    if positions:
        await session.execute(
            _write_positions(),
            [
                {**{f"k_{c}": p[c] for c in _POSITION_KEY}, **{c: p[c] for c in _POSITION_VALUES}}
                for p in positions
            ],
        )
    if events:
        await session.execute(insert(OrderEvent.__table__), events)  # type: ignore[attr-defined]
    await write_outbox(session, outbox)


_POSITION_KEY = ("user_id", "mode", "symbol")
_POSITION_AMOUNTS = ("quantity", "avg_entry_price", "cost_basis", "realized_pnl", "fees_paid")
_POSITION_VALUES = (*_POSITION_AMOUNTS, "updated_at")
_ZERO_HELD = _HeldRow(*(Decimal(0) for _ in _POSITION_AMOUNTS))
_HELD_COLUMNS = ("user_id", *_POSITION_AMOUNTS)  # a position's, on its order's row in ``mark_and_load``
_FILL_COLUMNS = (
    "trade_id, order_id, user_id, mode, symbol, side, price, quantity, quote_quantity, fee, fee_asset, "
    "liquidity, ts"
)


@functools.cache
def _tail_pg() -> TextClause:
    """``_write_tail`` on PostgreSQL, built once: the ledger's CTEs (``pg_apply_ctes``: balances moved, postings
    added), the orders, the positions (updated, or made), the fills (in list order; one recorded before fails
    the statement on its key), the status rows, then the outbox rows in list order, a ledger BALANCE_UPDATE's
    balances (``null`` until then) filled in from what moved for its user. Rows come as JSON parameters
    (``shared.db.pg_json``); it answers one row with, in id order, each outbox row's id and the payload of each
    BALANCE_UPDATE it filled in (its balance columns null), then a row per balance moved."""
    sets = ", ".join(f"{c} = j.{c}" for c in _POSITION_VALUES)
    key = " AND ".join(f"p.{c} = j.{c}" for c in _POSITION_KEY)
    order_sets = ", ".join(f"{c} = j.{c}" for c in _ORDER_WRITES)
    position_cols = ", ".join((*_POSITION_KEY, *_POSITION_VALUES))
    mine = pg_balance_payload("(SELECT * FROM moved WHERE moved.account_id = o.payload->>'user_id')")
    return text(
        f"""WITH {pg_apply_ctes()}, upd AS (
  UPDATE orders AS t SET {order_sets}
    FROM json_populate_recordset(NULL::orders, CAST(:orders AS JSON)) AS j
   WHERE t.id = j.id
), pos AS (
  UPDATE positions AS p SET {sets}
    FROM json_populate_recordset(NULL::positions, CAST(:positions AS JSON)) AS j
   WHERE {key}
), made AS (
  INSERT INTO positions ({position_cols})
  SELECT {position_cols} FROM json_populate_recordset(NULL::positions, CAST(:new_positions AS JSON))
), fl AS (
  INSERT INTO fills ({_FILL_COLUMNS})
  SELECT {_FILL_COLUMNS} FROM json_populate_recordset(NULL::fills, CAST(:fills AS JSON)) WITH ORDINALITY AS x
   ORDER BY x.ordinality
), ev AS (
  INSERT INTO order_events (order_id, status, filled_quantity, reason, ts)
  SELECT e.order_id, e.status, e.filled_quantity, e.reason, e.ts
    FROM json_populate_recordset(NULL::order_events, CAST(:events AS JSON)) WITH ORDINALITY AS e
   ORDER BY e.ordinality
), ob AS (
  INSERT INTO outbox (stream, mirror_to, payload, created_at, eager)
  SELECT o.stream, o.mirror_to,
         CASE WHEN o.payload->>'type' = 'BALANCE_UPDATE' AND json_typeof(o.payload->'data'->'balances') = 'null'
              THEN jsonb_set(o.payload::jsonb, '{{data,balances}}', ({mine}))::json
              ELSE o.payload END,
         o.created_at, o.eager
    FROM json_populate_recordset(NULL::outbox, CAST(:outbox AS JSON)) WITH ORDINALITY AS o
   ORDER BY o.ordinality
  RETURNING id, payload
)
SELECT NULL AS account_id, NULL AS asset, NULL AS free, NULL AS locked,
       (SELECT json_agg(json_build_object(
                 'id', id, 'payload', CASE WHEN payload->>'type' = 'BALANCE_UPDATE' THEN payload END) ORDER BY id)
          FROM ob) AS outbox
UNION ALL
SELECT m.account_id, m.asset, m.free, m.locked, NULL FROM moved AS m"""  # noqa: S608
    )


@functools.cache
def _write_positions() -> Update:
    t = Position.__table__  # type: ignore[attr-defined]
    return (
        update(t)
        .where(*(t.c[c] == bindparam(f"k_{c}") for c in _POSITION_KEY))
        .values({c: bindparam(c) for c in _POSITION_VALUES})
    )


@functools.cache
def _lock_positions(dialect: str) -> Insert:
    """Positions' rows, made at zero where missing, locked and read in one statement: the new rows by their
    insert, the others by the conflict's update (of nothing: ``updated_at`` to itself). Two transactions folding
    fills into the same new position take turns on its row; both inserting it, the second failed on the key and
    rolled back everything it applied (found by benchmarks/chaos.py: a testnet fill lost that way)."""
    t = Position.__table__  # type: ignore[attr-defined]
    stmt = upsert_insert(dialect)(t)
    return stmt.on_conflict_do_update(
        index_elements=list(_POSITION_KEY), set_={"updated_at": t.c.updated_at}
    ).returning(*t.c)


async def _update_positions(
    session: AsyncSession,
    fills: list[dict[str, object]],
    now: datetime,
    outbox: list[dict[str, object]],
    locked: Mapping[tuple[str, str, str], Any],
) -> list[dict[str, object]]:
    """Fold new fills into their positions (weighted-average cost: shared.positions, the pure fold the price
    feed re-marks) in the same transaction, and tell the owner. ``locked``: the positions' rows as locked
    (``_insert_fills``). Returns the positions' new values, which ``_write_tail`` writes."""
    if not fills:
        return []
    keys = sorted({_position_key(f) for f in fills})
    rows = {key: locked[key] for key in keys}
    # Fills can reach us out of their time order (a lost acknowledgement's fill found later, a poll and the
    # user stream racing, two transactions of one user). The weighted-average fold depends on the order, so a
    # position given a fill older than one it already holds is folded again from all its fills in time order,
    # the order reconciliation folds them in (found by benchmarks/chaos.py: positions that were not the fold
    # of their fills).
    refold = await _out_of_order(session, fills)
    book = PositionBook()
    for key, held in rows.items():
        if key in refold:
            continue
        book.restore(
            PositionSnapshot(
                key[0],
                key[1],
                key[2],
                held.quantity,
                held.avg_entry_price,
                held.cost_basis,
                held.realized_pnl,
                held.fees_paid,
            )
        )
    if refold:  # this transaction's fills are inserted already, so they are among these
        history = await session.execute(
            select(Fill)
            .where(tuple_(Fill.user_id, Fill.mode, Fill.symbol).in_(sorted(refold)))
            .order_by(col(Fill.ts), col(Fill.id))
        )
        for h in history.scalars():
            book.apply_fill(h.user_id, h.mode, _position_fill(h.model_dump()))
    for f in fills:
        key = _position_key(f)
        if key not in refold:
            book.apply_fill(key[0], key[1], _position_fill(f))
    written: list[dict[str, object]] = []
    for key in keys:
        snap = next(s for s in book.positions(key[0], key[1]) if s.symbol == key[2])
        # written by ``_write_tail``; the payload shaped from the snapshot, no ORM instance made (issue #16: ~4%)
        written.append(
            {
                **dict(zip(_POSITION_KEY, key, strict=True)),
                **{c: getattr(snap, c) for c in _POSITION_AMOUNTS},
                "updated_at": now,
            }
        )
        payload = position_payload(snap, None, source="fill", updated_at=now)
        outbox.append(private_row("POSITION_UPDATE", key[0], payload, now=now))
    return written


def _position_fill(f: Mapping[str, object]) -> PositionFill:
    return PositionFill(
        symbol=str(f["symbol"]),
        side=PositionSide(str(f["side"]).upper()),
        quantity=cast(Decimal, f["quantity"]),
        price=cast(Decimal, f["price"]),
        fee=cast(Decimal, f["fee"]),
        fee_asset=str(f["fee_asset"]),
        quote_asset=split_symbol(str(f["symbol"]))[1],
        ts=cast(datetime, f["ts"]),
    )


async def _out_of_order(session: AsyncSession, fills: list[dict[str, object]]) -> set[tuple[str, str, str]]:
    """Positions whose new fills are not all later than the fills they already hold (or not in time order
    among themselves). Paper positions are left out: one writer per book stamps their fills with its clock as
    they happen, so they come in order, and the paper hot path is spared the read."""
    out: set[tuple[str, str, str]] = set()
    earliest: dict[tuple[str, str, str], datetime] = {}
    latest: dict[tuple[str, str, str], datetime] = {}
    for f in fills:
        key = _position_key(f)
        if key[1] == "paper":
            continue
        ts = cast(datetime, f["ts"])
        if key in latest and ts < latest[key]:
            out.add(key)
        latest[key] = max(latest.get(key, ts), ts)
        earliest[key] = min(earliest.get(key, ts), ts)
    if not earliest:
        return out
    new = {(str(f["order_id"]), str(f["trade_id"])) for f in fills}
    held = await session.execute(
        sa_select(
            col(Fill.user_id),
            col(Fill.mode),
            col(Fill.symbol),
            col(Fill.ts),
            col(Fill.order_id),
            col(Fill.trade_id),
        )
        .where(col(Fill.user_id).in_(sorted({k[0] for k in earliest})))
        .where(col(Fill.ts) > min(earliest.values()))
    )
    for user_id, mode, symbol, ts, order_id, trade_id in held:
        key = (user_id, mode, symbol)
        if key in earliest and ts > earliest[key] and (order_id, trade_id) not in new:
            out.add(key)
    return out


def _apply_change(
    order: Order, change: OrderChange, now: datetime, applied: Applied, *, reopen: bool = False
) -> bool:
    status = change.status if reopen else next_status(order.status, change.status)
    same = status == order.status and change.filled_quantity == order.filled_quantity
    fired = (
        change.triggered and order.triggered_at is None
    )  # a stop's trigger: NEW (waiting) -> NEW (working)
    if same and change.reason == order.reason and not fired:
        return False
    if change.filled_quantity < order.filled_quantity:
        applied.rejected_transitions.append(
            f"{order.id}: filled {order.filled_quantity} -> {change.filled_quantity}"
        )
        log.error("venue reported a smaller filled quantity; ignored", order_id=order.id)
        return False
    if status != order.status or status in (Status.PARTIALLY_FILLED, Status.PENDING_CANCEL):
        try:
            if status != order.status:
                check_transition(order.status, status)
        except IllegalTransition as exc:
            applied.rejected_transitions.append(f"{order.id}: {exc}")
            log.error("illegal order transition rejected", order_id=order.id, error=str(exc))
            return False
    was_final = order.status in FINAL
    order.status = status
    order.filled_quantity = change.filled_quantity
    order.cumulative_quote = change.cumulative_quote
    order.avg_price = change.avg_price
    if change.reason is not None:
        order.reason = change.reason[:256]
    elif status in FINAL and not was_final and not order.external:
        # A reason given on the way ("in flight", a cancel pending or refused) no longer holds once the order
        # is final and the venue gives none; an external order keeps the note saying where it came from.
        order.reason = None
    if change.venue_order_id is not None:
        order.venue_order_id = change.venue_order_id
    if change.venue_seq is not None:
        order.venue_seq = change.venue_seq
    if fired:
        order.triggered_at = now
    order.version += 1
    order.updated_at = now
    return True


def _position_key(f: Mapping[str, object]) -> tuple[str, str, str]:
    return (str(f["user_id"]), str(f["mode"]), str(f["symbol"]))


async def _insert_fills(
    session: AsyncSession, rows: list[dict[str, object]], now: datetime
) -> tuple[list[dict[str, object]], dict[tuple[str, str, str], Any]]:
    """Insert fills; one already recorded (same order and trade id) is skipped, so redelivery is harmless.
    Returns the new ones and their positions' rows, made at zero where missing and locked (``_lock_positions``):
    on PostgreSQL in the same statement (``_fills_pg``), for every fill's position, new or not."""
    dialect = session.bind.dialect.name  # type: ignore[union-attr]
    if dialect == "postgresql":
        keys = sorted({_position_key(f) for f in rows})
        params = {"fills": pg_json(rows), "made": pg_json([_zero_position(k, now) for k in keys])}
        result = (await session.execute(_fills_pg(), params)).all()
        inserted = {(f["trade_id"], f["order_id"]) for f in (result[0].new or [])}
        held = {(r.user_id, r.mode, r.symbol): r for r in result}
    else:
        stmt = (
            upsert_insert(dialect)(Fill)
            .on_conflict_do_nothing(index_elements=["order_id", "trade_id"])
            .returning(Fill.trade_id, Fill.order_id)
        )
        inserted = {(r.trade_id, r.order_id) for r in (await session.execute(stmt, rows)).all()}
        keys = sorted({_position_key(f) for f in rows if (f["trade_id"], f["order_id"]) in inserted})
        made = [_zero_position(k, now) for k in keys]
        held = (
            {(r.user_id, r.mode, r.symbol): r for r in await session.execute(_lock_positions(dialect), made)}
            if made
            else {}
        )
    return [r for r in rows if (r["trade_id"], r["order_id"]) in inserted], held


def _zero_position(key: tuple[str, str, str], now: datetime) -> dict[str, object]:
    zero = Decimal(0)
    return {
        **dict(zip(_POSITION_KEY, key, strict=True)),
        **dict.fromkeys(_POSITION_AMOUNTS, zero),
        "updated_at": now,
    }


@functools.cache
def _fills_pg() -> TextClause:
    """``_insert_fills`` on PostgreSQL, built once: the fills (in list order; a recorded one skipped) and their
    positions' rows (``_lock_positions``) in one statement, answering each position's row and, on every row,
    the fills it inserted."""
    fills = _FILL_COLUMNS
    cols = ", ".join((*_POSITION_KEY, *_POSITION_VALUES))
    return text(
        f"""WITH f AS (
  INSERT INTO fills ({fills})
  SELECT {fills} FROM json_populate_recordset(NULL::fills, CAST(:fills AS JSON)) WITH ORDINALITY AS x
   ORDER BY x.ordinality
  ON CONFLICT (order_id, trade_id) DO NOTHING
  RETURNING trade_id, order_id
), p AS (
  INSERT INTO positions AS held ({cols})
  SELECT {cols} FROM json_populate_recordset(NULL::positions, CAST(:made AS JSON))
   ORDER BY user_id, mode, symbol
  ON CONFLICT (user_id, mode, symbol) DO UPDATE SET updated_at = held.updated_at
  RETURNING held.*
)
SELECT p.*, (SELECT json_agg(json_build_object('trade_id', trade_id, 'order_id', order_id)) FROM f) AS new
  FROM p"""  # noqa: S608
    )


def _trade_payload(row: dict[str, object]) -> dict[str, object]:
    return {
        "trade_id": row["trade_id"],
        "order_id": row["order_id"],
        "symbol": row["symbol"],
        "side": row["side"],
        "price": plain(row["price"]),  # type: ignore[arg-type]
        "quantity": plain(row["quantity"]),  # type: ignore[arg-type]
        "fee": plain(row["fee"]),  # type: ignore[arg-type]
        "fee_asset": row["fee_asset"],
        "liquidity": row["liquidity"],
        "ts": row["ts"].isoformat(),  # type: ignore[attr-defined]
        "mode": row["mode"],
    }


async def _record_external_isolated(session: AsyncSession, ext: object, now: datetime) -> Order | None:
    """Record one external order in its own savepoint: one the database or the event schema refuses is logged
    and skipped, never allowed to drop the rest of the result with it (a whole start-up recovery)."""
    try:
        async with session.begin_nested():
            return await _record_external(session, ext, now)
    except Exception:
        log.exception(
            "external order not recorded; the rest of the venue's result is applied",
            user_id=getattr(ext, "user_id", None),
            venue_order_id=getattr(ext, "venue_order_id", None),
            symbol=getattr(ext, "symbol", None),
            type=getattr(ext, "type", None),
        )
        return None


async def _record_external(session: AsyncSession, ext: object, now: datetime) -> Order:
    assert isinstance(ext, ExternalOrder)
    existing = (
        await session.execute(
            select(Order).where(
                col(Order.user_id) == ext.user_id,
                col(Order.venue_order_id) == ext.venue_order_id,
                col(Order.mode) == "testnet",
            )
        )
    ).scalar_one_or_none()
    if existing is not None:
        return existing
    order = Order(
        id=new_id(),
        user_id=ext.user_id,
        client_order_id=ext.client_order_id or f"ext-{ext.venue_order_id}",
        request_hash="external",
        mode="testnet",
        symbol=ext.symbol,
        side=ext.side,
        type=ext.type,
        time_in_force=ext.time_in_force,
        quantity=ext.quantity,
        price=ext.price,
        status=ext.status,
        filled_quantity=ext.filled_quantity,
        cumulative_quote=ext.cumulative_quote,
        avg_price=ext.avg_price,
        reason="external: found on the exchange, not placed through TradeBridge",
        venue_order_id=ext.venue_order_id,
        external=True,
        created_at=ext.created_at,
        updated_at=now,
    )
    session.add(order)
    await session.flush()
    session.add(
        OrderEvent(
            order_id=order.id,
            status=order.status,
            filled_quantity=order.filled_quantity,
            reason=order.reason,
            ts=now,
        )
    )
    add_outbox_row(session, private_row("ORDER_UPDATE", order.user_id, order_event_payload(order), now=now))
    return order


__all__ = ["FINAL", "Applied", "apply_result", "load_orders", "next_status"]
