"""A GET writes nothing, so it never waits for a writer: the first balances read of a paper account shows the
starting deposit its first order will make, without making it (it used to, in a second transaction opened
inside the request, which waited for any writer holding the lock: on SQLite up to 30 s, then a 500)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from shared.models import LedgerPosting, PaperAccount
from shared.settings import Settings
from tests.support.api import Api, make_settings, running_api

pytestmark = pytest.mark.asyncio


@pytest.fixture(params=["postgresql", "sqlite"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    if request.param == "postgresql":
        return make_settings(
            request.getfixturevalue("pg_url"),
            redis_url=request.getfixturevalue("redis_url"),
            redis_prefix=request.getfixturevalue("redis_prefix"),
            paper_starting_balances_csv="USDT=10000,BTC=1,ETH=0",
        )
    return make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'reads.db'}", paper_starting_balances_csv="USDT=10000,BTC=1,ETH=0"
    )


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(settings, migrate=settings.is_sqlite) as api:
        yield api


async def _written(api: Api) -> tuple[int, int]:
    async with api.parts.read_sessions() as s:
        accounts = (await s.execute(select(func.count()).select_from(PaperAccount))).scalar_one()
        postings = (await s.execute(select(func.count()).select_from(LedgerPosting))).scalar_one()
    return accounts, postings


async def test_first_balances_read_answers_while_a_writer_holds_the_lock(api: Api) -> None:
    auth = await api.user("reader@example.com")
    # Another writer holds the write lock: SQLite's single one, or PostgreSQL's on the paper accounts.
    async with api.parts.engine.connect() as writer:
        if api.parts.settings.is_sqlite:
            await writer.exec_driver_sql("COMMIT")  # out of the dialect's implicit transaction first
            await writer.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            await writer.execute(text("LOCK TABLE paper_accounts IN EXCLUSIVE MODE"))
        r = await asyncio.wait_for(api.client.get("/api/balances", headers=auth), timeout=10)
        assert r.status_code == 200, r.text
        assert [(b["asset"], b["free"], b["locked"], b["total"]) for b in r.json()] == [
            ("BTC", "1", "0", "1"),
            ("USDT", "10000", "0", "10000"),
        ]
        await writer.rollback()
    assert await _written(api) == (0, 0)


async def test_balances_after_the_first_order_come_from_the_ledger(api: Api) -> None:
    auth = await api.user("trader@example.com")
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "20000"}
    r = await api.client.post("/api/orders", json=order, headers=auth)
    assert r.status_code == 202, r.text
    assert await _written(api) != (0, 0)
    got = {
        b["asset"]: (Decimal(b["free"]), Decimal(b["locked"]))
        for b in (await api.client.get("/api/balances", headers=auth)).json()
    }
    assert got == {
        "BTC": (Decimal(1), Decimal(0)),
        "USDT": (Decimal("9799.8"), Decimal("200.2")),
    }  # with the fee reserved
