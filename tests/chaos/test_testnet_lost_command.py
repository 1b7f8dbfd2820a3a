"""Found by the chaos run (benchmarks/chaos.py): Redis restarted empty while testnet orders were accepted, their
commands were gone, and the orders stayed PENDING until the worker restarted (the sweep only covered paper).
The worker now sweeps testnet orders too: an accepted order whose command never arrives still reaches the
exchange, once. The state after the loss (the order's row, no command) is made by writing the row."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from shared.db import unit_of_work
from shared.models import Order
from shared.settings import Settings
from tests.binance_double import BinanceDouble
from tests.support.api import Api, running_api
from tests.support.eventually import eventually

FAST = {"timeout_ms": 2000, "poll_fast_s": 0.2, "poll_slow_s": 0.5}


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(
        settings, migrate=settings.is_sqlite, services=("execution",), testnet_overrides=FAST
    ) as served:
        await served.system.worker.ready.wait()
        yield served


async def test_a_testnet_order_whose_command_was_lost_is_placed_once(
    api: Api, binance_double: BinanceDouble
) -> None:
    account = binance_double.state.create_account({"USDT": "100000", "BTC": "10"})
    auth = await api.user("lost@example.com")
    keys = {"api_key": account.api_key, "api_secret": account.api_secret}
    assert (await api.client.put("/api/keys/binance-testnet", json=keys, headers=auth)).status_code == 200
    assert (await api.client.put("/api/me/mode", json={"mode": "testnet"}, headers=auth)).status_code == 200
    user_id = (await api.client.get("/api/me", headers=auth)).json()["id"]

    worker = api.system.worker
    worker.testnet_sweep_after_s = 0.5  # the deployment waits 30 s before calling a command lost
    now = datetime.now(UTC)
    async with unit_of_work(api.parts.sessions) as s:  # accepted, and its command lost with Redis
        s.add(
            Order(
                id="01lostcommand0000000000000000000",
                user_id=user_id,
                client_order_id="lost-1",
                request_hash="h",
                mode="testnet",
                symbol="BTCUSDT",
                side="BUY",
                type="LIMIT",
                time_in_force="GTC",
                quantity=Decimal("0.02"),
                price=Decimal("1000"),
                status="PENDING",
                created_at=now,
                updated_at=now,
            )
        )

    async def handled() -> dict[str, Any] | None:
        o = (await api.client.get("/api/orders/01lostcommand0000000000000000000", headers=auth)).json()
        return o if o["status"] != "PENDING" else None

    order = await eventually(handled, timeout=30, message="the swept order was handled")
    assert order["status"] == "NEW", order["reason"]
    placed = binance_double.state.orders(account.api_key, client_order_id="01lostcommand0000000000000000000")
    assert [o.status for o in placed] == ["NEW"]
