"""No request holds (or needs) the database's write lock longer than its own writes take, on the embedded
SQLite default and on PostgreSQL alike:

- an audited read (``GET /api/admin/users``) reads lock-free and writes its audit row after its read
  transaction ended, in a short write transaction of its own (written inside the read's deferred transaction,
  SQLite refused the upgrade with "database is locked" whenever another connection was writing: a 500);
- storing exchange keys (``PUT /api/keys/binance-testnet``, ``POST /auth/register`` with keys) asks the
  exchange before the request's transaction runs its first statement (on SQLite, BEGIN IMMEDIATE: the single
  write lock), so a slow exchange never stalls anyone else's writes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlmodel import col

from shared.models import AuditLog, ExchangeCredential
from shared.settings import Settings
from tests.support.api import Api, make_settings, running_api
from tests.support.eventually import eventually
from tradebridge.embedded import create_embedded_app

pytestmark = pytest.mark.asyncio

ADMIN = "admin@example.com"
PW = "correct horse battery"
ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001", "price": "20000"}
VERIFY_CALL = ("GET", "/api/v3/account")  # the one signed read the key check makes


@pytest.fixture(params=["postgresql", "sqlite"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    extra: dict[str, Any] = {"admin_email": ADMIN, "admin_password": PW}
    if "binance_double" in request.fixturenames:
        extra["binance_testnet_url"] = request.getfixturevalue("binance_double").url
    if request.param == "postgresql":
        return make_settings(
            request.getfixturevalue("pg_url"),
            redis_url=request.getfixturevalue("redis_url"),
            redis_prefix=request.getfixturevalue("redis_prefix"),
            **extra,
        )
    return make_settings(f"sqlite+aiosqlite:///{tmp_path / 'tradebridge.db'}", **extra)


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    """PostgreSQL with Redis through create_app, or `tradebridge up`'s embedded app on SQLite."""
    if settings.is_sqlite:
        async with running_api(settings, app=create_embedded_app(settings)) as api:
            await api.system.worker.ready.wait()
            yield api
    else:
        async with running_api(settings) as api:
            yield api


async def _list_users_audits(api: Api) -> list[AuditLog]:
    async with api.parts.read_sessions() as s:
        rows = await s.execute(select(AuditLog).where(col(AuditLog.action) == "admin.list_users"))
        return list(rows.scalars())


async def test_admin_lists_users_while_another_connection_writes(api: Api) -> None:
    admin = await api.login(ADMIN)
    auth = {"Authorization": f"Bearer {admin['access_token']}"}
    await api.register("someone@example.com")
    sqlite = api.parts.settings.is_sqlite
    async with api.parts.engine.connect() as writer:
        # Another writer holds the lock the audit row needs: SQLite's single one, PostgreSQL's on audit_log.
        if sqlite:
            await writer.exec_driver_sql("COMMIT")  # out of the dialect's implicit transaction first
            await writer.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            await writer.execute(text("LOCK TABLE audit_log IN EXCLUSIVE MODE"))
        listing = asyncio.create_task(api.client.get("/api/admin/users", headers=auth))
        if sqlite:
            # The audit row waits for the lock (it used to fail at once: 500 "database is locked").
            done, _ = await asyncio.wait({listing}, timeout=2)
            assert not done, listing.result().text
        else:
            # Its read transaction ended before the audit row waits: nothing of it holds `users`.
            await eventually(lambda: _waits_on_a_lock(api), message="the audit insert never waited")
            async with api.parts.engine.connect() as probe:
                held = await probe.execute(
                    text(
                        "SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                        "WHERE c.relname = 'users' AND l.pid <> pg_backend_pid()"
                    )
                )
            assert held.scalar_one() == 0, "the read transaction is still open while its audit row waits"
        await writer.rollback()
    r = await asyncio.wait_for(listing, timeout=30)
    assert r.status_code == 200, r.text
    assert sorted(u["email"] for u in r.json()) == [ADMIN, "someone@example.com"]
    [audit] = await _list_users_audits(api)
    assert audit.details == {"count": 2} and audit.ip == "203.0.113.7"


async def _waits_on_a_lock(api: Api) -> bool:
    """A connection of its own each time: pg_stat_activity is a snapshot for the rest of a transaction."""
    async with api.parts.engine.connect() as probe:
        waiting = await probe.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND query ILIKE 'INSERT INTO audit_log%'"
            )
        )
        return bool(waiting.scalar_one())


async def test_admin_lists_users_while_orders_are_placed(api: Api) -> None:
    admin = await api.login(ADMIN)
    auth = {"Authorization": f"Bearer {admin['access_token']}"}
    trader = await api.user("trader@example.com")

    async def trading() -> list[int]:
        return [
            (await api.client.post("/api/orders", json=ORDER, headers=trader)).status_code for _ in range(10)
        ]

    async def listing() -> list[int]:
        return [(await api.client.get("/api/admin/users", headers=auth)).status_code for _ in range(10)]

    orders, lists = await asyncio.wait_for(asyncio.gather(trading(), listing()), timeout=60)
    assert orders == [202] * 10 and lists == [200] * 10
    assert len(await _list_users_audits(api)) == 10


async def _no_open_transaction(api: Api) -> bool:
    async with api.parts.engine.connect() as probe:
        idle = await probe.execute(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
            )
        )
        return bool(idle.scalar_one() == 0)


@pytest.mark.parametrize("route", ["put", "register"])
async def test_a_slow_key_check_does_not_stall_other_writes(
    api: Api, binance_double: Any, binance_account: Any, route: str
) -> None:
    trader = await api.user("trader@example.com")
    keys = {"api_key": binance_account.api_key, "api_secret": binance_account.api_secret}
    binance_double.delay_next(*VERIFY_CALL, 5)
    if route == "put":
        owner = await api.user("owner@example.com")
        storing = asyncio.create_task(api.client.put("/api/keys/binance-testnet", json=keys, headers=owner))
    else:
        body = {"email": "owner@example.com", "password": PW}
        body |= {"binance_api_key": keys["api_key"], "binance_api_secret": keys["api_secret"]}
        storing = asyncio.create_task(api.client.post("/auth/register", json=body))
    # The exchange has the check in hand (and holds its answer for 5 s): another user's order goes through.
    await eventually(lambda: not binance_double.state.pending_faults(), message="the key check never came")
    r = await asyncio.wait_for(api.client.post("/api/orders", json=ORDER, headers=trader), timeout=1)
    assert r.status_code == 202, r.text
    if not api.parts.settings.is_sqlite:
        # Nor does the request keep a transaction open (reads done, locks kept) while the exchange answers.
        await eventually(lambda: _no_open_transaction(api), timeout=3, message="a transaction stayed open")
    assert not storing.done(), "the key check was not in flight"
    r = await asyncio.wait_for(storing, timeout=30)
    assert r.status_code in (200, 201), r.text
    async with api.parts.read_sessions() as s:
        stored = (await s.execute(select(ExchangeCredential))).scalars().all()
    assert len(stored) == 1


async def test_refused_keys_at_registration_create_no_account(api: Api, binance_account: Any) -> None:
    body = {"email": "nokeys@example.com", "password": PW}
    body |= {"binance_api_key": binance_account.api_key, "binance_api_secret": "x" * 64}
    r = await api.client.post("/auth/register", json=body)
    assert r.status_code == 422, r.text
    r = await api.client.post("/auth/login", json={"email": "nokeys@example.com", "password": PW})
    assert r.status_code == 401
