"""`tradebridge up`'s embedded default (SQLite, in-process bus, every service in one process): a burst of wrong
passwords writes its audit rows in the requests' own transactions, so it stalls neither itself nor anyone
else's writes. (Written in a second transaction, each failed login waited 30 s for its own request's SQLite
write lock, answered 500, and held up every other write in the process meanwhile.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from shared.models import AuditLog
from tests.support.api import Api, make_settings, running_api
from tests.support.eventually import eventually
from tradebridge.embedded import create_embedded_app

pytestmark = pytest.mark.asyncio

VICTIMS = [f"victim{i}@example.com" for i in range(4)]


@pytest.fixture
async def up(tmp_path: Path) -> AsyncIterator[Api]:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'tradebridge.db'}")
    async with running_api(settings, app=create_embedded_app(settings)) as api:
        await api.system.worker.ready.wait()
        yield api


async def _timed(call: Awaitable[httpx.Response]) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    r = await call
    return r, time.monotonic() - start


async def test_wrong_password_burst_does_not_stall_orders(up: Api) -> None:
    for email in VICTIMS:
        await up.register(email)
    trader = await up.user("trader@example.com")
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001", "price": "20000"}

    async def trading() -> list[tuple[httpx.Response, float]]:
        """Another user places orders one after another meanwhile."""
        return [await _timed(up.client.post("/api/orders", json=order, headers=trader)) for _ in range(5)]

    # 20 wrong passwords at once, five per account: all refused with 401, none throttled yet.
    burst = asyncio.gather(
        *(
            _timed(up.client.post("/auth/login", json={"email": email, "password": "wrong-password"}))
            for email in VICTIMS
            for _ in range(5)
        )
    )
    logins, orders = await asyncio.wait_for(asyncio.gather(burst, trading()), timeout=60)

    assert [r.status_code for r, _ in logins] == [401] * 20, [r.text for r, _ in logins]
    assert [r.status_code for r, _ in orders] == [202] * 5, [r.text for r, _ in orders]
    slowest = max(t for _, t in [*logins, *orders])
    assert slowest < 1.0, f"slowest answer took {slowest:.2f} s"

    async with up.parts.read_sessions() as s:
        failed = (
            (await s.execute(select(AuditLog).where(col(AuditLog.action) == "auth.login_failed")))
            .scalars()
            .all()
        )
    assert sorted(a.details["email"] for a in failed) == sorted(e for e in VICTIMS for _ in range(5))

    # The worker's writes were not held up either: every order reaches the book.
    ids = [r.json()["order_id"] for r, _ in orders]

    async def all_resting() -> bool:
        got = [(await up.client.get(f"/api/orders/{i}", headers=trader)).json()["status"] for i in ids]
        return got == ["NEW"] * len(ids)

    await eventually(all_resting, timeout=15)
