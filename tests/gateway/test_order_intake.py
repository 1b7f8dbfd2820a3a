"""Order acceptance edge cases of the few-round-trip path (gateway alone: no worker needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from tests.support.api import Api, make_settings, running_api

LIMIT_BUY = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001", "price": "50000"}


@pytest.fixture(params=["postgresql", "sqlite"])
async def gateway(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path, redis_url: str, redis_prefix: str
) -> AsyncIterator[Api]:
    if request.param == "postgresql":
        settings = make_settings(
            pg_url, redis_url=redis_url, redis_prefix=redis_prefix, order_rate_limit="3/minute",
            paper_starting_balances_csv="USDT=1000,BTC=1",
        )
        migrate = False
    else:
        settings = make_settings(
            f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}", order_rate_limit="3/minute",
            paper_starting_balances_csv="USDT=1000,BTC=1",
        )
        migrate = True
    async with running_api(settings, migrate=migrate) as api:
        yield api


def _balances(rows: list[dict]) -> dict[str, tuple[Decimal, Decimal]]:
    return {r["asset"]: (Decimal(r["free"]), Decimal(r["locked"])) for r in rows}


async def test_first_order_refused_still_funds_the_account_later(gateway: Api) -> None:
    """The first order's transaction (which makes the starting deposit) rolls back when the order is
    unaffordable; the deposit must then happen on the next order, not be remembered as done."""
    auth = await gateway.user("first@example.com")
    too_big = {**LIMIT_BUY, "quantity": "1"}  # 50,050 USDT > 1,000
    r = await gateway.client.post("/api/orders", json=too_big, headers=auth)
    assert r.status_code == 422, r.text
    assert "INSUFFICIENT" in r.text.upper() or "balance" in r.text
    assert (await gateway.client.get("/api/orders", headers=auth)).json()["items"] == []
    r = await gateway.client.post("/api/orders", json=LIMIT_BUY, headers=auth)
    assert r.status_code == 202, r.text
    b = _balances((await gateway.client.get("/api/balances", headers=auth)).json())
    assert b["USDT"] == (Decimal("1000") - Decimal("50.05"), Decimal("50.05"))
    # and a second account-level check: later orders keep reserving from the same funds
    r = await gateway.client.post("/api/orders", json=LIMIT_BUY, headers=auth)
    assert r.status_code == 202, r.text
    b = _balances((await gateway.client.get("/api/balances", headers=auth)).json())
    assert b["USDT"] == (Decimal("1000") - Decimal("100.10"), Decimal("100.10"))


async def test_replay_is_answered_even_when_new_orders_are_throttled(gateway: Api) -> None:
    auth = await gateway.user("replay@example.com")
    first = await gateway.client.post("/api/orders", json={**LIMIT_BUY, "client_order_id": "c-1"}, headers=auth)
    assert first.status_code == 202, first.text
    for i in (2, 3):
        r = await gateway.client.post("/api/orders", json={**LIMIT_BUY, "client_order_id": f"c-{i}"}, headers=auth)
        assert r.status_code == 202, r.text
    r = await gateway.client.post("/api/orders", json={**LIMIT_BUY, "client_order_id": "c-4"}, headers=auth)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    again = await gateway.client.post("/api/orders", json={**LIMIT_BUY, "client_order_id": "c-1"}, headers=auth)
    assert again.status_code == 200, again.text
    assert again.json()["order_id"] == first.json()["order_id"]
    other = await gateway.client.post(
        "/api/orders", json={**LIMIT_BUY, "price": "50001", "client_order_id": "c-1"}, headers=auth
    )
    assert other.status_code == 409
    b = _balances((await gateway.client.get("/api/balances", headers=auth)).json())
    assert b["USDT"][1] == Decimal("150.15")  # three reservations, none twice


async def test_replay_after_acceptance_reserves_nothing_more(gateway: Api) -> None:
    auth = await gateway.user("idem2@example.com")
    body = {**LIMIT_BUY, "client_order_id": "same"}
    rs = [await gateway.client.post("/api/orders", json=body, headers=auth) for _ in range(3)]
    assert [r.status_code for r in rs] == [202, 200, 200]
    assert len({r.json()["order_id"] for r in rs}) == 1
    b = _balances((await gateway.client.get("/api/balances", headers=auth)).json())
    assert b["USDT"] == (Decimal("1000") - Decimal("50.05"), Decimal("50.05"))
