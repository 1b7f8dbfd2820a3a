"""Market streams: raw frames, the diff depth sync against REST depth, and the real clients' watchers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import ccxt
import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.binance_double import Account, BinanceDouble
from tests.binance_double.clients import ccxt_pro, python_binance
from tests.support.eventually import eventually

D = Decimal


async def next_json(ws: ClientConnection) -> Any:
    return json.loads(await ws.recv())


async def subscribed(double: BinanceDouble, *streams: str) -> None:
    """Wait until the double has a market connection subscribed to all of `streams`."""

    def probe() -> bool:
        live = {s for conn in double.ws_subscriptions()["market"] for s in conn}
        return set(streams) <= live

    await eventually(probe, message=f"no subscription to {streams}")


@pytest.fixture
async def raw(binance_double: BinanceDouble) -> AsyncIterator[ClientConnection]:
    async with websockets.connect(binance_double.ws_url + "/ws") as ws:
        yield ws


async def test_subscribe_unsubscribe_and_list(binance_double: BinanceDouble, raw: ClientConnection) -> None:
    await raw.send(
        json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@trade", "btcusdt@depth5"], "id": 1})
    )
    assert await next_json(raw) == {"result": None, "id": 1}
    partial = await next_json(raw)  # a partial book stream starts with the current book
    assert partial["lastUpdateId"] == binance_double.state.last_update_id("BTCUSDT")
    assert len(partial["bids"]) == len(partial["asks"]) == 5
    await raw.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))
    assert await next_json(raw) == {"result": ["btcusdt@trade", "btcusdt@depth5"], "id": 2}
    await raw.send(json.dumps({"method": "UNSUBSCRIBE", "params": ["btcusdt@depth5"], "id": 3}))
    assert await next_json(raw) == {"result": None, "id": 3}
    await raw.send(json.dumps({"method": "SUBSCRIBE", "params": ["BTCUSDT@nonsense"], "id": 4}))
    assert await next_json(raw) == {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 4}
    await raw.send(json.dumps({"method": "GET_PROPERTY", "params": ["combined"], "id": 5}))
    assert await next_json(raw) == {"result": False, "id": 5}


async def test_trades_raw_and_combined(binance_double: BinanceDouble, binance_account: Account) -> None:
    url = binance_double.ws_url
    async with (
        websockets.connect(url + "/ws/btcusdt@trade") as single,
        websockets.connect(
            url + "/stream?streams=btcusdt@trade/btcusdt@kline_1m/btcusdt@bookTicker"
        ) as combined,
    ):
        await subscribed(binance_double, "btcusdt@trade", "btcusdt@kline_1m")
        binance_double.state.place_external_order(binance_account.api_key, "BTCUSDT", "BUY", "MARKET", "0.02")
        trade = await next_json(single)
        assert {k: trade[k] for k in ("e", "s", "p", "q", "m", "M")} == {
            "e": "trade",
            "s": "BTCUSDT",
            "p": "60000.00000000",
            "q": "0.02000000",
            "m": False,  # the buyer took liquidity
            "M": True,
        }
        assert trade["t"] == binance_double.state.trades()[0].trade_id
        binance_double.state.set_price("BTCUSDT", "60100")
        by_stream: dict[str, list[Any]] = {}
        while "btcusdt@bookTicker" not in by_stream or len(by_stream.get("btcusdt@kline_1m", [])) < 2:
            msg = await next_json(combined)
            by_stream.setdefault(msg["stream"], []).append(msg["data"])
        assert by_stream["btcusdt@trade"][0]["t"] == trade["t"]
        candle = by_stream["btcusdt@kline_1m"][-1]["k"]
        assert (candle["c"], candle["h"], candle["v"], candle["n"], candle["x"]) == (
            "60100.00000000",
            "60100.00000000",
            "0.02000000",
            1,
            False,
        )
        top = by_stream["btcusdt@bookTicker"][-1]
        assert (top["b"], top["a"], top["u"]) == (
            "60099.99000000",
            "60100.01000000",
            binance_double.state.last_update_id("BTCUSDT"),
        )


async def test_diff_depth_keeps_a_local_book_equal_to_rest(
    binance_double: BinanceDouble, binance_account: Account, raw: ClientConnection
) -> None:
    """The documented way: buffer the stream, take a REST snapshot, drop u <= lastUpdateId, apply the rest."""
    state = binance_double.state
    await raw.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@depth@100ms"], "id": 1}))
    assert await next_json(raw) == {"result": None, "id": 1}
    state.place_external_order(binance_account.api_key, "BTCUSDT", "BUY", "LIMIT", "0.01", "59990")
    async with httpx.AsyncClient(base_url=binance_double.url) as http:
        snapshot = (await http.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 1000})).json()
        state.set_price("BTCUSDT", "60000.05")
        state.place_external_order(binance_account.api_key, "BTCUSDT", "SELL", "LIMIT", "0.3", "60001")
        state.set_price("BTCUSDT", "59980")  # fills the resting buy, moves every level
        final_id = state.last_update_id("BTCUSDT")
        book = {
            "bids": {D(p): D(q) for p, q in snapshot["bids"]},
            "asks": {D(p): D(q) for p, q in snapshot["asks"]},
        }
        last = snapshot["lastUpdateId"]
        while last < final_id:
            event = await next_json(raw)
            assert event["e"] == "depthUpdate" and event["s"] == "BTCUSDT"
            if event["u"] <= snapshot["lastUpdateId"]:
                continue
            assert event["U"] == last + 1, "a gap in the diff stream"
            for side, key in (("bids", "b"), ("asks", "a")):
                for price, qty in event[key]:
                    if D(qty) == 0:
                        book[side].pop(D(price), None)
                    else:
                        book[side][D(price)] = D(qty)
            last = event["u"]
        rest = (await http.get("/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 1000})).json()
    assert rest["lastUpdateId"] == last
    assert sorted(book["bids"].items(), reverse=True) == [(D(p), D(q)) for p, q in rest["bids"]]
    assert sorted(book["asks"].items()) == [(D(p), D(q)) for p, q in rest["asks"]]
    assert book["asks"][D("60001")] == D("0.3")  # the resting sell, away from the synthetic levels


async def test_python_binance_socket_manager(binance_double: BinanceDouble, binance_account: Account) -> None:
    client, sockets = python_binance(binance_double, binance_account)
    state = binance_double.state
    try:
        streams = (
            sockets.trade_socket("ETHUSDT"),
            sockets.kline_socket("ETHUSDT", "1m"),
            sockets.depth_socket("ETHUSDT"),
            sockets.depth_socket("ETHUSDT", depth=sockets.WEBSOCKET_DEPTH_5),
        )
        for stream in streams:
            stream.TIMEOUT = 0.2  # its read loop notices the close only between receives (10 s by default)
        async with streams[0] as trades, streams[1] as klines, streams[2] as diffs, streams[3] as partial:
            top5 = await partial.recv()
            assert top5["lastUpdateId"] == state.last_update_id("ETHUSDT") and len(top5["bids"]) == 5
            await subscribed(binance_double, "ethusdt@trade", "ethusdt@kline_1m", "ethusdt@depth")
            before = state.last_update_id("ETHUSDT")
            await client.order_market_buy(symbol="ETHUSDT", quantity="0.5")  # REST through python-binance
            state.set_price("ETHUSDT", "3010")
            trade = await trades.recv()
            assert (trade["e"], trade["s"], trade["q"]) == ("trade", "ETHUSDT", "0.50000000")
            candles = [await klines.recv(), await klines.recv()]
            assert candles[-1]["k"]["c"] == "3010.00000000" and candles[-1]["k"]["v"] == "0.50000000"
            diff = await diffs.recv()
            assert diff["e"] == "depthUpdate" and diff["U"] == before + 1
            assert (await partial.recv())["lastUpdateId"] > top5["lastUpdateId"]
    finally:
        await client.close_connection()


async def test_ccxt_pro_watchers(binance_double: BinanceDouble, binance_account: Account) -> None:
    exchange = ccxt_pro(binance_double, binance_account)
    state = binance_double.state
    try:
        book = await exchange.watch_order_book("BTC/USDT")  # stream first, then the REST snapshot
        assert book["nonce"] == state.last_update_id("BTCUSDT")
        await subscribed(binance_double, "btcusdt@depth@100ms")
        state.set_price("BTCUSDT", "60010")
        await exchange.create_order("BTC/USDT", "limit", "sell", 0.5, 60020.5)
        target = state.last_update_id("BTCUSDT")
        while book["nonce"] < target:
            book = await exchange.watch_order_book("BTC/USDT")
        bids, asks = state.depth("BTCUSDT", 1000)
        assert book["bids"] == [[float(p), float(q)] for p, q in bids]
        assert book["asks"] == [[float(p), float(q)] for p, q in asks]

        trades_future = asyncio.ensure_future(exchange.watch_trades("BTC/USDT"))
        ticker_future = asyncio.ensure_future(exchange.watch_ticker("BTC/USDT"))
        await subscribed(
            binance_double, "btcusdt@trade", "btcusdt@miniTicker"
        )  # ccxt watches the mini ticker
        state.set_price("BTCUSDT", "60030")  # crosses the sell at 60020.5
        trades = await trades_future
        assert (trades[-1]["price"], trades[-1]["amount"], trades[-1]["side"]) == (60020.5, 0.5, "buy")
        ticker = await ticker_future
        assert ticker["symbol"] == "BTC/USDT" and ticker["last"] in (60030.0, 60020.5)
    finally:
        await exchange.close()


async def test_connection_reset_reaches_ccxt_as_a_network_error(binance_double: BinanceDouble) -> None:
    exchange = ccxt_pro(binance_double)
    try:
        await exchange.watch_order_book("ETH/USDT")
        pending = asyncio.ensure_future(exchange.watch_order_book("ETH/USDT"))
        (client,) = exchange.clients.values()
        await eventually(lambda: "orderbook::ETH/USDT" in client.futures)  # the watcher is waiting
        binance_double.reset_ws("market")
        with pytest.raises(ccxt.NetworkError):
            await asyncio.wait_for(pending, 10)
        book = await exchange.watch_order_book("ETH/USDT")  # reconnects and syncs again
        assert book["nonce"] == binance_double.state.last_update_id("ETHUSDT")
    finally:
        await exchange.close()
