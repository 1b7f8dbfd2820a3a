"""The Binance-compatible WebSocket side through the real clients, unmodified, pointed at TradeBridge as
`tradebridge up` builds it (served by uvicorn): python-binance's user stream on the WebSocket API
(userDataStream.subscribe.signature) sees executionReports of orders placed, queried and canceled over REST;
raw and combined market streams; the diff depth stream continues REST depth's lastUpdateId; ccxt.pro's
watchers. URLs are set as tests/binance_double/clients.py sets them for the double."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal
from typing import Any

import ccxt.pro
import httpx
import pytest
import websockets
from binance import AsyncClient, BinanceSocketManager
from binance.exceptions import BinanceAPIException
from binance.ws.websocket_api import WebsocketAPI

from events import binance_ws
from tests.binance_api.conftest import Served
from tests.support.eventually import eventually

D = Decimal


def ws_base(tb: Served) -> str:
    return tb.base.replace("http://", "ws://") + "/binance"


@asynccontextmanager
async def python_binance(
    tb: Served, key: dict[str, Any]
) -> AsyncIterator[tuple[AsyncClient, BinanceSocketManager]]:
    client = AsyncClient(key["api_key"], key["secret"])
    client.API_URL = tb.base + "/binance/api"
    client.ws_api = WebsocketAPI(url=ws_base(tb) + "/ws-api/v3")
    client.ws_api.TIMEOUT = 5
    sockets = BinanceSocketManager(client)
    sockets.STREAM_URL = ws_base(tb) + "/"
    try:
        yield client, sockets
    finally:
        await client.close_connection()


def ccxt_pro(tb: Served, key: dict[str, Any]) -> Any:
    exchange = ccxt.pro.binance(
        {
            "apiKey": key["api_key"],
            "secret": key["secret"],
            "enableRateLimit": False,
            "timeout": 10000,
            "options": {
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},
                "fetchMargins": False,
                "fetchCurrencies": False,
            },
        }
    )
    exchange.set_sandbox_mode(True)  # replaces urls["api"] wholesale: set ours after it
    api, ws = tb.base + "/binance/api", ws_base(tb)
    exchange.urls["api"] = {
        "public": api + "/v3",
        "private": api + "/v3",
        "v1": api + "/v1",
        "ws": {"spot": ws + "/ws", "margin": ws + "/ws", "ws-api": {"spot": ws + "/ws-api/v3"}},
    }
    return exchange


async def subscribed(tb: Served, connections: int) -> None:
    """The socket and its user data subscription are both hub connections."""
    hub = tb.app.state.system.hub
    await eventually(lambda: hub.connection_count >= connections, message="user data subscription")


async def reports(user: Any, until: Any, timeout: float = 10) -> list[dict[str, Any]]:
    """executionReports received until `until(report)` holds."""
    seen: list[dict[str, Any]] = []
    while True:
        event = await asyncio.wait_for(user.recv(), timeout)
        if event.get("e") == "executionReport":
            seen.append(event)
            if until(event):
                return seen


async def test_python_binance_user_stream_place_query_cancel_and_fill(tb: Served) -> None:
    bearer = await tb.user("ws@example.com")
    key = await tb.api_key(bearer, scopes=["read", "trade"])
    async with python_binance(tb, key) as (client, sockets), sockets.user_socket() as user:
        await subscribed(tb, 2)
        resting = await client.create_order(
            symbol="BTCUSDT", side="BUY", type="LIMIT", timeInForce="GTC", quantity="0.001", price="20000"
        )
        got = await client.get_order(symbol="BTCUSDT", orderId=resting["orderId"])
        assert got["status"] == "NEW"
        await client.cancel_order(symbol="BTCUSDT", orderId=resting["orderId"])
        seen = await reports(user, lambda r: r["X"] == "CANCELED")
        assert [(r["i"], r["x"], r["X"]) for r in seen] == [
            (resting["orderId"], "NEW", "NEW"),
            (resting["orderId"], "CANCELED", "CANCELED"),
        ]
        assert (seen[0]["p"], seen[0]["q"], seen[0]["c"]) == (
            "20000.00000000",
            "0.00100000",
            got["clientOrderId"],
        )

        bought = await client.create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.002")
        seen = await reports(user, lambda r: r["X"] == "FILLED")
        fills = [r for r in seen if r["x"] == "TRADE"]
        assert {r["i"] for r in seen} == {bought["orderId"]} and seen[0]["x"] == "NEW"
        trades = await client.get_my_trades(symbol="BTCUSDT")
        assert [(r["t"], r["L"], r["l"]) for r in fills] == [
            (t["id"], t["price"], t["qty"]) for t in trades if t["orderId"] == bought["orderId"]
        ]
        assert fills[-1]["z"] == "0.00200000" and fills[-1]["Z"] == bought["cummulativeQuoteQty"]
        assert fills[-1]["N"] == "USDT" and fills[-1]["m"] is False

        async def position() -> bool:  # BALANCE_UPDATE as outboundAccountPosition
            while True:
                event = await asyncio.wait_for(user.recv(), 10)
                if event.get("e") == "outboundAccountPosition":
                    return any(b["a"] == "BTC" for b in event["B"])

        assert await position()


async def _reply(ws: Any, req_id: int) -> dict[str, Any]:
    while True:
        msg: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if msg.get("id") == req_id:
            return msg


async def _event(ws: Any) -> dict[str, Any]:
    """The next user data event (answers to requests skipped)."""
    while True:
        msg: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 10))
        if "event" in msg:
            return msg


async def _subscribe(ws: Any, key: dict[str, Any], req_id: int) -> dict[str, Any]:
    """userDataStream.subscribe.signature signed by the WebSocket API's rule (sorted params, not encoded)."""
    params: dict[str, Any] = {"apiKey": key["api_key"], "timestamp": int(time.time() * 1000)}
    payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    params["signature"] = hmac.new(key["secret"].encode(), payload.encode(), hashlib.sha256).hexdigest()
    await ws.send(
        json.dumps({"id": req_id, "method": "userDataStream.subscribe.signature", "params": params})
    )
    return await _reply(ws, req_id)


async def test_user_stream_ends_with_event_stream_terminated(
    tb: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unsubscribing ends a subscription with eventStreamTerminated; so does revoking its key (noticed with
    the next event; the re-check interval is set to zero here instead of waiting 5 s), and nothing of the
    key's user is sent after it."""
    bearer = await tb.user("terminated@example.com")
    key = await tb.api_key(bearer)
    async with websockets.connect(ws_base(tb) + "/ws-api/v3") as ws:
        sid = (await _subscribe(ws, key, 1))["result"]["subscriptionId"]
        assert (await _subscribe(ws, key, 2))["error"]["code"] == -2035  # one per key per connection
        await ws.send(json.dumps({"id": 3, "method": "session.subscriptions"}))
        assert (await _reply(ws, 3))["result"] == [{"subscriptionId": sid}]
        await ws.send(json.dumps({"id": 4, "method": "userDataStream.unsubscribe", "params": {}}))
        ended = await _event(ws)
        assert ended["subscriptionId"] == sid and ended["event"]["e"] == "eventStreamTerminated"
        await ws.send(json.dumps({"id": 5, "method": "session.subscriptions"}))
        assert (await _reply(ws, 5))["result"] == []

        again = (await _subscribe(ws, key, 6))["result"]["subscriptionId"]
        assert again != sid
        monkeypatch.setattr(binance_ws, "KEY_RECHECK_S", 0.0)
        async with httpx.AsyncClient(base_url=tb.base, headers=bearer) as api:
            assert (await api.delete(f"/api/api-keys/{key['id']}")).status_code == 204
            body = {
                "symbol": "BTCUSDT",
                "side": "BUY",
                "type": "LIMIT",
                "quantity": "0.001",
                "price": "20000",
            }
            assert (await api.post("/api/orders", json=body)).status_code == 202
        revoked = await _event(ws)  # not an executionReport of that order: the stream ends first
        assert revoked["subscriptionId"] == again and revoked["event"]["e"] == "eventStreamTerminated"
        await ws.send(json.dumps({"id": 7, "method": "session.subscriptions"}))
        assert (await _reply(ws, 7))["result"] == []


async def test_user_stream_refuses_a_wrong_signature(tb_sqlite: Served) -> None:
    key = await tb_sqlite.api_key(await tb_sqlite.user("wrong@example.com"))
    async with python_binance(tb_sqlite, {**key, "secret": "0" * 64}) as (_, sockets):
        with pytest.raises(BinanceAPIException) as info:
            async with sockets.user_socket():
                pass
        assert (info.value.status_code, info.value.code) == (400, -1022)


async def test_raw_and_combined_market_streams(tb_sqlite: Served) -> None:
    base = ws_base(tb_sqlite)
    async with websockets.connect(base + "/ws/btcusdt@depth5") as raw:
        first = json.loads(await raw.recv())  # a partial book stream starts with the current book
        assert len(first["bids"]) == len(first["asks"]) == 5 and first["lastUpdateId"] > 0
        await raw.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@bookTicker"], "id": 1}))
        await raw.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 2}))

        async def reply(req_id: int) -> Any:
            while True:
                msg = json.loads(await asyncio.wait_for(raw.recv(), 10))
                if msg.get("id") == req_id:
                    return msg

        assert await reply(1) == {"result": None, "id": 1}
        assert (await reply(2))["result"] == ["btcusdt@depth5", "btcusdt@bookTicker"]
        await raw.send(json.dumps({"method": "SUBSCRIBE", "params": ["btcusdt@nonsense"], "id": 3}))
        assert await reply(3) == {"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": 3}

    async with websockets.connect(base + "/stream?streams=btcusdt@trade/btcusdt@kline_1m") as combined:
        key = await tb_sqlite.api_key(await tb_sqlite.user("streams@example.com"))
        async with python_binance(tb_sqlite, key) as (client, _):
            await client.create_order(symbol="BTCUSDT", side="BUY", type="MARKET", quantity="0.001")
        got: dict[str, Any] = {}
        while set(got) != {"btcusdt@trade", "btcusdt@kline_1m"}:
            msg = json.loads(await asyncio.wait_for(combined.recv(), 10))
            got[msg["stream"]] = msg["data"]
        trade, kline = got["btcusdt@trade"], got["btcusdt@kline_1m"]
        assert trade["e"] == "trade" and trade["q"] == "0.00100000" and trade["m"] is False
        assert kline["e"] == "kline" and kline["k"]["i"] == "1m" and D(kline["k"]["c"]) > 0


async def test_diff_depth_continues_rest_depth(tb_sqlite: Served) -> None:
    """Binance's sync: buffer diffs, fetch REST depth, drop diffs with u <= lastUpdateId, the first kept has
    U <= lastUpdateId + 1 <= u, each next U is the previous u + 1; the book built so equals REST depth."""
    async with websockets.connect(ws_base(tb_sqlite) + "/ws/btcusdt@depth@100ms") as ws:
        buffered: list[dict[str, Any]] = []

        async def read() -> None:
            while True:
                buffered.append(json.loads(await ws.recv()))

        reader = asyncio.ensure_future(read())
        try:
            async with httpx.AsyncClient(base_url=tb_sqlite.base) as http:
                snap = (await http.get("/binance/api/v3/depth", params={"symbol": "BTCUSDT"})).json()
                key = await tb_sqlite.api_key(await tb_sqlite.user("depth@example.com"))
                async with python_binance(tb_sqlite, key) as (client, _):
                    await client.create_order(
                        symbol="BTCUSDT",
                        side="BUY",
                        type="LIMIT",
                        timeInForce="GTC",
                        quantity="0.001",
                        price=snap["bids"][0][0],
                    )
                await eventually(lambda: any(d["u"] > snap["lastUpdateId"] for d in buffered), message="diff")
                after = (await http.get("/binance/api/v3/depth", params={"symbol": "BTCUSDT"})).json()
                await eventually(
                    lambda: any(d["u"] >= after["lastUpdateId"] for d in buffered), message="diff to REST"
                )
        finally:
            reader.cancel()
        bids = {D(p): D(q) for p, q in snap["bids"]}
        asks = {D(p): D(q) for p, q in snap["asks"]}
        last = snap["lastUpdateId"]
        applied = 0
        for diff in buffered:
            if diff["u"] <= last:
                continue
            assert diff["U"] == last + 1 if applied else diff["U"] <= last + 1 <= diff["u"], (diff, last)
            for side, levels in ((bids, diff["b"]), (asks, diff["a"])):
                for p, q in levels:
                    side.pop(D(p), None) if D(q) == 0 else side.__setitem__(D(p), D(q))
            last, applied = diff["u"], applied + 1
            if last == after["lastUpdateId"]:
                break
        assert last == after["lastUpdateId"] and applied >= 1
        assert sorted(bids.items(), reverse=True) == [(D(p), D(q)) for p, q in after["bids"]]
        assert sorted(asks.items()) == [(D(p), D(q)) for p, q in after["asks"]]


async def test_ccxt_pro_watchers(tb_sqlite: Served) -> None:
    key = await tb_sqlite.api_key(await tb_sqlite.user("pro@example.com"))
    exchange = ccxt_pro(tb_sqlite, key)
    try:
        await exchange.load_markets()
        book = await asyncio.wait_for(exchange.watch_order_book("BTC/USDT"), 20)
        assert book["bids"] and book["asks"] and book["bids"][0][0] < book["asks"][0][0]
        ticker = await asyncio.wait_for(exchange.watch_ticker("BTC/USDT"), 20)
        assert ticker["last"] > 0
        watching = asyncio.ensure_future(exchange.watch_orders("BTC/USDT"))
        await subscribed(tb_sqlite, 3)
        order = await exchange.create_order("BTC/USDT", "market", "buy", 0.001)
        await asyncio.wait_for(watching, 20)

        def streamed() -> dict[str, Any] | None:
            """The order as ccxt.pro's cache of streamed updates has it (create_order's REST answer is not in it).
            Not a second watch_orders: a FILLED report that lands before that call resolves no one's future, and
            the call then waits for an update that never comes."""
            mine = [o for o in exchange.orders or [] if o["id"] == order["id"]]
            return mine[-1] if mine and mine[-1]["status"] == "closed" else None

        final = await eventually(streamed, timeout=20, message="no closed order on the stream")
        assert final is not None and final["filled"] == 0.001
    finally:
        await exchange.close()
