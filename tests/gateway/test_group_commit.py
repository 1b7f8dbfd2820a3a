"""Group commit on PostgreSQL (issue #16): funded users' paper orders that arrive while an acceptance statement
runs are accepted together by the next one, each as if alone: its own answer, reservation and events; two orders
sharing a balance or a client order id never share a statement. (SQLite has one writer: its placements go one
at a time, tested with the others in test_order_intake.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col

from shared.models import Order
from shared.streams import PRIVATE_EVENTS
from tests.support.api import Api, make_settings, running_api
from tests.support.eventually import eventually

BUY = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001", "price": "50000"}
RESERVED = Decimal("0.001") * Decimal("50000") * Decimal("1.001")  # price x quantity + the taker fee


@pytest.fixture
async def api(pg_url: str, redis_url: str, redis_prefix: str) -> AsyncIterator[Api]:
    settings = make_settings(
        pg_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        order_rate_limit="1000/minute",
        paper_starting_balances_csv="USDT=1000,BTC=1",
    )
    async with running_api(settings) as api:
        yield api


async def _funded(api: Api, email: str) -> dict[str, str]:
    """A user the gateway knows funded: their next paper orders go to the group commit."""
    auth = await api.user(email)
    for _ in range(2):  # the first funds the account, the second finds it funded
        r = await api.client.post("/api/orders", json={**BUY, "quantity": "0.0001"}, headers=auth)
        assert r.status_code == 202, r.text
    return auth


def _post(api: Api, auth: dict[str, str], **body: Any) -> asyncio.Task[Any]:
    return asyncio.create_task(api.client.post("/api/orders", json={**BUY, **body}, headers=auth))


@asynccontextmanager
async def _usdt_locked(api: Api, account_id: str) -> AsyncIterator[AsyncConnection]:
    """The account's USDT balance row locked, as a worker's transaction holding it would."""
    async with api.parts.engine.connect() as lock:
        await lock.execute(
            text("SELECT 1 FROM balances WHERE account_id = :a AND asset = 'USDT' FOR UPDATE"),
            {"a": account_id},
        )
        yield lock


async def test_orders_arriving_together_are_accepted_together_each_as_if_alone(api: Api) -> None:
    group = api.parts.group_commit
    # one statement at a time while fewer than spill_at wait: the next gathers all that arrived meanwhile
    assert group.spill_at > 11
    blocker = await _funded(api, "blocker@example.com")
    users = [await _funded(api, f"u{i}@example.com") for i in range(5)]
    blocker_id = (await api.client.get("/api/me", headers=blocker)).json()["id"]

    # The blocker's order runs alone and waits on its balance row, held here, while the others arrive.
    async with _usdt_locked(api, blocker_id) as lock:
        before = group.statements
        first = _post(api, blocker)
        await eventually(
            lambda: group.pending == 0 and not first.done(), message="the blocker's statement runs"
        )
        burst = {
            "dup-1": _post(api, users[0], client_order_id="dup"),
            # the same order again: a replay, not a second one
            "dup-2": _post(api, users[0], client_order_id="dup"),
            "ok": _post(api, users[1]),
            "short": _post(api, users[1], quantity="1"),  # 50,050 USDT: not affordable, nothing written
            **{
                f"u{i}-{n}": _post(api, users[i], client_order_id=f"u{i}-{n}")
                for i in (2, 3, 4)
                for n in (1, 2)
            },
        }
        gone = _post(api, users[4], client_order_id="cancelled")
        await eventually(lambda: group.pending == len(burst) + 1, message="every order waits for a statement")
        gone.cancel()
        await lock.rollback()  # the blocker's statement goes on; the rest follow it
    answers = {name: await task for name, task in burst.items()}
    assert (await first).status_code == 202

    # Two statements for the burst: one order per balance each (every user here buys with USDT).
    assert group.statements - before == 3
    assert sorted((answers["dup-1"].status_code, answers["dup-2"].status_code)) == [200, 202]
    assert answers["dup-1"].json()["order_id"] == answers["dup-2"].json()["order_id"]
    assert answers["short"].status_code == 422 and "USDT" in answers["short"].json()["detail"]
    accepted = {n: r.json()["order_id"] for n, r in answers.items() if r.status_code == 202}
    assert set(accepted) >= {"ok", "u2-1", "u2-2", "u3-1", "u3-2", "u4-1", "u4-2"}

    # Each as if alone: its reservation, and its events published once.
    small = 2 * Decimal("0.0001") * Decimal("50000") * Decimal("1.001")
    for auth, orders in ((users[0], 1), (users[1], 1), (users[2], 2), (users[3], 2), (users[4], 2)):
        rows = (await api.client.get("/api/balances", headers=auth)).json()
        usdt = next(b for b in rows if b["asset"] == "USDT")
        assert Decimal(usdt["locked"]) == small + orders * RESERVED, usdt
        assert Decimal(usdt["free"]) == Decimal(1000) - small - orders * RESERVED, usdt

    async def published() -> dict[str, int]:
        counts: dict[str, int] = {}
        for m in await api.parts.bus.range_after(PRIVATE_EVENTS, "0"):
            if m.data.get("type") == "ORDER_UPDATE":
                oid = m.data["data"]["order_id"]
                counts[oid] = counts.get(oid, 0) + 1
        return counts if set(accepted.values()) <= set(counts) else {}

    counts = await eventually(published, message="every accepted order's ORDER_UPDATE")
    assert {counts[oid] for oid in accepted.values()} == {1}

    # The order whose request was cancelled while it waited was never written.
    async with api.parts.sessions() as s:
        found = (
            await s.execute(select(col(Order.id)).where(col(Order.client_order_id) == "cancelled"))
        ).all()
    assert found == []


async def test_a_backlog_spills_into_a_second_statement_past_a_stuck_one(api: Api) -> None:
    """One statement stuck (on a lock: a balance row a worker's transaction holds) no longer holds every
    placement: once `spill_at` orders wait, a second statement takes those that share no balance with it."""
    group = api.parts.group_commit
    blocker = await _funded(api, "stuck@example.com")
    users = [await _funded(api, f"s{i}@example.com") for i in range(group.spill_at)]
    blocker_id = (await api.client.get("/api/me", headers=blocker)).json()["id"]

    async with _usdt_locked(api, blocker_id) as lock:
        first = _post(api, blocker)
        await eventually(
            lambda: group.pending == 0 and not first.done(), message="the blocker's statement runs"
        )
        same = _post(api, blocker, client_order_id="same-balance")  # its balance is the stuck statement's
        others = [_post(api, u) for u in users]
        await eventually(
            lambda: all(t.done() for t in others), message="the others accepted past the stuck statement"
        )
        assert {t.result().status_code for t in others} == {202}
        assert not first.done() and not same.done()  # the blocker's balance: after the stuck statement
        await lock.rollback()
    assert (await first).status_code == 202
    assert (await same).status_code == 202
    rows = (await api.client.get("/api/balances", headers=blocker)).json()
    usdt = next(b for b in rows if b["asset"] == "USDT")
    small = 2 * Decimal("0.0001") * Decimal("50000") * Decimal("1.001")
    assert Decimal(usdt["locked"]) == small + 2 * RESERVED, usdt


async def test_the_statement_runs_on_asyncpg_itself_and_a_dropped_connection_leaves_the_pool(
    api: Api,
) -> None:
    """The group commit's statement goes to asyncpg directly, not through SQLAlchemy's execution (its share of
    the gateway's CPU was larger than the statement's), on a connection of the engine's pool. Connections
    PostgreSQL dropped still leave the pool as they did through SQLAlchemy: placements fail at most once per
    dropped connection, then are accepted again."""
    auth = await _funded(api, "raw@example.com")
    seen: list[str] = []

    def before(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    engine = api.parts.engine.sync_engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        accepted = await _post(api, auth)
    finally:
        event.remove(engine, "before_cursor_execute", before)
    assert accepted.status_code == 202, accepted.text
    assert not [q for q in seen if "INSERT INTO orders" in q], seen

    async with api.parts.engine.connect() as admin:  # every other connection of this database dropped
        dropped = (
            await admin.execute(
                text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )
            )
        ).scalar_one()
    assert dropped >= 1

    async def place() -> int | str:
        try:
            return (await _post(api, auth)).status_code
        except Exception as exc:  # an error the app answers 500 (the test client raises it)
            return type(exc).__name__

    codes = [await place() for _ in range(dropped + 2 + 3)]
    assert len([c for c in codes if c != 202]) <= dropped + 2, codes  # the dropped ones, this test's own
    assert codes[-3:] == [202, 202, 202], codes
