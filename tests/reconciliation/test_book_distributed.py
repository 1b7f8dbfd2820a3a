"""The paper book check in the distributed layout: the execution worker is a process of its own (PostgreSQL,
Redis), the report runs in a gateway process without it, and reads the book the worker publishes to the shared
market data store. Clean first; then each seeded drift is reported as exactly that; then, the worker gone, the
book is reported unavailable (not skipped)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

from shared.clock import SystemClock
from shared.ids import new_id
from shared.models import Order
from tests.reconciliation.conftest import ADMIN
from tests.support.eventually import eventually
from tests.support.procs import Service, free_port, service_env

pytestmark = pytest.mark.slow


@asynccontextmanager
async def db(pg_url: str) -> AsyncIterator[AsyncSession]:
    engine = create_async_engine(pg_url)
    try:
        async with AsyncSession(engine, expire_on_commit=False) as s, s.begin():
            yield s
    finally:
        await engine.dispose()


async def login(http: httpx.AsyncClient, email: str, password: str, register: bool) -> dict[str, str]:
    if register:
        r = await http.post("/auth/register", json={"email": email, "password": password})
        assert r.status_code == 201, r.text
    r = await http.post("/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def resting(http: httpx.AsyncClient, auth: dict[str, str], side: str, price: str) -> str:
    body = {"symbol": "BTCUSDT", "side": side, "type": "LIMIT", "quantity": "0.01", "price": price}
    r = await http.post("/api/orders", json=body, headers=auth)
    assert r.status_code == 202, r.text
    oid = str(r.json()["order_id"])

    async def is_new() -> bool:
        return bool((await http.get(f"/api/orders/{oid}", headers=auth)).json()["status"] == "NEW")

    await eventually(is_new, timeout=60, message=f"order {oid} never rested")
    return oid


async def report(http: httpx.AsyncClient, admin: dict[str, str]) -> dict[str, Any]:
    r = await http.post("/api/admin/reconciliation", headers=admin)
    assert r.status_code == 202, r.text
    rid = r.json()["report_id"]

    async def done() -> dict[str, Any]:
        body: dict[str, Any] = (await http.get(f"/api/admin/reconciliation/{rid}", headers=admin)).json()
        assert body["status"] != "failed", body["error"]
        assert body["status"] == "done", body["status"]
        return body

    found = await eventually(done, timeout=30)
    return found


def books(rep: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in rep["summary"]["checks"] if c["name"] == "books_vs_database")


async def test_book_check_with_the_worker_in_another_process(
    pg_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    env = service_env(
        pg_url,
        redis_url,
        redis_prefix,
        ADMIN_EMAIL=ADMIN[0],
        ADMIN_PASSWORD=ADMIN[1],
        RECONCILIATION_INTERVAL_S="0",
    )
    gateway = Service("gateway", env, tmp_path / "gateway.log", port=free_port())
    worker = Service("execution", env, tmp_path / "worker.log")
    try:
        gateway.start()
        worker.start()
        await asyncio.to_thread(gateway.wait_http, "/healthz")
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{gateway.port}", timeout=10) as http:
            user = await login(http, "trader@example.com", "password-123", register=True)
            buy = await resting(http, user, "BUY", "50000")
            await resting(http, user, "SELL", "90000")
            admin = await login(http, *ADMIN, register=False)

            clean = await report(http, admin)
            assert clean["mismatch_count"] == 0, clean["mismatches"]
            check = books(clean)
            assert check["checked"] == 2 and not check["skipped"], check

            # An order open in the database that the worker's book does not hold.
            past = SystemClock().now() - timedelta(minutes=1)
            async with db(pg_url) as s:
                row = (await s.execute(select(Order).where(Order.id == buy))).scalar_one()  # type: ignore[arg-type]
                locked = row.reserved_amount
                assert locked is not None
                ghost = new_id()
                s.add(
                    Order(
                        id=ghost,
                        user_id=row.user_id,
                        request_hash="drift",
                        mode="paper",
                        symbol="BTCUSDT",
                        side="BUY",
                        type="LIMIT",
                        time_in_force="GTC",
                        quantity=Decimal("0.01"),
                        price=Decimal("40000"),
                        status="NEW",
                        venue_seq=10**9,
                        created_at=past,
                        updated_at=past,
                    )
                )
            rep = await report(http, admin)
            assert rep["summary"]["by_kind"] == {"book_missing_order": 1}, rep["mismatches"]
            (m,) = rep["mismatches"]
            assert (m["order_id"], m["user_id"], m["reference_value"]) == (ghost, row.user_id, "absent")

            # The resting buy's lock in the database differs from what the book holds for it (the ghost is
            # closed again). Its balance did not move, so the lock check reports the same drift from its side.
            async with db(pg_url) as s:
                await s.execute(
                    update(Order).where(Order.id == ghost).values(status="CANCELED", updated_at=past)  # type: ignore[arg-type]
                )
                await s.execute(
                    update(Order)
                    .where(Order.id == buy)  # type: ignore[arg-type]
                    .values(reserved_amount=Order.reserved_amount + 1, updated_at=past)  # type: ignore[operator]
                )
            rep = await report(http, admin)
            locks = [m for m in rep["mismatches"] if m["kind"] == "book_lock_mismatch"]
            assert len(locks) == 1 and locks[0]["order_id"] == buy, rep["mismatches"]
            assert (locks[0]["tradebridge_value"], locks[0]["reference_value"]) == (
                str(locked + 1),
                str(locked),
            )
            assert set(rep["summary"]["by_kind"]) == {"book_lock_mismatch", "locked_mismatch"}, rep[
                "mismatches"
            ]

            # No worker: its snapshot ages out and the report says why.
            worker.stop()

            async def unavailable() -> dict[str, Any]:
                r = await report(http, admin)
                assert "book_unavailable" in r["summary"]["by_kind"], r["summary"]
                return r

            rep = await eventually(unavailable, timeout=40, interval=1)
            (u,) = [m for m in rep["mismatches"] if m["kind"] == "book_unavailable"]
            assert "old" in u["reference_value"] and "paper lease" in u["reference_value"], u
    finally:
        worker.stop()
        gateway.stop()
