"""Paper checks: the ledger's invariants, reservations against open orders, fills against each other and
the journal, orders and positions against their fills, the in-memory books against the database, stuck orders.

Sums are taken in Python over the rows (not SQL SUM): amounts are TEXT on SQLite, and exactness matters
more than speed here. Reads happen in one session; the runner gives it a REPEATABLE READ snapshot on
PostgreSQL so the worker writing meanwhile can't produce phantom mismatches between two queries."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, Inexact, localcontext
from typing import Protocol

from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from reconciliation.findings import CheckOutcome, Finding, fmt
from shared import paper_book
from shared.clock import Clock
from shared.ledger import EXACT, EXTERNAL_ACCOUNT
from shared.marketdata import MarketData
from shared.models import Balance, Fill, LedgerPosting, Order
from shared.orders import Status

ZERO = Decimal(0)
SYSTEM_PREFIX = "system/"
RESERVING = (Status.PENDING, Status.NEW, Status.PARTIALLY_FILLED, Status.PENDING_CANCEL)
RESTING = (Status.NEW, Status.PARTIALLY_FILLED, Status.PENDING_CANCEL)


@dataclass(frozen=True, slots=True)
class BookOrder:
    order_id: str
    account: str
    remaining_quantity: Decimal
    locked: Decimal | None = None  # what it still locks, when the book says


class PaperMemory(Protocol):
    """The worker's open paper book, seen read-only as of `taken_at` (rows changed later are not compared)."""

    taken_at: datetime | None

    def open_locks(self) -> dict[tuple[str, str], Decimal]: ...

    def open_book_orders(self) -> list[BookOrder]: ...


@dataclass(frozen=True, slots=True)
class BookUnavailable:
    """No usable book: reported as a `book_unavailable` finding with the reason, never skipped silently."""

    reason: str


class SnapshotMemory:
    """`PaperMemory` over the snapshot the workers holding the paper leases publish (shared.paper_book)."""

    def __init__(self, snapshot: paper_book.BookSnapshot) -> None:
        self.snapshot = snapshot
        self.taken_at: datetime | None = snapshot.taken_at

    def open_locks(self) -> dict[tuple[str, str], Decimal]:
        out: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
        for e in self.snapshot.orders:
            out[(e.account, e.lock_asset)] += e.locked
        return dict(out)

    def open_book_orders(self) -> list[BookOrder]:
        return [
            BookOrder(e.order_id, e.account, e.remaining_quantity, e.locked) for e in self.snapshot.orders
        ]


async def published_book(
    store: MarketData,
    clock: Clock,
    *,
    wait_s: float = 3.0,
    max_age: timedelta = paper_book.MAX_AGE,
    partitions: int = 1,
) -> SnapshotMemory | BookUnavailable:
    """The workers' published book (every partition's, merged): one taken after this call if it comes within
    `wait_s` (so a report sees what happened before it was asked for), else the latest if younger than
    `max_age`, else unavailable."""
    asked = clock.now()
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        snap = await paper_book.latest(store, partitions=partitions)
        if isinstance(snap, str):
            return BookUnavailable(snap)
        age = clock.now() - snap.taken_at
        if age > max_age:
            return BookUnavailable(
                f"the paper book published by {snap.writer} is {int(age.total_seconds())}s old "
                f"(bound {int(max_age.total_seconds())}s): no execution worker holds the paper lease"
            )
        if snap.taken_at >= asked or asyncio.get_running_loop().time() >= deadline:
            return SnapshotMemory(snap)
        await asyncio.sleep(0.1)


BookView = PaperMemory | BookUnavailable | None


def remaining_reservation(order: Order) -> Decimal:
    """What an open paper order still locks: reservations are linear in quantity (see
    `shared.paper.ledger`), so reserved_amount x remaining / quantity, exact as `locked_for` computes it."""
    if not order.reserved_amount or not order.quantity:
        return ZERO
    remaining = order.quantity - order.filled_quantity
    if remaining == order.quantity:
        return order.reserved_amount
    try:
        return EXACT.divide(EXACT.multiply(order.reserved_amount, remaining), order.quantity)
    except Inexact:  # not a whole number of lots; keep 40 digits rather than fail the check
        with localcontext() as ctx:
            ctx.prec = 40
            return order.reserved_amount * remaining / order.quantity


async def check_ledger(session: AsyncSession) -> list[CheckOutcome]:
    balances = list((await session.execute(select(Balance))).scalars())
    journal: dict[tuple[str, str], list[Decimal]] = defaultdict(lambda: [ZERO, ZERO])
    asset_sum: dict[str, Decimal] = defaultdict(lambda: ZERO)
    rows = await session.execute(
        select(
            col(LedgerPosting.account_id),
            col(LedgerPosting.asset),
            col(LedgerPosting.bucket),
            col(LedgerPosting.amount),
        )
    )
    for account, asset, bucket, amount in rows:
        journal[(account, asset)][0 if bucket == "free" else 1] += amount
        asset_sum[asset] += amount

    totals = CheckOutcome("ledger_totals")
    per_account = CheckOutcome("balance_vs_journal")
    negatives = CheckOutcome("no_negative_balance")
    held: dict[str, Decimal] = defaultdict(lambda: ZERO)
    external: dict[str, Decimal] = defaultdict(lambda: ZERO)
    journal_held: dict[str, Decimal] = defaultdict(lambda: ZERO)
    seen: set[tuple[str, str]] = set()
    for b in balances:
        key = (b.account_id, b.asset)
        seen.add(key)
        if b.account_id == EXTERNAL_ACCOUNT:
            external[b.asset] += b.free + b.locked
        else:
            held[b.asset] += b.free + b.locked
            negatives.checked += 1
            if b.free < 0 or b.locked < 0:
                negatives.add(
                    Finding(
                        "negative_balance",
                        "paper",
                        "ledger",
                        f"{fmt(b.free)}/{fmt(b.locked)}",
                        ">= 0",
                        user_id=b.account_id,
                        asset=b.asset,
                        details={"free": fmt(b.free), "locked": fmt(b.locked)},
                    )
                )
        per_account.checked += 1
        j = journal.get(key, [ZERO, ZERO])
        if (b.free, b.locked) != (j[0], j[1]):
            per_account.add(
                Finding(
                    "balance_journal_mismatch",
                    "paper",
                    "journal",
                    f"{fmt(b.free)}/{fmt(b.locked)}",
                    f"{fmt(j[0])}/{fmt(j[1])}",
                    user_id=b.account_id,
                    asset=b.asset,
                    details={
                        "free": fmt(b.free),
                        "locked": fmt(b.locked),
                        "journal_free": fmt(j[0]),
                        "journal_locked": fmt(j[1]),
                    },
                )
            )
    for key, (jf, jl) in journal.items():
        if key[0] != EXTERNAL_ACCOUNT:
            journal_held[key[1]] += jf + jl
        if key not in seen:
            per_account.checked += 1
            if jf or jl:
                per_account.add(
                    Finding(
                        "balance_journal_mismatch",
                        "paper",
                        "journal",
                        None,
                        f"{fmt(jf)}/{fmt(jl)}",
                        user_id=key[0],
                        asset=key[1],
                        details={"balance_row": "missing"},
                    )
                )
    for asset in sorted(set(held) | set(external) | set(journal_held) | set(asset_sum)):
        totals.checked += 1
        deposits = -external.get(asset, ZERO)
        jsum = journal_held.get(asset, ZERO)
        if not (held.get(asset, ZERO) == deposits == jsum):
            totals.add(
                Finding(
                    "ledger_total_mismatch",
                    "paper",
                    "ledger",
                    fmt(held.get(asset, ZERO)),
                    f"deposits={fmt(deposits)} journal={fmt(jsum)}",
                    asset=asset,
                    details={
                        "balances": fmt(held.get(asset, ZERO)),
                        "net_deposits": fmt(deposits),
                        "journal": fmt(jsum),
                    },
                )
            )
        if asset_sum.get(asset, ZERO) != 0:
            totals.add(
                Finding(
                    "journal_unbalanced",
                    "paper",
                    "journal",
                    fmt(asset_sum[asset]),
                    "0",
                    asset=asset,
                )
            )
    return [totals, per_account, negatives]


async def check_locks(session: AsyncSession, memory: BookView) -> CheckOutcome:
    out = CheckOutcome("locked_vs_open_orders")
    expected: dict[tuple[str, str], Decimal] = defaultdict(lambda: ZERO)
    contributors: dict[tuple[str, str], list[str]] = defaultdict(list)
    orders = await session.execute(
        select(Order).where(col(Order.mode) == "paper", col(Order.status).in_([str(s) for s in RESERVING]))
    )
    for o in orders.scalars():
        if o.reserved_asset and o.reserved_amount:
            key = (o.user_id, o.reserved_asset)
            expected[key] += remaining_reservation(o)
            contributors[key].append(o.id)
    book = memory if memory is not None and not isinstance(memory, BookUnavailable) else None
    system_locks = book.open_locks() if book is not None else None
    if system_locks is None:
        out.notes.append("system accounts (market maker) skipped: no paper book to take their orders from")
    else:
        for key, amount in system_locks.items():
            if key[0].startswith(SYSTEM_PREFIX):
                expected[key] += amount
    balances = list((await session.execute(select(Balance))).scalars())
    seen: set[tuple[str, str]] = set()
    for b in balances:
        key = (b.account_id, b.asset)
        seen.add(key)
        if b.account_id == EXTERNAL_ACCOUNT:
            continue
        if b.account_id.startswith(SYSTEM_PREFIX) and (
            system_locks is None or changed_since(b.updated_at, book)
        ):
            continue  # no book, or the market maker moved after the snapshot: compared next time
        out.checked += 1
        want = expected.get(key, ZERO)
        if b.locked != want:
            out.add(
                Finding(
                    "locked_mismatch",
                    "paper",
                    "orders",
                    fmt(b.locked),
                    fmt(want),
                    user_id=b.account_id,
                    asset=b.asset,
                    details={"open_orders": contributors.get(key, [])[:50]},
                )
            )
    for key, want in expected.items():
        if key not in seen and want:
            out.checked += 1
            out.add(
                Finding("locked_mismatch", "paper", "orders", None, fmt(want), user_id=key[0], asset=key[1])
            )
    return out


async def check_fills(session: AsyncSession) -> list[CheckOutcome]:
    pairs = CheckOutcome("paper_fills_two_sided")
    settled = CheckOutcome("fills_settled")
    by_trade: dict[tuple[str, str, Decimal, Decimal], list[Fill]] = defaultdict(list)
    for f in (await session.execute(select(Fill).where(col(Fill.mode) == "paper"))).scalars():
        # Keyed by price and quantity too: trade ids count per symbol and may repeat across worker restarts.
        by_trade[(f.symbol, f.trade_id, f.price, f.quantity)].append(f)
    settle: dict[str, set[str]] = defaultdict(set)
    rows = await session.execute(
        select(LedgerPosting.ref, LedgerPosting.account_id)
        .where(col(LedgerPosting.entry_kind) == "SETTLE")
        .distinct()
    )
    for ref, account in rows:
        settle[ref].add(account)
    for (symbol, trade_id, _, _), fills in sorted(by_trade.items(), key=lambda kv: kv[0][:2]):
        pairs.checked += 1
        sides = {f.liquidity for f in fills}
        accounts = settle.get(trade_id, set())
        for f in fills:
            settled.checked += 1
            if f.user_id not in accounts:
                settled.add(
                    Finding(
                        "fill_unsettled",
                        "paper",
                        "journal",
                        "fill",
                        "no SETTLE posting",
                        user_id=f.user_id,
                        symbol=symbol,
                        order_id=f.order_id,
                        trade_id=trade_id,
                    )
                )
        if sides == {"MAKER", "TAKER"}:
            continue
        if any(a.startswith(SYSTEM_PREFIX) and a != "system/fees" for a in accounts):
            continue  # the counterparty is the market maker: its side is in the journal only
        f = fills[0]
        pairs.add(
            Finding(
                "fill_unpaired",
                "paper",
                "fills",
                f.liquidity,
                "MAKER" if f.liquidity == "TAKER" else "TAKER",
                user_id=f.user_id,
                symbol=symbol,
                order_id=f.order_id,
                trade_id=trade_id,
                details={"present": sorted(sides), "count": len(fills)},
            )
        )
    return [pairs, settled]


async def check_filled_quantities(session: AsyncSession) -> CheckOutcome:
    out = CheckOutcome("filled_quantity_vs_fills")
    sums: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for oid, qty in await session.execute(
        select(col(Fill.order_id), col(Fill.quantity)).where(col(Fill.mode) == "paper")
    ):
        sums[oid] += qty
    for o in (await session.execute(select(Order).where(Order.mode == "paper"))).scalars():
        out.checked += 1
        have = sums.get(o.id, ZERO)
        if o.filled_quantity != have:
            out.add(
                Finding(
                    "filled_quantity_mismatch",
                    "paper",
                    "fills",
                    fmt(o.filled_quantity),
                    fmt(have),
                    user_id=o.user_id,
                    symbol=o.symbol,
                    order_id=o.id,
                )
            )
    return out


async def check_positions(session: AsyncSession) -> CheckOutcome:
    out = CheckOutcome("positions_vs_fills")
    conn = await session.connection()
    has_table = await conn.run_sync(lambda c: inspect(c).has_table("positions"))
    if not has_table:
        out.skipped = True
        out.notes.append("no positions table: skipped")
        return out
    from shared.models.market import Position
    from shared.positions import Fill as PositionFill
    from shared.positions import PositionBook
    from shared.positions import Side as PositionSide
    from shared.symbols import split_symbol

    book = PositionBook()
    fills = await session.execute(select(Fill).order_by(col(Fill.ts), col(Fill.id)))
    for f in fills.scalars():
        book.apply_fill(
            f.user_id,
            f.mode,
            PositionFill(
                symbol=f.symbol,
                side=PositionSide(f.side.upper()),
                quantity=f.quantity,
                price=f.price,
                fee=f.fee,
                fee_asset=f.fee_asset,
                quote_asset=split_symbol(f.symbol)[1],
                ts=f.ts,
            ),
        )
    folded = {(s.user_id, s.mode, s.symbol): s for s in book.positions()}
    rows = {(p.user_id, p.mode, p.symbol): p for p in (await session.execute(select(Position))).scalars()}
    for key in sorted(set(folded) | set(rows)):
        out.checked += 1
        row, snap = rows.get(key), folded.get(key)
        have = (row.quantity, row.avg_entry_price) if row is not None else (ZERO, ZERO)
        want = (snap.quantity, snap.avg_entry_price) if snap is not None else (ZERO, ZERO)
        if have != want:
            out.add(
                Finding(
                    "position_mismatch",
                    key[1],
                    "fills",
                    f"{fmt(have[0])}@{fmt(have[1])}",
                    f"{fmt(want[0])}@{fmt(want[1])}",
                    user_id=key[0],
                    symbol=key[2],
                )
            )
    return out


def changed_since(updated_at: datetime, book: PaperMemory | None) -> bool:
    """The row changed after the book was taken: the snapshot and the database read are not atomic."""
    taken_at = book.taken_at if book is not None else None
    return taken_at is not None and updated_at > taken_at


async def check_books(session: AsyncSession, memory: BookView) -> CheckOutcome:
    """The worker's open book (its published snapshot) against the database's resting paper orders: each order
    in both, with the same remaining quantity and lock. Rows changed after the snapshot are left out."""
    out = CheckOutcome("books_vs_database")
    if memory is None:
        out.skipped = True
        out.notes.append("no paper book given: in-memory books not compared")
        return out
    if isinstance(memory, BookUnavailable):
        out.checked += 1
        out.notes.append(f"paper book unavailable: {memory.reason}")
        out.add(Finding("book_unavailable", "paper", "memory", None, memory.reason))
        return out
    db = {
        o.id: o
        for o in (
            await session.execute(
                select(Order).where(
                    col(Order.mode) == "paper",
                    col(Order.status).in_([str(s) for s in RESTING]),
                    col(Order.venue_seq).is_not(None),
                )
            )
        ).scalars()
    }
    mem = {b.order_id: b for b in memory.open_book_orders() if not b.account.startswith(SYSTEM_PREFIX)}
    others = sorted(set(mem) - set(db))
    closed = (
        {o.id: o for o in (await session.execute(select(Order).where(Order.id.in_(others)))).scalars()}  # type: ignore[attr-defined]
        if others
        else {}
    )
    later = 0
    for oid in sorted(set(db) | set(mem)):
        o, b = db.get(oid), mem.get(oid)
        row = o if o is not None else closed.get(oid)
        if row is not None and changed_since(row.updated_at, memory):
            later += 1
            continue
        out.checked += 1
        if o is not None and b is None:
            out.add(
                Finding(
                    "book_missing_order",
                    "paper",
                    "memory",
                    o.status,
                    "absent",
                    user_id=o.user_id,
                    symbol=o.symbol,
                    order_id=oid,
                )
            )
        elif o is None and b is not None:
            out.add(
                Finding(
                    "book_extra_order",
                    "paper",
                    "memory",
                    row.status if row is not None else "not open",
                    f"resting {fmt(b.remaining_quantity)}",
                    user_id=b.account,
                    order_id=oid,
                )
            )
        elif o is not None and b is not None and o.quantity - o.filled_quantity != b.remaining_quantity:
            out.add(
                Finding(
                    "book_quantity_mismatch",
                    "paper",
                    "memory",
                    fmt(o.quantity - o.filled_quantity),
                    fmt(b.remaining_quantity),
                    user_id=o.user_id,
                    symbol=o.symbol,
                    order_id=oid,
                )
            )
        elif (
            o is not None and b is not None and b.locked is not None and remaining_reservation(o) != b.locked
        ):
            out.add(
                Finding(
                    "book_lock_mismatch",
                    "paper",
                    "memory",
                    fmt(remaining_reservation(o)),
                    fmt(b.locked),
                    user_id=o.user_id,
                    asset=o.reserved_asset,
                    symbol=o.symbol,
                    order_id=oid,
                )
            )
    if later:
        out.notes.append(f"{later} order(s) changed after the book snapshot: compared next time")
    return out


async def check_stuck(session: AsyncSession, now: datetime, threshold_s: float) -> CheckOutcome:
    """Any mode: an order PENDING (never reached its venue) or PENDING_CANCEL for longer than the threshold."""
    out = CheckOutcome("no_stuck_orders")
    cutoff = now - timedelta(seconds=threshold_s)
    pending = [str(Status.PENDING), str(Status.PENDING_CANCEL)]
    for o in (await session.execute(select(Order).where(col(Order.status).in_(pending)))).scalars():
        out.checked += 1
        if o.updated_at < cutoff:
            age = int((now - o.updated_at).total_seconds())
            out.add(
                Finding(
                    "order_stuck",
                    o.mode,
                    "clock",
                    o.status,
                    f"older than {int(threshold_s)}s ({age}s)",
                    user_id=o.user_id,
                    symbol=o.symbol,
                    order_id=o.id,
                    details={"status": o.status, "age_s": age, "mode": o.mode},
                )
            )
    return out


async def run_paper_checks(
    session: AsyncSession, *, now: datetime, memory: BookView, stuck_after_s: float
) -> list[CheckOutcome]:
    outcomes: list[CheckOutcome] = []
    outcomes += await check_ledger(session)
    outcomes.append(await check_locks(session, memory))
    outcomes += await check_fills(session)
    outcomes.append(await check_filled_quantities(session))
    outcomes.append(await check_positions(session))
    outcomes.append(await check_books(session, memory))
    outcomes.append(await check_stuck(session, now, stuck_after_s))
    return outcomes


def flatten(outcomes: Iterable[CheckOutcome]) -> list[Finding]:
    return [f for o in outcomes for f in o.findings]
