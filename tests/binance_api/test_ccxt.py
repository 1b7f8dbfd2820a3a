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


async def test_public_endpoints_through_both_clients(tb: Served) -> None:
    """ping, time, trades, aggTrades, ticker/price, ticker/bookTicker and ticker/24hr as ccxt and python-binance call them:
    the book's own figures (best bid and ask of its depth, the trade just made)."""
    from binance import AsyncClient

    key = await tb.api_key(await tb.user("public@example.com"))
    ex = tb.ccxt(key)
    client = AsyncClient(key["api_key"], key["secret"])
    client.API_URL = tb.base + "/binance/api"
    try:
        await ex.load_markets()
        bought = await ex.create_order(SYMBOL, "market", "buy", 0.001)
        assert abs(await ex.fetch_time() - ex.milliseconds()) < 60_000
        # ccxt's fetch_trades calls aggTrades by default; trades when asked to
        for params in ({}, {"fetchTradesMethod": "publicGetTrades"}):
            trades = await ex.fetch_trades(SYMBOL, params=params)
            seen = [(t["price"], t["amount"]) for t in trades]
            assert (bought["average"], 0.001) in seen, (params, trades)
        best = (await ex.fetch_bids_asks([SYMBOL]))[SYMBOL]  # the market maker quotes both sides
        assert 0 < best["bid"] < best["ask"]
        assert (await ex.fetch_last_prices([SYMBOL]))[SYMBOL]["price"] > 0
        day = await ex.fetch_ticker(SYMBOL)
        assert day["last"] > 0 and 0 < day["bid"] < day["ask"]

        assert await client.ping() == {}
        assert abs((await client.get_server_time())["serverTime"] - ex.milliseconds()) < 60_000
        price = await client.get_symbol_ticker(symbol="BTCUSDT")
        assert price["symbol"] == "BTCUSDT" and float(price["price"]) > 0
        top = await client.get_orderbook_ticker(symbol="BTCUSDT")
        assert 0 < float(top["bidPrice"]) < float(top["askPrice"])
        recent = await client.get_recent_trades(symbol="BTCUSDT", limit=5)
        assert recent and {"id", "price", "qty", "time", "isBuyerMaker"} <= set(recent[-1])
    finally:
        await ex.close()
        await client.close_connection()


def _tick(price: float) -> float:
    return round(price, 2)


async def test_ccxt_places_the_paper_books_stop_orders(tb: Served) -> None:
    """Every stop type the paper book has, through ccxt unmodified: accepted with its stopPrice, waiting off the
    book (open, not working), listed, seen by our own API as the same stop order, canceled; one that would
    trigger at once is refused by the book and answered -2010, which ccxt raises as InvalidOrder."""
    bearer = await tb.user("stops@example.com")
    ex = tb.ccxt(await tb.api_key(bearer, label="stops"))
    try:
        markets = await ex.load_markets()
        types = markets[SYMBOL]["info"]["orderTypes"]
        assert {"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"} <= set(types)
        bought = await ex.create_order(SYMBOL, "market", "buy", 0.004)  # the book's last trade price now
        last = bought["average"]
        low, high = _tick(last * 0.6), _tick(last * 1.6)
        placed = {
            "STOP_LOSS_LIMIT": await ex.create_order(
                SYMBOL, "STOP_LOSS_LIMIT", "sell", 0.001, _tick(low * 0.99), {"stopPrice": low}
            ),
            "STOP_LOSS": await ex.create_order(SYMBOL, "STOP_LOSS", "sell", 0.001, None, {"stopPrice": low}),
            "TAKE_PROFIT_LIMIT": await ex.create_order(
                SYMBOL, "TAKE_PROFIT_LIMIT", "sell", 0.001, high, {"stopPrice": high}
            ),
            "TAKE_PROFIT": await ex.create_order(
                SYMBOL, "TAKE_PROFIT", "buy", 0.001, None, {"stopPrice": low}
            ),
        }
        for kind, order in placed.items():
            assert order["status"] == "open", (kind, order)
            got = await ex.fetch_order(order["id"], SYMBOL)
            assert (got["info"]["type"], got["status"]) == (kind, "open"), got
            assert got["triggerPrice"] == (high if kind == "TAKE_PROFIT_LIMIT" else low), got
            assert got["info"]["isWorking"] is False and got["info"]["workingTime"] == -1, got["info"]
        listed = {o["id"]: o["triggerPrice"] for o in await ex.fetch_open_orders(SYMBOL)}
        assert listed == {o["id"]: o["triggerPrice"] for o in placed.values()}

        # the same stop orders in our own API (one book: our types and stop prices)
        async with httpx.AsyncClient(base_url=tb.base, headers=bearer) as api:
            ours = (await api.get("/api/orders", params={"status": "open"})).json()["items"]
        assert {(o["client_order_id"], o["type"], float(o["stop_price"])) for o in ours} == {
            (o["clientOrderId"], kind, o["triggerPrice"]) for kind, o in placed.items()
        }

        # a STOP_LOSS_LIMIT buy triggers when the last price rises to its stop: below the last price it would
        # trigger at once, and the book refuses it (Binance's -2010 "Order would trigger immediately.")
        with pytest.raises(ccxt.InvalidOrder, match="Order would trigger immediately"):
            await ex.create_order(SYMBOL, "STOP_LOSS_LIMIT", "buy", 0.001, low, {"stopPrice": low})

        swept = {o["id"]: o["status"] for o in await ex.cancel_all_orders(SYMBOL)}
        assert swept == {o["id"]: "canceled" for o in placed.values()}
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
            with pytest.raises(ccxt.OrderNotFound):  # -2011
                await ex.cancel_order("999999999", SYMBOL)
            with pytest.raises(ccxt.OrderNotFound):  # -2013
                await ex.fetch_order("999999999", SYMBOL)
            with pytest.raises(ccxt.AuthenticationError):  # -1022
                await wrong.fetch_balance()
            # Request weight exhausted: 429 with Retry-After and -1003, as Binance answers it. ccxt's binance
            # raises DDoSProtection for any 429 before it reads the code, against Binance too; its
            # RateLimitExceeded (a sibling under NetworkError, not a subclass) only for -1003 with another status.
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


async def test_new_order_response_types(tb: Served) -> None:
    """newOrderRespType ACK, RESULT and FULL answer Binance's three shapes; without it MARKET and LIMIT answer
    FULL and the other types ACK, as Binance does (python-binance sends none)."""
    from binance import AsyncClient

    key = await tb.api_key(await tb.user("shapes@example.com"))
    client = AsyncClient(key["api_key"], key["secret"])
    client.API_URL = tb.base + "/binance/api"
    ack_fields = {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}
    limit = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001"}
    try:
        ack = await client.create_order(**limit, price="20000", newOrderRespType="ACK")
        assert set(ack) == ack_fields, ack
        result = await client.create_order(**limit, price="20000", newOrderRespType="RESULT")
        assert result["status"] == "NEW" and "fills" not in result and ack_fields < set(result)
        full = await client.create_order(
            symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001", newOrderRespType="FULL"
        )
        assert (
            full["status"] == "FILLED" and len(full["fills"]) == 1 and full["fills"][0]["qty"] == "0.00100000"
        )

        default_limit = await client.create_order(**limit, price="20000")
        assert default_limit["status"] == "NEW" and default_limit["fills"] == []
        default_stop = await client.create_order(
            symbol="BTCUSDT",
            side="SELL",
            type="STOP_LOSS_LIMIT",
            timeInForce="GTC",
            quantity="0.001",
            price="20000",
            stopPrice="20000",
        )
        assert set(default_stop) == ack_fields, default_stop
        got = await client.get_order(symbol="BTCUSDT", orderId=default_stop["orderId"])
        assert (got["type"], got["stopPrice"], got["isWorking"]) == (
            "STOP_LOSS_LIMIT",
            "20000.00000000",
            False,
        )
    finally:
        await client.close_connection()
