"""Numbers are plain and sized (issue #14, item 5): no amount in a REST answer, an event or an error message is
written with an exponent, and derived prices and values have the documented precision (docs/api.md: 8 places,
shared.amounts). On PostgreSQL + Redis and on SQLite + the in-process bus; testnet balances through the
Binance double."""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from shared.amounts import DERIVED_PLACES
from shared.streams import MARKET_DEPTH, MARKET_TRADES, PRIVATE_EVENTS
from tests.support.api import Api, running_api_on
from tests.support.eventually import eventually

EXPONENT = re.compile(r"[0-9]E[+-]?[0-9]")
PLACES = Decimal(1).scaleb(-DERIVED_PLACES)

# Three asks at odd prices; a buy across all of them averages 60000 + 2.75 / 41, which does not terminate.
ASKS = [("0.00013", "60000.01"), ("0.00017", "60000.07"), ("0.00011", "60000.13")]
TOTAL_QTY = sum(Decimal(q) for q, _ in ASKS)
EXACT_AVG = sum((Decimal(q) * Decimal(p) for q, p in ASKS), Decimal(0)) / TOTAL_QTY


@pytest.fixture(params=["system", "embedded"])
def either(request: pytest.FixtureRequest) -> Api:
    """The pipeline on PostgreSQL + Redis (`system`) or SQLite + the in-process bus (`embedded`)."""
    return request.getfixturevalue(request.param)


def _no_exponent(where: str, text: str) -> None:
    found = EXPONENT.search(text)
    assert found is None, f"{where}: exponent {found.group()!r} in {text}"


def _places(value: str) -> int:
    return len(value.partition(".")[2])


async def _get(api: Api, path: str, auth: dict[str, str] | None = None) -> Any:
    r = await api.client.get(path, headers=auth)
    assert r.status_code == 200, r.text
    _no_exponent(path, r.text)
    return r.json()


async def _status(api: Api, auth: dict[str, str], oid: str, status: str) -> dict[str, Any] | None:
    o = await _get(api, f"/api/orders/{oid}", auth)
    return o if o["status"] == status else None


async def test_amounts_are_plain_and_derived_ones_sized(either: Api) -> None:
    api = either
    seller = await api.user("seller@example.com")
    buyer = await api.user("buyer@example.com")

    # Error messages: 0.0000001 is Decimal("1E-7") inside; the message (and the web page showing it) says
    # 0.0000001. The same for the minimum notional and the balance check.
    tiny = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.0000001", "price": "60000"}
    r = await api.client.post("/api/orders", json=tiny, headers=buyer)
    assert r.status_code == 422, r.text
    _no_exponent("LOT_SIZE message", r.text)
    assert "quantity 0.0000001 is below the minimum 0.00001" in r.json()["detail"]
    small = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.00001", "price": "0.01"}
    r = await api.client.post("/api/orders", json=small, headers=buyer)
    assert r.status_code == 422, r.text
    _no_exponent("MIN_NOTIONAL message", r.text)
    assert "notional 0.0000001 (price x quantity)" in r.json()["detail"]
    broke = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "60000"}
    r = await api.client.post("/api/orders", json=broke, headers=buyer)
    assert r.status_code == 422 and "insufficient USDT balance" in r.text, r.text
    _no_exponent("balance message", r.text)

    markets = await _get(api, "/api/markets")
    assert {m["symbol"]: m["tick_size"] for m in markets}["BTCUSDT"] == "0.01"

    sells = []
    for qty, price in ASKS:
        body = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "quantity": qty, "price": price}
        r = await api.client.post("/api/orders", json=body, headers=seller)
        assert r.status_code == 202, r.text
        _no_exponent("placement", r.text)
        sells.append(r.json()["order_id"])
    for oid in sells:
        await eventually(functools.partial(_status, api, seller, oid, "NEW"))

    # The quote's average over the three asks: rounded to the documented places, not 20 significant digits.
    async def quoted() -> dict[str, Any] | None:
        r = await api.client.post(
            "/api/orders/quote",
            json={"symbol": "BTCUSDT", "side": "BUY", "quantity": str(TOTAL_QTY)},
            headers=buyer,
        )
        assert r.status_code == 200, r.text
        _no_exponent("quote", r.text)
        q = r.json()
        return q if Decimal(q["fillable_quantity"]) == TOTAL_QTY else None

    quote = await eventually(quoted)
    rounded = EXACT_AVG.quantize(PLACES, rounding=ROUND_HALF_EVEN)
    assert quote["avg_price"] == str(rounded) and _places(quote["avg_price"]) == DERIVED_PLACES, quote

    buy = {
        "symbol": "BTCUSDT",
        "side": "BUY",
        "type": "LIMIT",
        "quantity": str(TOTAL_QTY),
        "price": "60000.13",
    }
    r = await api.client.post("/api/orders", json=buy, headers=buyer)
    assert r.status_code == 202, r.text
    filled = await eventually(lambda: _status(api, buyer, r.json()["order_id"], "FILLED"))
    assert len(filled["fills"]) == 3
    assert filled["avg_price"] == str(rounded), filled

    # avg_entry_price after three fills at odd prices: the documented places, the value rounded half even.
    positions = {p["symbol"]: p for p in await _get(api, "/api/positions", buyer)}
    pos = positions["BTCUSDT"]
    assert pos["avg_entry_price"] == str(rounded), pos
    assert _places(pos["avg_entry_price"]) == DERIVED_PLACES
    assert _places(pos["unrealized_pnl"]) <= DERIVED_PLACES, pos
    short = {p["symbol"]: p for p in await _get(api, "/api/positions", seller)}["BTCUSDT"]
    assert short["avg_entry_price"] == str(rounded) and Decimal(short["quantity"]) == -TOTAL_QTY

    # A partial close keeps the entry price and leaves a cost basis the database can hold on either side.
    part = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "quantity": "0.00013", "price": "60000.01"}
    r = await api.client.post("/api/orders", json=part, headers=buyer)
    assert r.status_code == 202, r.text
    await eventually(lambda: _status(api, buyer, r.json()["order_id"], "NEW"))
    take = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.00013"}
    r = await api.client.post("/api/orders", json=take, headers=seller)
    assert r.status_code == 202, r.text
    await eventually(lambda: _status(api, seller, r.json()["order_id"], "FILLED"))

    async def reduced() -> dict[str, Any] | None:
        p = {p["symbol"]: p for p in await _get(api, "/api/positions", buyer)}["BTCUSDT"]
        return p if Decimal(p["quantity"]) == TOTAL_QTY - Decimal("0.00013") else None

    pos = await eventually(reduced)
    assert pos["avg_entry_price"] == str(rounded), pos
    assert _places(pos["unrealized_pnl"]) <= DERIVED_PLACES, pos

    for auth in (buyer, seller):
        for path in ("/api/balances", "/api/orders?status=all", "/api/trades", "/api/positions"):
            await _get(api, path, auth)
    await _get(api, "/api/markets/BTCUSDT/depth")
    await _get(api, "/api/markets/BTCUSDT/trades")

    # Every event: order updates, trades, positions, balances, depth and market trades.
    rt = api.parts
    seen: set[str] = set()
    for stream in (PRIVATE_EVENTS, MARKET_DEPTH, MARKET_TRADES):
        for m in await rt.bus.range_after(stream, "0"):
            seen.add(str(m.data.get("type", stream)))
            _no_exponent(f"{stream} {m.data.get('type')}", orjson.dumps(m.data).decode())
            data = m.data.get("data") or {}
            if m.data.get("type") == "POSITION_UPDATE" and data.get("quantity") not in ("0", None):
                assert data["avg_entry_price"] == str(rounded), data
    assert {"ORDER_UPDATE", "TRADE", "POSITION_UPDATE", "BALANCE_UPDATE"} <= seen, seen


@pytest.fixture(params=["postgresql", "sqlite"])
async def testnet_gateway(
    request: pytest.FixtureRequest,
    pg_url: str,
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
    binance_double: Any,
) -> AsyncIterator[Api]:
    async with running_api_on(
        request.param,
        pg_url=pg_url,
        sqlite_dir=tmp_path,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        binance_testnet_url=binance_double.url,
    ) as api:
        yield api


async def test_testnet_balances_are_plain(testnet_gateway: Api, binance_account: Any) -> None:
    """Binance writes "0.00000000" and "10000.00000000"; str() of those Decimals is "0E-8" and the like."""
    api = testnet_gateway
    auth = await api.user("live@example.com")
    keys = {"api_key": binance_account.api_key, "api_secret": binance_account.api_secret}
    assert (await api.client.put("/api/keys/binance-testnet", json=keys, headers=auth)).status_code == 200
    rows = await _get(api, "/api/balances?mode=testnet", auth)
    usdt = {b["asset"]: b for b in rows}["USDT"]
    assert usdt == {"asset": "USDT", "free": "10000", "locked": "0", "total": "10000"}
    for b in rows:
        for k in ("free", "locked", "total"):
            assert re.fullmatch(r"[0-9]+(\.[0-9]*[1-9])?", b[k]), b
