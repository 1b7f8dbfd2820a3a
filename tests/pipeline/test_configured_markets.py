"""Markets come from configuration: any SYMBOLS with their rules from MARKET_RULES (the three built-in markets
keep their defaults), and the market maker's funding from PAPER_MARKET_MAKER_FUNDING.

`tradebridge up`'s app (every service in one process, the synthetic price feed, the market maker on) with
SYMBOLS=BTCUSDT,SOLUSDT lists SOLUSDT with its configured rules, holds orders to them, and fills a paper
market order on SOLUSDT against the market maker, funded as configured."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from shared.models import Balance
from tests.support.api import Api, make_settings, running_api
from tests.support.eventually import eventually
from tradebridge.embedded import create_embedded_app

SOL_RULES = {"SOLUSDT": {"tick_size": "0.01", "step_size": "0.001", "min_notional": "5"}}


@pytest.fixture(params=["postgresql", "sqlite"])
async def up(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> AsyncIterator[Api]:
    url = pg_url if request.param == "postgresql" else f"sqlite+aiosqlite:///{tmp_path / 'tradebridge.db'}"
    settings = make_settings(
        url,
        symbols_csv="BTCUSDT,SOLUSDT",
        market_rules_json=json.dumps(SOL_RULES),
        paper_market_maker="on",
        paper_market_maker_funding_csv="USDT=50000000,BTC=500,SOL=4321",
    )
    async with running_api(settings, app=create_embedded_app(settings)) as api:
        await api.system.worker.ready.wait()
        yield api


async def test_a_configured_market_trades_end_to_end(up: Api) -> None:
    markets = {m["symbol"]: m for m in (await up.client.get("/api/markets")).json()}
    assert sorted(markets) == ["BTCUSDT", "SOLUSDT"]
    assert markets["SOLUSDT"] == {
        "symbol": "SOLUSDT",
        "base_asset": "SOL",
        "quote_asset": "USDT",
        "tick_size": "0.01",
        "step_size": "0.001",
        "min_qty": "0.001",
        "min_notional": "5",
    }
    assert markets["BTCUSDT"]["tick_size"] == "0.01" and markets["BTCUSDT"]["step_size"] == "0.00001"

    auth = await up.user("sol-trader@example.com")
    off_grid = {"symbol": "SOLUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.0001", "price": "100"}
    r = await up.client.post("/api/orders", json=off_grid, headers=auth)
    assert r.status_code == 422 and r.json()["errors"][0]["rule"] == "LOT_SIZE"

    body = {"symbol": "SOL/USDT", "side": "BUY", "type": "MARKET", "quantity": "0.5"}

    async def accepted() -> str | None:
        """A market order waits for the first SOLUSDT price (409 until the feed has one)."""
        r = await up.client.post("/api/orders", json=body, headers=auth)
        assert r.status_code in (202, 409), r.text
        return str(r.json()["order_id"]) if r.status_code == 202 else None

    oid = await eventually(accepted, timeout=30, interval=0.2, message="no SOLUSDT price")

    async def filled() -> dict[str, Any] | None:
        o: dict[str, Any] = (await up.client.get(f"/api/orders/{oid}", headers=auth)).json()
        return o if o["status"] == "FILLED" else None

    order = await eventually(filled, timeout=60, message="the SOLUSDT market order did not fill")
    assert Decimal(order["filled_quantity"]) == Decimal("0.5") and order["symbol"] == "SOLUSDT"
    balances = {b["asset"]: b for b in (await up.client.get("/api/balances", headers=auth)).json()}
    assert Decimal(balances["SOL"]["total"]) == Decimal("0.5")

    # The market maker was funded with PAPER_MARKET_MAKER_FUNDING's SOL (not a built-in amount).
    account = up.system.worker.paper.market_maker.config.account
    async with up.parts.read_sessions() as s:
        rows = (await s.execute(select(Balance).where(Balance.account_id == account))).scalars().all()
    sol = sum((b.free + b.locked for b in rows if b.asset == "SOL"), Decimal(0))
    assert sol == Decimal("4321") - Decimal("0.5")
