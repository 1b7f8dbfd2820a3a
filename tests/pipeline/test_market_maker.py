"""The market maker quotes around the live price, re-quotes as it moves, and pulls its quotes when the
price goes stale (a stale price is never used for fills)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from shared.streams import MARKET_TICKER, public_event
from tests.support.api import Api, make_settings, running_api
from tests.support.eventually import eventually


@pytest.fixture
async def mm_system(pg_url: str, redis_url: str, redis_prefix: str) -> AsyncIterator[Api]:
    settings = make_settings(pg_url, redis_url=redis_url, redis_prefix=redis_prefix, paper_market_maker="on")
    async with running_api(settings, services=("execution",)) as api:
        await api.system.worker.ready.wait()

        # After its start the worker matches nothing until the market maker has quoted every symbol (or
        # its wait for prices ran out): a price for each, until /readyz says the books have liquidity.
        async def quoted_everywhere() -> bool:
            for symbol, price in (("BTCUSDT", "60000"), ("ETHUSDT", "3000"), ("BNBUSDT", "600")):
                await _tick(api, price, symbol=symbol)
            return (await api.client.get("/readyz")).status_code == 200

        await eventually(quoted_everywhere, timeout=15, interval=0.2)
        yield api


async def _tick(api: Api, price: str, *, stale: bool = False, symbol: str = "BTCUSDT") -> None:
    data = {"symbol": symbol, "price": price, "stale": stale}
    await api.parts.bus.publish(MARKET_TICKER, public_event("TICKER", symbol, datetime.now(UTC), data))


async def _depth(api: Api) -> dict:
    return (await api.client.get("/api/markets/BTCUSDT/depth")).json()


async def test_quotes_follow_the_price_and_vanish_when_stale(mm_system: Api) -> None:
    api = mm_system
    await _tick(api, "60000")

    async def quoted_around(mid: Decimal) -> bool:
        d = await _depth(api)
        return (
            bool(d["bids"] and d["asks"])
            and Decimal(d["bids"][0][0]) < mid < Decimal(d["asks"][0][0])
            and (Decimal(d["asks"][0][0]) - Decimal(d["bids"][0][0]) < mid * Decimal("0.002"))
        )

    # The ticker loop reads from "now": keep ticking until it has seen one.
    async def ticked_and_quoted() -> bool:
        await _tick(api, "60000")
        return await quoted_around(Decimal(60000))

    await eventually(ticked_and_quoted, timeout=15, interval=0.2)
    await _tick(api, "62000")
    await eventually(lambda: quoted_around(Decimal(62000)), timeout=15)

    # A market buy fills against the maker near the price.
    auth = await api.user("mm-taker@example.com")
    r = await api.client.post(
        "/api/orders",
        json={"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"},
        headers=auth,
    )
    oid = r.json()["order_id"]

    async def filled_near() -> bool:
        o = (await api.client.get(f"/api/orders/{oid}", headers=auth)).json()
        return o["status"] == "FILLED" and abs(Decimal(o["avg_price"]) - 62000) < 62000 * Decimal("0.005")

    await eventually(filled_near, timeout=15)

    await _tick(api, "62000", stale=True)

    async def pulled() -> bool:
        d = await _depth(api)
        return not d["bids"] and not d["asks"]

    await eventually(pulled, timeout=15)


async def test_market_data_endpoints_and_quote(mm_system: Api) -> None:
    api = mm_system

    async def quoted() -> bool:
        await _tick(api, "60000")
        d = await _depth(api)
        return bool(d["asks"])

    await eventually(quoted, timeout=15, interval=0.2)
    markets = (await api.client.get("/api/markets")).json()
    assert {m["symbol"] for m in markets} == {"BTCUSDT", "ETHUSDT", "BNBUSDT"}
    # No price feed runs here (ticks go straight onto the bus), so no ticker is stored yet: a clear 404.
    r = await api.client.get("/api/markets/BTCUSDT/ticker")
    assert r.status_code == 404 and "No paper price" in r.json()["detail"]
    await api.parts.market_data.put(
        "ticker", "BTCUSDT", {"symbol": "BTCUSDT", "price": "60000", "stale": False}
    )
    assert (await api.client.get("/api/markets/btcusdt/ticker")).json()["price"] == "60000"
    assert (await api.client.get("/api/markets/DOGEUSDT/depth")).status_code == 404  # not there (path)
    depth = (await api.client.get("/api/markets/BTCUSDT/depth?limit=3")).json()
    assert len(depth["asks"]) == 3 and len(depth["bids"]) == 3
    best_ask = Decimal(depth["asks"][0][0])
    q = (
        await api.client.post(
            "/api/orders/quote", json={"symbol": "BTC/USDT", "side": "buy", "quantity": "0.01"}
        )
    ).json()
    assert Decimal(q["fillable_quantity"]) == Decimal("0.01") and Decimal(q["worst_price"]) >= best_ask
    assert best_ask <= Decimal(q["avg_price"]) <= Decimal(q["worst_price"])
    big = (
        await api.client.post(
            "/api/orders/quote", json={"symbol": "BTCUSDT", "side": "SELL", "quantity": "50"}
        )
    ).json()
    assert Decimal(big["fillable_quantity"]) < Decimal("50")  # only what the band holds
    bad = await api.client.post(
        "/api/orders/quote", json={"symbol": "BTCUSDT", "side": "SELL", "quantity": "0.000001"}
    )
    assert bad.status_code == 422


async def test_a_requote_that_moves_only_the_makers_locks_does_not_wake_the_relay(mm_system: Api) -> None:
    """Issue #16: a re-quote wakes the outbox relay only if it wrote outbox rows (it filled a user's order);
    one that only moves the market maker's quotes and locks has nothing for the relay, and woke it per tick."""
    api = mm_system
    relay = api.system.worker.rt.relay
    wakes: list[float] = []
    notify = relay.notify

    def counted() -> None:
        wakes.append(datetime.now(UTC).timestamp())
        notify()

    relay.notify = counted  # the instance's own: every caller of relay.notify() goes through it
    try:
        for price in ("61000", "61500", "62500"):
            await _tick(api, price)
            await eventually(lambda p=Decimal(price): _quoted_near(api, p), timeout=15)  # type: ignore[misc]
        assert wakes == []
    finally:
        del relay.notify


async def _quoted_near(api: Api, mid: Decimal) -> bool:
    d = await _depth(api)
    return bool(d["bids"] and d["asks"]) and Decimal(d["bids"][0][0]) < mid < Decimal(d["asks"][0][0])
