from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update
from sqlmodel import col

from shared.db import unit_of_work
from shared.ids import new_id
from shared.models import Balance, LedgerPosting, Order
from shared.settings import Settings
from tests.binance_double.server import BinanceDouble
from tests.support.api import Api, make_settings, running_api
from tests.support.eventually import eventually

ADMIN = ("admin@example.com", "correct horse battery staple")


@pytest.fixture
def binance_double() -> Iterator[BinanceDouble]:
    with BinanceDouble() as double:
        yield double


def recon_settings(
    database: str, tmp_path: Path, pg_url: str, redis_url: str, redis_prefix: str, **overrides: Any
) -> tuple[Settings, bool]:
    """Settings for the whole system on `database` ("postgresql": PostgreSQL and Redis Streams; "sqlite": a
    file and the in-process bus, as `tradebridge up`), and whether the database needs migrating."""
    values: dict[str, Any] = {
        "paper_starting_balances_csv": "USDT=10000,BTC=1",
        "admin_email": ADMIN[0],
        "admin_password": ADMIN[1],
        "reconciliation_interval_s": 0,  # reports on demand only, unless a test schedules them
        **overrides,
    }
    if database == "postgresql":
        return make_settings(pg_url, redis_url=redis_url, redis_prefix=redis_prefix, **values), False
    return make_settings(f"sqlite+aiosqlite:///{tmp_path / 'recon.db'}", **values), True


@pytest.fixture(params=["postgresql", "sqlite"])
async def recon(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    pg_url: str,
    redis_url: str,
    redis_prefix: str,
    binance_double: BinanceDouble,
) -> AsyncIterator[Api]:
    """The app as create_app builds it, with the execution worker in-process, on each database and the
    Binance double."""
    settings, migrate = recon_settings(
        request.param, tmp_path, pg_url, redis_url, redis_prefix, binance_testnet_url=binance_double.url
    )
    async with running_api(settings, migrate=migrate, services=("execution",)) as api:
        await api.system.worker.ready.wait()
        yield api


async def admin_auth(api: Api) -> dict[str, str]:
    tokens = await api.login(*ADMIN)
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def run_report(api: Api, auth: dict[str, str]) -> dict[str, Any]:
    r = await api.client.post("/api/admin/reconciliation", headers=auth)
    assert r.status_code == 202, r.text
    report_id = r.json()["report_id"]

    async def done() -> dict[str, Any] | None:
        rr = await api.client.get(f"/api/admin/reconciliation/{report_id}", headers=auth)
        assert rr.status_code == 200, rr.text
        body: dict[str, Any] = rr.json()
        assert body["status"] != "failed", body["error"]
        return body if body["status"] == "done" else None

    return await eventually(done, timeout=20)


def kinds(report: dict[str, Any]) -> dict[str, int]:
    return dict(report["summary"]["by_kind"])


def only(report: dict[str, Any], kind: str) -> dict[str, Any]:
    found = [m for m in report["mismatches"] if m["kind"] == kind]
    assert len(found) == 1, (kind, report["mismatches"])
    return found[0]


async def force_postings(api: Api, postings: list[tuple[str, str, str, Decimal]]) -> None:
    """Write journal postings and move the balances with them, bypassing every ledger check (a test's drift)."""
    rt = api.parts
    now = rt.clock.now()
    async with unit_of_work(rt.sessions) as s:
        for account, asset, bucket, amount in postings:
            s.add(
                LedgerPosting(
                    entry_kind="TEST",
                    ref="drift",
                    account_id=account,
                    asset=asset,
                    bucket=bucket,
                    amount=amount,
                    ts=now,
                )
            )
            row = await s.get(Balance, (account, asset))
            if row is None:
                row = Balance(
                    account_id=account, asset=asset, free=Decimal(0), locked=Decimal(0), updated_at=now
                )
            if bucket == "free":
                row.free += amount
            else:
                row.locked += amount
            s.add(row)


async def set_balance(api: Api, account: str, asset: str, **values: Decimal) -> None:
    async with unit_of_work(api.parts.sessions) as s:
        await s.execute(
            update(Balance)
            .where(col(Balance.account_id) == account, col(Balance.asset) == asset)
            .values(**values)
        )


async def insert_order(api: Api, user_id: str, **fields: Any) -> str:
    now: datetime = api.parts.clock.now()
    values: dict[str, Any] = {
        "id": new_id(),
        "user_id": user_id,
        "request_hash": "test",
        "mode": "testnet",
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "time_in_force": "GTC",
        "quantity": Decimal("0.01"),
        "price": Decimal("50000"),
        "status": "NEW",
        "created_at": now - timedelta(seconds=1),
        "updated_at": now,
    }
    values.update(fields)
    async with unit_of_work(api.parts.sessions) as s:
        s.add(Order(**values))
    return str(values["id"])


async def get_order(api: Api, order_id: str) -> Order:
    async with unit_of_work(api.parts.sessions) as s:
        return (await s.execute(select(Order).where(col(Order.id) == order_id))).scalar_one()


Probe = Callable[[], Any]
