"""ccxt's binance, unmodified, its API URLs pointed at TradeBridge's Binance-compatible API (served by uvicorn,
the app `tradebridge up` builds): market data, every supported order type, open orders, trades, balance, and
ccxt's own error mapping; the orders are ordinary paper orders of the one book, seen by our own API too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt
import httpx
import pytest

from tests.binance_api.conftest import Served, serve
from tests.support.eventually import eventually

SYMBOL = "BTC/USDT"


async def test_ccxt_trades_the_one_paper_book(tb: Served) -> None:
    bearer = await tb.user("bot@example.com")
    key = await tb.api_key(bearer, label="ccxt")
    ex = tb.ccxt(key)
    try:
        markets = await ex.load_markets()
        btc = markets[SYMBOL]
        assert btc["precision"]["amount"] == 0.00001 and btc["precision"]["price"] == 0.01
        assert btc["limits"]["cost"]["min"] == 5 and btc["limits"]["amount"]["min"] == 0.00001

        ticker = await ex.fetch_ticker(SYMBOL)
        book = await ex.fetch_order_book(SYMBOL, 5)
        assert ticker["last"] > 0 and book["bids"] and book["asks"]
        assert book["bids"][0][0] < book["asks"][0][0] and len(book["asks"]) <= 5
        ohlcv = await ex.fetch_ohlcv(SYMBOL, "1m", limit=10)
        assert all(len(c) == 6 for c in ohlcv)
        assert (await ex.fetch_balance())["USDT"]["free"] == 10000

        bought = await ex.create_order(SYMBOL, "market", "buy", 0.002)
        assert (bought["status"], bought["filled"], len(bought["trades"])) == ("closed", 0.002, 1)
        spent = await ex.create_market_buy_order_with_cost(SYMBOL, 50)
        assert spent["status"] == "closed" and 0 < spent["cost"] <= 50.5
        sold = await ex.create_order(SYMBOL, "market", "sell", 0.001)
        assert sold["status"] == "closed"

        resting = await ex.create_order(SYMBOL, "limit", "buy", 0.001, 20000)
        assert resting["status"] == "open" and resting["type"] == "limit"
        maker = await ex.create_order(SYMBOL, "limit", "buy", 0.001, 20001, {"postOnly": True})
        assert maker["status"] == "open"
        assert (await ex.fetch_order(resting["id"], SYMBOL))["status"] == "open"
        assert {o["id"] for o in await ex.fetch_open_orders(SYMBOL)} == {resting["id"], maker["id"]}
        canceled = await ex.cancel_order(resting["id"], SYMBOL)
        assert canceled["status"] == "canceled"

        for tif in ("IOC", "FOK"):  # far from the book: nothing fills, the order expires
            gone = await ex.create_order(SYMBOL, "limit", "buy", 0.001, 20000, {"timeInForce": tif})
            assert gone["status"] == "expired", gone
        crossing = await ex.create_order(
            SYMBOL, "limit", "buy", 0.001, book["asks"][0][0] * 1.01, {"timeInForce": "IOC"}
        )
        assert crossing["status"] == "closed"
        with pytest.raises(ccxt.OrderImmediatelyFillable):
            await ex.create_order(
                SYMBOL, "limit", "buy", 0.001, book["asks"][0][0] * 1.01, {"postOnly": True}
            )

        # order/test validates without placing; allOrders lists every order; DELETE openOrders cancels them all
        assert await ex.create_order(SYMBOL, "limit", "buy", 0.001, 20000, {"test": True}) is not None
        extra = await ex.create_order(SYMBOL, "limit", "sell", 0.001, 200000)
        assert extra["status"] == "open"
        everything = {o["id"]: o["status"] for o in await ex.fetch_orders(SYMBOL)}
        assert everything[bought["id"]] == "closed" and everything[canceled["id"]] == "canceled"
        assert len(everything) == 9  # eight placed above and this one; the test order was not placed
        swept = await ex.cancel_all_orders(SYMBOL)
        assert {o["id"] for o in swept} == {maker["id"], extra["id"]}
        assert await ex.fetch_open_orders(SYMBOL) == []

        trades = await ex.fetch_my_trades(SYMBOL)
        assert {t["order"] for t in trades} >= {bought["id"], spent["id"], sold["id"], crossing["id"]}
        balance = await ex.fetch_balance()

        # One book, one ledger: our own API sees the same orders, balances and position ...
        async with httpx.AsyncClient(base_url=tb.base, headers=bearer) as api:
            ours = (await api.get("/api/orders", params={"status": "all", "limit": 50})).json()["items"]
            by_client = {o["client_order_id"]: o for o in ours}
            assert by_client[bought["clientOrderId"]]["status"] == "FILLED"
            assert by_client[canceled["clientOrderId"]]["status"] == "CANCELED"
            assert by_client[maker["clientOrderId"]]["status"] == "CANCELED"
            usdt = next(b for b in (await api.get("/api/balances")).json() if b["asset"] == "USDT")
            assert float(usdt["free"]) == balance["USDT"]["free"]

            async def position() -> bool:
                rows = (await api.get("/api/positions")).json()
                return any(p["symbol"] == "BTCUSDT" and float(p["quantity"]) > 0 for p in rows)

            await eventually(position, timeout=10)

            # ... and an order placed through our API is visible and cancelable through the Binance one
            r = await api.post(
                "/api/orders",
                json={
                    "symbol": "BTCUSDT",
                    "side": "BUY",
                    "type": "LIMIT",
                    "quantity": "0.001",
                    "price": "19000",
                    "client_order_id": "ours-1",
                },
            )
            assert r.status_code == 202, r.text
        theirs = await ex.fetch_order(None, SYMBOL, {"origClientOrderId": "ours-1"})
        assert theirs["clientOrderId"] == "ours-1" and theirs["price"] == 19000
        assert theirs["id"] in {o["id"] for o in await ex.fetch_open_orders(SYMBOL)}
        assert (await ex.cancel_order(theirs["id"], SYMBOL))["status"] == "canceled"
    finally:
        await ex.close()


async def test_ccxt_error_mapping(tmp_path: Path) -> None:
    """ccxt raises its own exceptions from our Binance error codes."""
    async with serve(
        f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}", binance_api_weight_limit="300/minute"
    ) as tb:
        bearer = await tb.user("errors@example.com")
        key = await tb.api_key(bearer)
        ex = tb.ccxt(key)
        wrong = tb.ccxt({**key, "secret": "x" * 64})
        try:
            await ex.load_markets()
            wrong.markets, wrong.markets_by_id, wrong.symbols = ex.markets, ex.markets_by_id, ex.symbols
            with pytest.raises(ccxt.InsufficientFunds):
                await ex.create_order(SYMBOL, "limit", "buy", 1, 20000)
            with pytest.raises(ccxt.InvalidOrder):  # Filter failure: LOT_SIZE (above the maximum quantity)
                await ex.create_order(SYMBOL, "limit", "buy", 10000, 20000)
            with pytest.raises(ccxt.InvalidOrder):  # -2010 Duplicate order sent.
                for _ in range(2):
                    await ex.create_order(SYMBOL, "limit", "buy", 0.001, 20000, {"clientOrderId": "dup-1"})
            with pytest.raises(ccxt.InvalidOrder):  # -2010: no stop orders (yet)
                await ex.create_order(SYMBOL, "STOP_LOSS_LIMIT", "buy", 0.001, 20000, {"stopPrice": 20001})
            with pytest.raises(ccxt.OrderNotFound):  # -2011
                await ex.cancel_order("999999999", SYMBOL)
            with pytest.raises(ccxt.OrderNotFound):  # -2013
                await ex.fetch_order("999999999", SYMBOL)
            with pytest.raises(ccxt.AuthenticationError):  # -1022
                await wrong.fetch_balance()
            # Request weight exhausted: 429 with Retry-After and -1003. ccxt's binance raises DDoSProtection for
            # any 429 before it reads the code (RateLimitExceeded is its subclass for -1003 with another status).
            with pytest.raises(ccxt.DDoSProtection) as exc:
                for _ in range(100):
                    await ex.fetch_order_book(SYMBOL, 5)
            assert '"code":-1003' in str(exc.value)
            async with httpx.AsyncClient(base_url=tb.base) as c:
                r = await c.get("/binance/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 5})
                assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
                assert r.json()["code"] == -1003
        finally:
            await ex.close()
            await wrong.close()


async def test_python_binance_signs_unencoded_values(tb_sqlite: Served) -> None:
    """python-binance signs its parameters before its HTTP library percent-encodes the body: accepted too."""
    from binance import AsyncClient
    from binance.exceptions import BinanceAPIException

    bearer = await tb_sqlite.user("pb@example.com")
    key = await tb_sqlite.api_key(bearer)
    client = AsyncClient(key["api_key"], key["secret"])
    client.API_URL = tb_sqlite.base + "/binance/api"
    bad = AsyncClient(key["api_key"], "x" * 64)
    bad.API_URL = client.API_URL
    try:
        assert (await client.get_account())["balances"][0]["asset"] == "USDT"
        order: dict[str, Any] = await client.create_order(
            symbol="BTCUSDT",
            side="BUY",
            type="LIMIT",
            timeInForce="GTC",
            quantity="0.001",
            price="20000",
            newClientOrderId="pb:one/two",
        )
        assert order["clientOrderId"] == "pb:one/two" and order["status"] == "NEW"
        got = await client.get_order(symbol="BTCUSDT", orderId=order["orderId"])
        assert got["clientOrderId"] == "pb:one/two"
        assert (await client.cancel_order(symbol="BTCUSDT", origClientOrderId="pb:one/two"))[
            "status"
        ] == "CANCELED"
        with pytest.raises(BinanceAPIException) as exc:
            await bad.get_account()
        assert exc.value.code == -1022
    finally:
        await client.close_connection()
        await bad.close_connection()
