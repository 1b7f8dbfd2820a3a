"""Paper orders end to end: REST -> outbox -> bus -> worker -> paper exchange -> database and events."""

from __future__ import annotations

from decimal import Decimal

import pytest

from tests.support.api import Api
from tests.support.eventually import eventually


def balances(rows: list[dict]) -> dict[str, tuple[Decimal, Decimal]]:
    return {r["asset"]: (Decimal(r["free"]), Decimal(r["locked"])) for r in rows}


async def order_status(api: Api, auth: dict, order_id: str) -> dict:
    r = await api.client.get(f"/api/orders/{order_id}", headers=auth)
    assert r.status_code == 200, r.text
    return r.json()


async def _flow(api: Api) -> None:
    seller = await api.user("seller@example.com")
    buyer = await api.user("buyer@example.com")

    r = await api.client.post(
        "/api/orders",
        json={"symbol": "BTC/USDT", "side": "sell", "type": "limit", "quantity": "0.01", "price": "60000"},
        headers=seller,
    )
    assert r.status_code == 202, r.text
    sell = r.json()
    assert sell["status"] == "PENDING" and sell["symbol"] == "BTCUSDT" and sell["mode"] == "paper"
    await eventually(lambda: _is(api, seller, sell["order_id"], "NEW"))
    b = balances((await api.client.get("/api/balances", headers=seller)).json())
    assert b["BTC"] == (Decimal("0.99"), Decimal("0.01"))

    r = await api.client.post(
        "/api/orders",
        json={"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": 0.004},
        headers=buyer,
    )
    assert r.status_code == 202, r.text
    buy = r.json()
    filled = await eventually(lambda: _is(api, buyer, buy["order_id"], "FILLED"))
    assert Decimal(filled["avg_price"]) == Decimal("60000")
    assert [f["liquidity"] for f in filled["fills"]] == ["TAKER"]
    assert [h["status"] for h in filled["history"]] == ["PENDING", "FILLED"]

    partial = await eventually(lambda: _is(api, seller, sell["order_id"], "PARTIALLY_FILLED"))
    assert Decimal(partial["filled_quantity"]) == Decimal("0.004")

    # Buyer: paid 240 USDT + 0.24 fee, received 0.004 BTC; the market reservation's excess was refunded.
    bb = balances((await api.client.get("/api/balances", headers=buyer)).json())
    assert bb["USDT"] == (Decimal("10000") - Decimal("240") - Decimal("0.24"), Decimal(0))
    assert bb["BTC"] == (Decimal("1.004"), Decimal(0))
    trades = (await api.client.get("/api/trades", headers=buyer)).json()
    assert len(trades) == 1 and trades[0]["side"] == "BUY" and Decimal(trades[0]["fee"]) == Decimal("0.24")

    # Cancel releases exactly the remainder.
    r = await api.client.delete(f"/api/orders/{sell['order_id']}", headers=seller)
    assert r.status_code == 202 and r.json()["status"] == "PENDING_CANCEL"
    await eventually(lambda: _is(api, seller, sell["order_id"], "CANCELED"))
    sb = balances((await api.client.get("/api/balances", headers=seller)).json())
    assert sb["BTC"] == (Decimal("0.996"), Decimal(0))
    assert sb["USDT"] == (Decimal("10000") + Decimal("240") - Decimal("0.24"), Decimal(0))
    r = await api.client.delete(f"/api/orders/{sell['order_id']}", headers=seller)
    assert r.status_code == 409

    page = (await api.client.get("/api/orders?status=closed", headers=seller)).json()
    assert [o["order_id"] for o in page["items"]] == [sell["order_id"]]


async def _is(api: Api, auth: dict, order_id: str, status: str) -> dict | None:
    o = await order_status(api, auth, order_id)
    return o if o["status"] == status else None


async def test_paper_flow_on_postgres_and_redis(system: Api) -> None:
    await _flow(system)


async def test_paper_flow_embedded(embedded: Api) -> None:
    await _flow(embedded)


@pytest.mark.parametrize(
    "bad",
    [
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001"},
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001", "price": "60000.001"},
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.000001", "price": "60000"},
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.00001", "price": "100"},
        {"symbol": "DOGEUSDT", "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "1"},
        {"symbol": "BTCUSDT", "side": "HOLD", "type": "LIMIT", "quantity": "1", "price": "1"},
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "-1", "price": "1"},
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "NaN", "price": "1"},
        {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001", "price": "1"},
        {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "60000"},
    ],
)
async def test_bad_orders_are_4xx_and_lock_nothing(system: Api, bad: dict) -> None:
    auth = await system.user("bad@example.com")
    r = await system.client.post("/api/orders", json=bad, headers=auth)
    assert 400 <= r.status_code < 500, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (await system.client.get("/api/orders", headers=auth)).json()["items"] == []
    b = balances((await system.client.get("/api/balances", headers=auth)).json())
    assert b["USDT"] == (Decimal("10000"), Decimal(0))


async def test_client_order_id_idempotency(system: Api) -> None:
    auth = await system.user("idem@example.com")
    body = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "quantity": "0.001",
        "price": "50000",
        "client_order_id": "my-1",
    }
    first = await system.client.post("/api/orders", json=body, headers=auth)
    again = await system.client.post("/api/orders", json=body, headers=auth)
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["order_id"] == again.json()["order_id"]
    other = await system.client.post("/api/orders", json={**body, "price": "50001"}, headers=auth)
    assert other.status_code == 409
    b = balances((await system.client.get("/api/balances", headers=auth)).json())
    assert b["USDT"][1] == Decimal("50.05")  # one reservation only: 0.001 x 50000 x 1.001


async def test_orders_are_private(system: Api) -> None:
    alice = await system.user("alice2@example.com")
    bob = await system.user("bob2@example.com")
    r = await system.client.post(
        "/api/orders",
        json={"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001", "price": "50000"},
        headers=alice,
    )
    oid = r.json()["order_id"]
    assert (await system.client.get(f"/api/orders/{oid}", headers=bob)).status_code == 404
    assert (await system.client.delete(f"/api/orders/{oid}", headers=bob)).status_code == 404


async def test_market_buy_after_the_price_moved_and_without_liquidity(system: Api) -> None:
    """The reservation is made against the price at acceptance; the book may have moved by execution."""
    from shared.streams import MARKET_TICKER  # noqa: F401  (documented: the ticker is one reference source)

    seller = await system.user("mover-s@example.com")
    buyer = await system.user("mover-b@example.com")
    # No liquidity and no price: refused up front.
    r = await system.client.post(
        "/api/orders",
        json={"symbol": "ETHUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"},
        headers=buyer,
    )
    assert r.status_code == 409
    # An ask at 61000 sets the reference; it is then replaced by a cheaper one before the buy executes.
    r = await system.client.post(
        "/api/orders",
        json={"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "quantity": "0.01", "price": "61000"},
        headers=seller,
    )
    high = r.json()["order_id"]
    await eventually(lambda: _is(system, seller, high, "NEW"))
    worker = system.system.worker
    # Hold the worker's book still while we queue: cancel the high ask and add a lower one, then buy.
    await system.client.delete(f"/api/orders/{high}", headers=seller)
    r = await system.client.post(
        "/api/orders",
        json={"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.005"},
        headers=buyer,
    )
    assert r.status_code == 202
    buy = r.json()["order_id"]
    r = await system.client.post(
        "/api/orders",
        json={"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "quantity": "0.01", "price": "60000"},
        headers=seller,
    )
    final = await eventually(lambda: _final(system, buyer, buy))
    b = balances((await system.client.get("/api/balances", headers=buyer)).json())
    assert b["USDT"][1] == 0, "the whole reservation was consumed or released"
    if final["status"] == "FILLED":
        assert Decimal(final["avg_price"]) == Decimal("60000")
        assert b["USDT"][0] == Decimal("10000") - Decimal("300") - Decimal("0.3")
    else:
        assert final["status"] == "EXPIRED" and b["USDT"][0] == Decimal("10000")
    assert worker.paper is not None


async def _final(api: Api, auth: dict, order_id: str) -> dict | None:
    o = await order_status(api, auth, order_id)
    return o if o["status"] in ("FILLED", "EXPIRED", "CANCELED", "REJECTED") else None


async def test_first_balances_read_shows_the_starting_deposit(embedded: Api) -> None:
    """The very first GET funds the paper account and already shows it (SQLite snapshot included)."""
    auth = await embedded.user("first-read@example.com")
    b = balances((await embedded.client.get("/api/balances", headers=auth)).json())
    assert b["USDT"] == (Decimal("10000"), Decimal(0)) and b["BTC"] == (Decimal("1"), Decimal(0))
