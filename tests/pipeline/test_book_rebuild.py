"""The paper books after a batch whose transaction died (issue #20): the worker's books in memory held what
the batch matched, the database did not. They must be rebuilt from the database before the next batch is
matched, also when the database is still down at the first attempt (SQLite and PostgreSQL).

The running worker is replaced by one built as the composition root builds it, on a session factory that
injects the failures: the next commit dies (PostgreSQL: the worker's own backend is terminated with
`pg_terminate_backend`, so the commit's outcome is unknown to it and the server rolls it back; SQLite: a
statement run at commit fails), and the session opened right after it cannot reach the database (a closed
port, a file in a directory that does not exist), as while the server restarts. Everything after that runs on
the real database.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import cast

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session
from sqlmodel import col, select

from execution.service import build_worker
from execution.worker import ExecutionWorker
from shared.models import Order
from tests.support.api import Api
from tests.support.eventually import eventually

OPEN = ("NEW", "PARTIALLY_FILLED", "PENDING_CANCEL")


@pytest.fixture(params=["system", "embedded"])
def either(request: pytest.FixtureRequest) -> Api:
    """The pipeline on PostgreSQL + Redis (`system`) or SQLite + the in-process bus (`embedded`)."""
    return cast(Api, request.getfixturevalue(request.param))


class DyingCommit:
    """The worker's session factory: once armed, the next commit dies, and the next session opened after
    that is on a database that cannot be reached; then the real database again."""

    def __init__(self, real: async_sessionmaker[AsyncSession]) -> None:
        self.real = real
        url = real.kw["bind"].url
        self.postgres = url.get_backend_name() == "postgresql"
        dead = url.set(port=1) if self.postgres else url.set(database="/nonexistent/tb.db")
        self.dead_engine = create_async_engine(dead)
        self.dead = async_sessionmaker(self.dead_engine, expire_on_commit=False)
        self.armed = False
        self.down = 0
        self.commits_killed = 0
        self.sessions_refused = 0

    def __call__(self) -> AsyncSession:
        if self.down > 0:
            self.down -= 1
            self.sessions_refused += 1
            return self.dead()
        session = self.real()
        event.listen(session.sync_session, "before_commit", self._before_commit)
        return session

    def _before_commit(self, session: Session) -> None:
        if not self.armed:
            return
        self.armed = False
        self.commits_killed += 1
        self.down = 1  # the database is still down when the worker next opens a session
        if self.postgres:
            session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        else:
            session.execute(text("INSERT INTO no_such_table VALUES (1)"))
        raise AssertionError("the commit should have failed")  # pragma: no cover


async def _place(api: Api, who: dict[str, str], side: str, price: str) -> str:
    r = await api.client.post(
        "/api/orders",
        json={"symbol": "BTCUSDT", "side": side, "type": "LIMIT", "quantity": "0.01", "price": price},
        headers=who,
    )
    assert r.status_code == 202, r.text
    return str(r.json()["order_id"])


async def _rests(api: Api, worker: ExecutionWorker, oid: str) -> None:
    """Wait until `oid` rests, committed (the book takes it before its transaction commits)."""

    async def committed() -> bool:
        return await _statuses(api, oid) == ["NEW"] and worker.paper.in_book(oid)

    await eventually(committed, message="the order never came to rest")


async def _statuses(api: Api, *ids: str) -> list[str]:
    async with api.parts.sessions() as s:
        rows = (await s.execute(select(Order).where(col(Order.id).in_(ids)))).scalars().all()
        by_id = {o.id: o.status for o in rows}
    return [by_id.get(i, "?") for i in ids]


async def _user(api: Api, email: str) -> tuple[str, dict[str, str]]:
    who = await api.user(email)
    return str((await api.client.get("/api/me", headers=who)).json()["id"]), who


async def _book_agrees_with_database(api: Api, worker: ExecutionWorker, accounts: list[str]) -> None:
    """Every open paper order the database holds rests in the book with its remainder, and nothing else (the
    market maker is off: the test's users are every account)."""
    async with api.parts.sessions() as s:
        rows = (
            await s.execute(
                select(Order).where(
                    col(Order.mode) == "paper",
                    col(Order.symbol) == "BTCUSDT",
                    col(Order.status).in_(OPEN),
                    col(Order.venue_seq).is_not(None),
                )
            )
        ).scalars()
        stored = {o.id: o.quantity - o.filled_quantity for o in rows}
    book = {
        o.order_id: o.remaining_quantity
        for account in accounts
        for o in worker.paper.exchange.open_orders(account, "BTCUSDT")
    }
    assert book == stored, {"in memory": book, "in the database": stored}


@pytest.fixture
async def dying_worker(either: Api) -> AsyncIterator[tuple[ExecutionWorker, DyingCommit]]:
    old = either.system.worker
    await old.stop()
    sessions = DyingCommit(old.rt.sessions)
    worker = build_worker(dataclasses.replace(old.rt, sessions=sessions), testnet=False)
    either.system.worker = worker
    await worker.start()
    try:
        await worker.ready.wait()
        yield worker, sessions
    finally:
        await worker.stop()
        await sessions.dead_engine.dispose()


async def test_books_are_rebuilt_before_the_next_batch_after_a_commit_dies_and_the_database_is_still_down(
    either: Api, dying_worker: tuple[ExecutionWorker, DyingCommit]
) -> None:
    """A sell rests; a crossing buy is matched against it in memory, but the batch's commit dies, and the first
    rebuild cannot reach the database. Before the fix the paper loop's rebuild was best effort: it emptied
    the books, failed, and the redelivered buy was matched against empty books (it rested, crossing the sell
    the database still held open: a crossed book, the sell lost from memory)."""
    worker, sessions = dying_worker
    seller_id, seller = await _user(either, "rebuild-seller@example.com")
    buyer_id, buyer = await _user(either, "rebuild-buyer@example.com")
    sell = await _place(either, seller, "SELL", "61000")
    await _rests(either, worker, sell)

    sessions.armed = True
    buy = await _place(either, buyer, "BUY", "61000")

    async def both_filled() -> bool:
        statuses = await _statuses(either, sell, buy)
        assert statuses == ["FILLED", "FILLED"], f"(sell, buy) are {statuses}"
        return True

    await eventually(both_filled, timeout=20, message="the crossing orders did not both fill")
    assert (sessions.commits_killed, sessions.sessions_refused) == (1, 1)
    await _book_agrees_with_database(either, worker, [seller_id, buyer_id])
    assert not worker.paper.in_book(sell) and not worker.paper.in_book(buy)


async def test_a_resting_order_survives_a_dead_commit_and_a_failed_rebuild(
    either: Api, dying_worker: tuple[ExecutionWorker, DyingCommit]
) -> None:
    """The batch that dies places an order that does not cross; the order the book already held must still be
    there afterwards (no lost order), the new one rests once (no phantom, no double), both as stored."""
    worker, sessions = dying_worker
    user_id, who = await _user(either, "rebuild-resting@example.com")
    first = await _place(either, who, "BUY", "50000")
    await _rests(either, worker, first)

    sessions.armed = True
    second = await _place(either, who, "BUY", "50001")

    async def both_rest() -> bool:
        return await _statuses(either, first, second) == ["NEW", "NEW"] and worker.paper.in_book(second)

    await eventually(both_rest, timeout=20, message="the second order did not come to rest")
    assert (sessions.commits_killed, sessions.sessions_refused) == (1, 1)
    assert worker.paper.in_book(first), "the order resting before the failure is gone from the book"
    await _book_agrees_with_database(either, worker, [user_id])
    depth = worker.paper.exchange.depth("BTCUSDT")
    assert depth.bids == ((Decimal("50001.00"), Decimal("0.01")), (Decimal("50000.00"), Decimal("0.01")))
