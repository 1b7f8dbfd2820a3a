"""The paper worker's one-command-at-a-time fallback and a cancel (chaos seed 22): a database outage is not a
poison command, and a parked cancel still settles its order (SQLite and PostgreSQL)."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from execution.service import build_worker
from execution.worker import ExecutionWorker
from shared.bus.base import BusMessage
from shared.models import Balance, Order, ProcessedCommand
from tests.support.api import Api
from tests.support.eventually import eventually


@pytest.fixture(params=["system", "embedded"])
def either(request: pytest.FixtureRequest) -> Api:
    """The pipeline on PostgreSQL + Redis (`system`) or SQLite + the in-process bus (`embedded`)."""
    return cast(Api, request.getfixturevalue(request.param))


class OutageSessions:
    """The worker's session factory during a database outage: the next `down` sessions are opened on a
    database that cannot be reached (PostgreSQL: a closed port, "Connection refused"; SQLite: a file in a
    directory that does not exist), every later one on the real database, as when the server is back."""

    def __init__(self, real: async_sessionmaker[AsyncSession]) -> None:
        self.real = real
        url = real.kw["bind"].url
        dead = (
            url.set(port=1)
            if url.get_backend_name() == "postgresql"
            else url.set(database="/nonexistent/tb.db")
        )
        self.dead_engine = create_async_engine(dead)
        self.dead = async_sessionmaker(self.dead_engine, expire_on_commit=False)
        self.down = 0
        self.failed = 0

    def __call__(self) -> AsyncSession:
        if self.down > 0:
            self.down -= 1
            self.failed += 1
            return self.dead()
        return self.real()


async def _resting_buy(api: Api, email: str) -> tuple[str, str]:
    auth = await api.user(email)
    me = (await api.client.get("/api/me", headers=auth)).json()
    r = await api.client.post(
        "/api/orders",
        json={"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "50000"},
        headers=auth,
    )
    assert r.status_code == 202, r.text
    oid = r.json()["order_id"]

    async def resting() -> bool:
        async with api.parts.sessions() as s:
            o = await s.get(Order, oid)
            return o is not None and o.status == "NEW"

    await eventually(resting)
    return str(me["id"]), oid


@asynccontextmanager
async def _own_worker(api: Api, sessions: Any = None) -> AsyncIterator[ExecutionWorker]:
    """The running worker stopped and a fresh one (not started: the test hands it its commands) with books
    rebuilt from the database, as after a batch that failed too often."""
    old = api.system.worker
    await old.stop()
    parts = old.rt if sessions is None else dataclasses.replace(old.rt, sessions=sessions)
    worker = build_worker(parts, testnet=False)
    await worker.recover_paper()
    try:
        yield worker
    finally:
        if isinstance(sessions, OutageSessions):
            await sessions.dead_engine.dispose()


async def _pending_cancel(api: Api, oid: str) -> None:
    """What the gateway's cancel does to the order (its command is handed to the worker by the test)."""
    async with api.parts.sessions() as s, s.begin():
        order = await s.get(Order, oid)
        assert order is not None
        order.status = "PENDING_CANCEL"


def _cancel(worker: ExecutionWorker, oid: str) -> BusMessage:
    data = {"command_id": f"{oid}:cancel", "kind": "cancel", "order_id": oid, "mode": "paper"}
    return BusMessage(worker.stream, "1-0", data)


async def _state(api: Api, user_id: str, oid: str) -> tuple[str, str | None, Decimal, bool]:
    async with api.parts.sessions() as s:
        order = await s.get(Order, oid)
        usdt = await s.get(Balance, (user_id, "USDT"))
        mark = await s.get(ProcessedCommand, f"{oid}:cancel")
    assert order is not None
    return order.status, order.reason, usdt.locked if usdt is not None else Decimal(0), mark is not None


async def test_a_cancel_failing_while_the_database_is_down_is_not_parked(either: Api) -> None:
    """Seed 22: the cancel fails because the database is unreachable, and the outage is over by the time
    the worker would park it. It is not parked (left for redelivery, or tried once more), and the order ends
    CANCELED, its lock released."""
    user_id, oid = await _resting_buy(either, "outage@example.com")
    port = OutageSessions(either.parts.sessions)
    async with _own_worker(either, port) as worker:
        assert worker.paper.in_book(oid)
        await _pending_cancel(either, oid)
        msg = _cancel(worker, oid)
        port.down = 1  # the command's own transaction cannot connect
        for _ in range(3):  # as the paper loop: a batch that raises stays unacknowledged and comes back
            try:
                await worker._isolate([msg])
                break
            except Exception:
                status, _, _, processed = await _state(either, user_id, oid)
                assert (status, processed) == ("PENDING_CANCEL", False)
                await worker.recover_paper()
        assert port.failed == 1
        status, reason, locked, processed = await _state(either, user_id, oid)
        assert (status, locked, processed) == ("CANCELED", Decimal(0), True), reason
        assert not worker.paper.in_book(oid)


async def test_a_cancel_failing_during_a_long_outage_waits_for_the_database(either: Api) -> None:
    """The database stays down across the retry and the check that it answers: nothing is parked, every
    delivery fails, and once it is back the cancel is carried out."""
    user_id, oid = await _resting_buy(either, "long-outage@example.com")
    port = OutageSessions(either.parts.sessions)
    async with _own_worker(either, port) as worker:
        await _pending_cancel(either, oid)
        msg = _cancel(worker, oid)
        port.down = 10
        for _ in range(3):
            with pytest.raises(Exception):
                await worker._isolate([msg])
        assert (await _state(either, user_id, oid))[0::3] == ("PENDING_CANCEL", False)
        port.down = 0
        await worker.recover_paper()  # what the paper loop does before the next batch
        await worker._isolate([msg])
        status, _, locked, processed = await _state(either, user_id, oid)
        assert (status, locked, processed) == ("CANCELED", Decimal(0), True)


async def test_a_parked_cancel_leaves_the_order_open_not_pending_cancel(either: Api) -> None:
    """A cancel that fails on its own while the database answers (here the user's stored lock is corrupt,
    so releasing it would make it negative) is parked, and its order goes back to NEW, still resting with
    its lock, instead of staying PENDING_CANCEL for good."""
    user_id, oid = await _resting_buy(either, "poison-cancel@example.com")
    async with either.parts.sessions() as s, s.begin():
        usdt = await s.get(Balance, (user_id, "USDT"))
        assert usdt is not None and usdt.locked > 0
        usdt.locked = Decimal(0)  # the corruption
    async with _own_worker(either) as worker:
        await _pending_cancel(either, oid)
        msg = _cancel(worker, oid)
        with pytest.raises(Exception):
            await worker.handle_paper([msg])  # it does fail on its own
        await worker.recover_paper()
        await worker._isolate([msg])  # parked, not raised
        status, reason, locked, processed = await _state(either, user_id, oid)
        assert (status, locked, processed) == ("NEW", Decimal(0), True)
        assert reason is not None and "cancel failed" in reason
        assert worker.paper.in_book(oid)  # still resting, as the database says


async def test_a_parked_cancel_of_an_order_never_placed_cancels_it(either: Api) -> None:
    """An order canceled before it reached the book whose cancel fails on its own (its stored reservation is
    more than the user has locked, so releasing it fails) ends CANCELED when the command is parked."""
    from datetime import UTC, datetime

    auth = await either.user("poison-unplaced@example.com")
    me = (await either.client.get("/api/me", headers=auth)).json()
    oid = "unplaced000000000000000000000000a"[:32]
    now = datetime.now(UTC)
    async with either.parts.sessions() as s, s.begin():
        s.add(
            Order(
                id=oid,
                user_id=me["id"],
                client_order_id="unplaced",
                request_hash="x",
                mode="paper",
                symbol="BTCUSDT",
                side="BUY",
                type="LIMIT",
                time_in_force="GTC",
                quantity=Decimal("0.01"),
                price=Decimal("50000"),
                status="PENDING_CANCEL",
                reserved_asset="USDT",
                reserved_amount=Decimal("500.5"),  # never locked: the release would go below zero
                reserved_price_cap=Decimal("50000"),
                created_at=now,
                updated_at=now,
            )
        )
    async with _own_worker(either) as worker:
        msg = _cancel(worker, oid)
        with pytest.raises(Exception):
            await worker.handle_paper([msg])  # it does fail on its own
        await worker.recover_paper()
        await worker._isolate([msg])  # parked, not raised
        status, _, locked, processed = await _state(either, str(me["id"]), oid)
        assert (status, locked, processed) == ("CANCELED", Decimal(0), True)
