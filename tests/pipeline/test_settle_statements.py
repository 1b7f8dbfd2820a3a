"""Issue #16: a batch's cost in the execution worker is its round trips. Folding a fill into its position reads
and locks the position's row in the statement that makes it if missing, and on PostgreSQL the position's new
values, the status rows and the outbox rows are one statement; what they write is the same on both databases."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine
from sqlmodel import col, select

from execution.engine import apply_result, mark_and_load
from execution.venues.base import VenueResult
from shared.clock import SystemClock
from shared.db import session_factory, unit_of_work
from shared.models import Balance, Fill, Order, OrderEvent, OutboxMessage, Position, ProcessedCommand, User
from shared.outbox import committed_rows, publish_after_commit
from shared.paper.ledger import deposit_entry, reserve_entry
from shared.trading_errors import LedgerError
from tests.chaos.conftest import QTY, T0, Db, db, db_url, filled, market_order  # noqa: F401 (fixtures)
from tests.support.statements import statements


async def _settle(d: Db, oid: str, price: str, trade: str) -> tuple[list[str], list[Any]]:
    return await _settle_result(d, filled(oid, "BUY", price, trade=trade))


async def _settle_result(d: Db, result: VenueResult) -> tuple[list[str], list[Any]]:
    """Apply a result in a unit of work that publishes after commit: (its statements, its eager rows)."""
    with statements(d.engine) as seen:
        async with unit_of_work(d.sessions) as s:
            publish_after_commit(s)
            await apply_result(s, SystemClock(), result)
    return seen, committed_rows(s)


async def test_a_fill_settles_its_position_events_and_outbox_in_few_statements(db: Db) -> None:  # noqa: F811
    async with unit_of_work(db.sessions) as s:
        s.add(market_order("o1"))
        s.add(market_order("o2"))
    postgres = db.engine.dialect.name == "postgresql"
    for oid, price, trade in (("o1", "60000", "t1"), ("o2", "60010", "t2")):  # a new position, then its row
        seen, eager = await _settle(db, oid, price, trade)

        positions = [q for q in seen if "positions" in q]
        assert not any(q.startswith("SELECT") for q in positions), positions  # read by the upsert itself
        lock = [q for q in positions if "INSERT INTO positions" in q and "UPDATE positions" not in q]
        assert len(lock) == 1 and "ON CONFLICT" in lock[0] and "RETURNING" in lock[0], positions
        if postgres:  # with the fills, in one round trip
            assert (
                "INSERT INTO fills" in lock[0]
                and len([q for q in seen if "INTO fills" in q and "UPDATE positions" not in q]) == 1
            ), seen
        writes = [q for q in positions if "UPDATE positions" in q]
        assert len(writes) == 1, positions
        if postgres:  # the order, the position, the status row and the outbox rows: one round trip
            for table in ("UPDATE orders", "INTO order_events", "INTO outbox"):
                assert table in writes[0], (table, writes)
            rest = [q for q in seen if q != writes[0]]
            assert not [q for q in rest if any(t in q for t in ("UPDATE orders", "order_events", "outbox"))]
        # published after commit in the order written: the position, the trade, then the order
        assert [r.payload["type"] for r in eager] == ["POSITION_UPDATE", "TRADE", "ORDER_UPDATE"], eager
        assert [r.id for r in eager] == sorted(r.id for r in eager)
        assert eager[2].payload["data"]["order_id"] == oid and eager[2].payload["data"]["status"] == "FILLED"

    seen, eager = await _settle(db, "o2", "60010", "t2")  # redelivered: recorded already, nothing applies
    assert eager == [] and not [q for q in seen if "UPDATE positions" in q or "INTO outbox" in q], seen

    async with db.sessions() as s:
        position = (await s.execute(select(Position))).scalars().one()
        fills = (await s.execute(select(Fill.trade_id).order_by(col(Fill.id)))).scalars().all()
        orders = {o.id: o.status for o in (await s.execute(select(Order))).scalars()}
        events = (await s.execute(select(OrderEvent).order_by(col(OrderEvent.id)))).scalars().all()
        outbox = (await s.execute(select(OutboxMessage).order_by(col(OutboxMessage.id)))).scalars().all()
    assert (position.quantity, position.avg_entry_price) == (Decimal("0.002"), Decimal("60005"))
    assert position.cost_basis == Decimal("120.01")
    assert orders == {"o1": "FILLED", "o2": "FILLED"}
    assert fills == ["t1", "t2"]
    assert [(e.order_id, e.status, e.filled_quantity) for e in events] == [
        ("o1", "FILLED", Decimal("0.001")),
        ("o2", "FILLED", Decimal("0.001")),
    ]
    assert [m.payload["type"] for m in outbox] == ["POSITION_UPDATE", "TRADE", "ORDER_UPDATE"] * 2
    assert all(m.eager for m in outbox)
    last = outbox[3].payload["data"]  # the second POSITION_UPDATE, as stored
    assert (last["quantity"], last["avg_entry_price"], last["source"]) == ("0.002", "60005", "fill")


async def test_a_results_ledger_entries_move_with_it_and_a_short_balance_rolls_it_all_back(db: Db) -> None:  # noqa: F811
    """The journal of a result: on PostgreSQL in the same statement as the rest, each user's BALANCE_UPDATE
    carrying the balances it left (as stored and as published); an entry the balance cannot cover is the
    ledger's error and nothing of the result is written."""
    async with unit_of_work(db.sessions) as s:
        s.add(market_order("o1"))
        s.add(market_order("o2"))
    fund = VenueResult(journal=(deposit_entry("u1", "USDT", Decimal("1000")),))
    lock = reserve_entry("u1", "USDT", Decimal("100.5"), "o1")
    seen, eager = await _settle_result(
        db, fund + filled("o1", "BUY", "60000", trade="t1") + VenueResult(journal=(lock,))
    )
    if db.engine.dialect.name == "postgresql":
        writes = [q for q in seen if "INTO balances" in q]
        assert len(writes) == 1 and "INTO outbox" in writes[0] and "UPDATE positions" in writes[0], seen
    assert [r.payload["type"] for r in eager] == [
        "POSITION_UPDATE",
        "TRADE",
        "ORDER_UPDATE",
        "BALANCE_UPDATE",
    ]
    expected = [{"asset": "USDT", "free": "899.5", "locked": "100.5", "total": "1000"}]
    assert eager[3].payload["data"] == {"mode": "paper", "balances": expected}
    async with db.sessions() as s:
        stored = (await s.execute(select(OutboxMessage).order_by(col(OutboxMessage.id)))).scalars().all()
        balance = (await s.execute(select(Balance).where(col(Balance.account_id) == "u1"))).scalars().one()
    assert stored[3].payload["data"] == {"mode": "paper", "balances": expected}
    assert (balance.free, balance.locked) == (Decimal("899.5"), Decimal("100.5"))

    too_much = reserve_entry("u1", "USDT", Decimal("900"), "o2")
    with pytest.raises(LedgerError):
        await _settle_result(db, filled("o2", "BUY", "60010", trade="t2") + VenueResult(journal=(too_much,)))
    async with db.sessions() as s:
        assert (await s.execute(select(Order.status).where(col(Order.id) == "o2"))).scalar_one() == "PENDING"
        assert len((await s.execute(select(OutboxMessage))).scalars().all()) == 4
        assert len((await s.execute(select(OrderEvent))).scalars().all()) == 1
        position = (await s.execute(select(Position))).scalars().one()
        balance = (await s.execute(select(Balance).where(col(Balance.account_id) == "u1"))).scalars().one()
    assert position.quantity == Decimal("0.001")
    assert (balance.free, balance.locked) == (Decimal("899.5"), Decimal("100.5"))


async def test_a_batch_marks_its_commands_and_loads_their_orders_in_one_statement(db: Db) -> None:  # noqa: F811
    """A command is new once (its redelivery conflicts with the mark); the orders come back locked and as
    stored now, whatever the session holds. On PostgreSQL marks and read are one round trip, the same statement
    whatever the batch's size, run by asyncpg itself, and the orders detached snapshots equal to what the ORM
    loads (amounts and times processed as its column types do), which no flush writes."""
    async with unit_of_work(db.sessions) as s:
        s.add(market_order("o1"))
        s.add(market_order("o2"))
    now = SystemClock().now()
    postgres = db.engine.dialect.name == "postgresql"
    with statements(db.engine) as seen:
        async with unit_of_work(db.sessions) as s:
            fresh, orders, _ = await mark_and_load(s, ["c1", "c2"], {"o1", "o2"}, now)
        async with unit_of_work(db.sessions) as s:
            stale = (await s.execute(select(Order).where(col(Order.id) == "o2"))).scalars().one()
            await s.execute(update(Order).where(col(Order.id) == "o2").values(status="NEW"))
            again, reloaded, _ = await mark_and_load(s, ["c2", "c3"], ["o2"], now)
            assert reloaded["o2"].status == "NEW"  # as stored, not as first read
            if postgres:
                assert sa_inspect(reloaded["o2"]).detached and reloaded["o2"] is not stale
                reloaded["o2"].status = "CANCELED"  # no flush writes a snapshot
            else:
                assert reloaded["o2"] is stale
    assert (fresh, sorted(orders)) == ({"c1", "c2"}, ["o1", "o2"])
    assert again == {"c3"}
    async with db.sessions() as s:
        stored = {o.id: o for o in (await s.execute(select(Order))).scalars()}
    assert stored["o2"].status == "NEW"
    assert orders["o1"].model_dump() == stored["o1"].model_dump()  # every column, as the ORM reads it
    if postgres:
        both = [q for q in seen if "processed_commands" in q]
        assert len(both) == 2 and all("FROM orders" in q and "FOR UPDATE" in q for q in both), seen
        # one statement text whatever a batch's size (asyncpg prepares it once): as a multi-row VALUES it had
        # no cache key, and compiling the read of every order column for each batch was a sixth of the CPU
        assert both[0] == both[1]


async def test_the_write_statements_answer_carries_its_outbox_rows_once(db_url: str, db: Db) -> None:  # noqa: F811
    """PostgreSQL: the statement answers the outbox rows it wrote (ids, filled-in BALANCE_UPDATEs) as JSON, which
    the driver decodes. It came on every moved balance's row, so a batch moving eight balances decoded it eight
    times (6.5% of the worker's samples at 300 orders/s)."""
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the write statement is PostgreSQL's")
    decoded: list[str] = []

    def loads(raw: str) -> Any:
        decoded.append(raw)
        return orjson.loads(raw)

    engine = create_async_engine(db_url, json_deserializer=loads)
    try:
        async with unit_of_work(db.sessions) as s:
            s.add(market_order("o1"))
        funding = tuple(
            deposit_entry(account, asset, Decimal(10))
            for account in ("u1", "u2", "u3", "u4")
            for asset in ("USDT", "BTC")
        )
        result = VenueResult(journal=funding) + filled("o1", "BUY", "60000", trade="t1")
        async with unit_of_work(session_factory(engine)) as s:
            publish_after_commit(s)
            await apply_result(s, SystemClock(), result)
        eager = committed_rows(s)
    finally:
        await engine.dispose()
    answers = [raw for raw in decoded if '"payload"' in raw]
    assert len(answers) == 1, answers
    balances = [r.payload["data"]["balances"] for r in eager if r.payload["type"] == "BALANCE_UPDATE"]
    assert len(balances) == 4 and all(len(b) == 2 for b in balances)  # each user's two, filled in


def _paper_order(oid: str, user: str = "u1") -> Order:
    order = market_order(oid)
    order.mode, order.user_id = "paper", user
    return order


async def test_a_paper_batchs_fills_go_in_with_its_writes_their_positions_locked_with_its_orders(
    db: Db,  # noqa: F811
) -> None:
    """PostgreSQL: ``mark_and_load`` locks the batch's positions with its orders, so the fills and the positions'
    new values (made or updated) go in with the batch's other writes: two statements in all, where the fills
    had one of their own. The same rows on both databases; a fill recorded before fails the batch there."""
    async with unit_of_work(db.sessions) as s:
        s.add(User(id="u2", email="u2@example.com", password_hash="x", created_at=T0, updated_at=T0))
    async with unit_of_work(db.sessions) as s:
        for order in (_paper_order("p1"), _paper_order("p2"), _paper_order("p3", user="u2")):
            s.add(order)
    await _settle_result(db, filled("p2", "BUY", "60000", trade="t2"))  # u1 holds a position; u2 none
    postgres = db.engine.dialect.name == "postgresql"

    async def batch(result: VenueResult, commands: list[str]) -> Any:
        with statements(db.engine) as seen:
            async with unit_of_work(db.sessions) as s:
                publish_after_commit(s)
                marked = await mark_and_load(s, commands, {"p1", "p3"}, SystemClock().now())
                await apply_result(s, SystemClock(), result, orders=marked.orders, positions=marked.positions)
        return marked, committed_rows(s), seen

    result = filled("p1", "BUY", "60010", trade="t1") + filled("p3", "BUY", "61000", trade="t3")
    marked, eager, seen = await batch(result, ["c1", "c3"])
    if postgres:
        held = marked.positions
        assert held is not None and held.keys == {("u1", "paper", "BTCUSDT"), ("u2", "paper", "BTCUSDT")}
        assert (
            list(held.rows) == [("u1", "paper", "BTCUSDT")]
            and held.rows[("u1", "paper", "BTCUSDT")].quantity == QTY
        )
        touching = [q for q in seen if "fills" in q or "positions" in q]
        assert len(touching) == 2, touching  # the marks and read, then every write
        assert "FOR UPDATE" in touching[0] and "processed_commands" in touching[0]
        for part in (
            "INSERT INTO fills",
            "INSERT INTO positions",
            "UPDATE positions",
            "UPDATE orders",
            "INTO outbox",
        ):
            assert part in touching[1], (part, touching[1])
    assert [r.payload["type"] for r in eager] == ["POSITION_UPDATE"] * 2 + ["TRADE"] * 2 + [
        "ORDER_UPDATE"
    ] * 2
    async with db.sessions() as s:
        positions = {p.user_id: p for p in (await s.execute(select(Position))).scalars()}
        fills = (await s.execute(select(Fill.trade_id).order_by(col(Fill.id)))).scalars().all()
    assert (positions["u1"].quantity, positions["u1"].avg_entry_price) == (2 * QTY, Decimal("60005"))
    assert (positions["u2"].quantity, positions["u2"].avg_entry_price) == (QTY, Decimal("61000"))
    assert fills == ["t2", "t1", "t3"]

    again = filled("p1", "BUY", "60010", trade="t1")  # a fill recorded before
    if postgres:  # the book's fills are new: one that is not fails the batch, which writes nothing
        with pytest.raises(IntegrityError):
            await batch(again, ["c4"])
    else:  # SQLite: skipped as recorded (the batch has no locked positions there)
        _, eager, _ = await batch(again, ["c4"])
        assert eager == []
    async with db.sessions() as s:
        assert (
            await s.execute(select(col(Position.quantity)).where(col(Position.user_id) == "u1"))
        ).scalar_one() == 2 * QTY
        marks = (await s.execute(select(col(ProcessedCommand.command_id)))).scalars().all()
    assert sorted(marks) == (["c1", "c3"] if postgres else ["c1", "c3", "c4"])
