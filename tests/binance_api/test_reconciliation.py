"""One book, one ledger: orders placed through the Binance-compatible API are checked by the reconciliation
report like any other paper order. ccxt unmodified against uvicorn-served `tradebridge up`, SQLite and
PostgreSQL; an administrator runs the report through our own API."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.binance_api.conftest import Served, serve
from tests.support.eventually import eventually

ADMIN = ("admin@example.com", "correct horse battery staple")
SYMBOL = "BTC/USDT"


@pytest.fixture(params=["sqlite", "postgresql"])
async def tb_admin(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> AsyncIterator[Served]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tradebridge.db'}" if request.param == "sqlite" else pg_url
    async with serve(
        url, admin_email=ADMIN[0], admin_password=ADMIN[1], reconciliation_interval_s=0
    ) as served:
        yield served


async def _report(http: httpx.AsyncClient) -> dict[str, Any]:
    r = await http.post("/api/admin/reconciliation")
    assert r.status_code == 202, r.text
    report_id = r.json()["report_id"]

    async def done() -> dict[str, Any] | None:
        body: dict[str, Any] = (await http.get(f"/api/admin/reconciliation/{report_id}")).json()
        assert body["status"] != "failed", body["error"]
        return body if body["status"] == "done" else None

    return await eventually(done, timeout=30)


async def test_binance_api_orders_are_in_the_reconciliation_report(tb_admin: Served) -> None:
    bearer = await tb_admin.user("recon-bot@example.com")
    ex = tb_admin.ccxt(await tb_admin.api_key(bearer))
    try:
        await ex.load_markets()
        await ex.create_order(SYMBOL, "market", "buy", 0.002)
        resting = await ex.create_order(SYMBOL, "limit", "buy", 0.001, 20000)
        assert resting["status"] == "open"
    finally:
        await ex.close()
    async with httpx.AsyncClient(base_url=tb_admin.base, headers=bearer) as api:
        ours = (await api.get("/api/orders", params={"status": "all"})).json()["items"]
        user_id = (await api.get("/api/me")).json()["id"]
    order_id = next(o["order_id"] for o in ours if o["client_order_id"] == resting["clientOrderId"])

    async with httpx.AsyncClient(base_url=tb_admin.base) as http:
        r = await http.post("/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
        assert r.status_code == 200, r.text
        http.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        clean = await _report(http)
        mine = [
            m for m in clean["mismatches"] if m.get("order_id") == order_id or m.get("user_id") == user_id
        ]
        assert mine == [], clean["mismatches"]
        checks = {c["name"]: c for c in clean["summary"]["checks"]}
        assert checks["books_vs_database"]["checked"] >= 1 and checks["locked_vs_open_orders"]["checked"] >= 1

        # the book loses the order placed through the Binance API: the report names it
        worker = tb_admin.app.state.system.worker
        worker.paper.exchange.cancel(order_id)
        drifted = await _report(http)
        missing = [m for m in drifted["mismatches"] if m["kind"] == "book_missing_order"]
        assert [m["order_id"] for m in missing] == [order_id], drifted["mismatches"]
