"""Testnet mode end to end: the API routes the user's orders to the Binance double through ccxt with the
user's own keys; our order id is the exchange's client order id; exactly one exchange order per order."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from tests.support.api import Api, make_settings, running_api
from tests.support.eventually import eventually


@pytest.fixture
async def testnet_system(
    pg_url: str, redis_url: str, redis_prefix: str, binance_double
) -> AsyncIterator[Api]:
    settings = make_settings(
        pg_url, redis_url=redis_url, redis_prefix=redis_prefix, binance_testnet_url=binance_double.url
    )
    fast = {"timeout_ms": 2000, "poll_fast_s": 0.2, "poll_slow_s": 0.5}
    async with running_api(settings, services=("execution",), testnet_overrides=fast) as api:
        yield api


async def _status(api: Api, auth: dict, oid: str, status: str) -> dict | None:
    o = (await api.client.get(f"/api/orders/{oid}", headers=auth)).json()
    return o if o["status"] == status else None


async def test_testnet_orders_through_the_api(testnet_system: Api, binance_double, binance_account) -> None:
    api = testnet_system
    auth = await api.user("live@example.com")
    r = await api.client.put(
        "/api/keys/binance-testnet",
        json={"api_key": binance_account.api_key, "api_secret": binance_account.api_secret},
        headers=auth,
    )
    assert r.status_code == 200
    assert (await api.client.put("/api/me/mode", json={"mode": "testnet"}, headers=auth)).status_code == 200

    r = await api.client.post(
        "/api/orders",
        json={"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"},
        headers=auth,
    )
    assert r.status_code == 202 and r.json()["mode"] == "testnet"
    market = r.json()["order_id"]
    filled = await eventually(lambda: _status(api, auth, market, "FILLED"), timeout=20)
    exchange_orders = binance_double.state.orders(binance_account.api_key, client_order_id=market)
    assert len(exchange_orders) == 1
    assert len(filled["fills"]) >= 1 and Decimal(filled["filled_quantity"]) == Decimal("0.001")
    trades = binance_double.state.trades(binance_account.api_key, order_id=exchange_orders[0].order_id)
    assert sorted(
        (Decimal(f["price"]), Decimal(f["quantity"]), Decimal(f["fee"])) for f in filled["fills"]
    ) == sorted((t.price, t.qty, t.commission) for t in trades)

    # A resting limit order, canceled through the API.
    r = await api.client.post(
        "/api/orders",
        json={"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "1000"},
        headers=auth,
    )
    resting = r.json()["order_id"]
    await eventually(lambda: _status(api, auth, resting, "NEW"), timeout=20)
    assert (await api.client.delete(f"/api/orders/{resting}", headers=auth)).status_code == 202
    await eventually(lambda: _status(api, auth, resting, "CANCELED"), timeout=20)
    assert [
        o.status for o in binance_double.state.orders(binance_account.api_key, client_order_id=resting)
    ] == ["CANCELED"]

    # Balances in testnet mode come from the exchange.
    balances = {b["asset"]: b for b in (await api.client.get("/api/balances", headers=auth)).json()}
    assert Decimal(balances["BTC"]["total"]) > Decimal("1")

    # A rejection by the exchange ends REJECTED with a human reason, and nothing is placed twice.
    r = await api.client.post(
        "/api/orders",
        json={"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "10", "price": "60000"},
        headers=auth,
    )
    rejected = await eventually(lambda: _status(api, auth, r.json()["order_id"], "REJECTED"), timeout=20)
    assert "balance" in (rejected["reason"] or "").lower()
