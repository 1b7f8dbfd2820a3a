"""A stop order placed through the Binance-compatible API triggers on the paper book's trades like any other:
python-binance, unmodified, places a STOP_LOSS sell, sees it waiting (not working), then, after trades by other
users reach its stop price, filled under the same orderId, with executionReports of type STOP_LOSS and stop
price P. The market maker is off, so the test's own trades set the last price; SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from binance import AsyncClient, BinanceSocketManager
from binance.ws.websocket_api import WebsocketAPI

from tests.binance_api.conftest import Served, serve
from tests.support.eventually import eventually


@pytest.fixture(params=["sqlite", "postgresql"])
async def quiet(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> AsyncIterator[Served]:
    """tradebridge up without the market maker; every account starts with USDT and 1 BTC."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'tradebridge.db'}" if request.param == "sqlite" else pg_url
    async with serve(url, paper_market_maker="off", paper_starting_balances_csv="USDT=10000,BTC=1") as served:
        yield served


async def _settled(api: httpx.AsyncClient, order_id: str, status: str) -> None:
    async def check() -> bool:
        return bool((await api.get(f"/api/orders/{order_id}")).json()["status"] == status)

    await eventually(check, timeout=15)


async def _place(api: httpx.AsyncClient, status: str, **body: str) -> None:
    r = await api.post("/api/orders", json={"symbol": "BTCUSDT", "type": "LIMIT", "quantity": "0.01", **body})
    assert r.status_code == 202, r.text
    await _settled(api, r.json()["order_id"], status)


async def test_a_stop_placed_through_the_binance_api_triggers_on_the_book(quiet: Served) -> None:
    maker, taker, bidder = [
        httpx.AsyncClient(base_url=quiet.base, headers=await quiet.user(f"{n}@example.com"))
        for n in ("maker", "taker", "bidder")
    ]
    key = await quiet.api_key(await quiet.user("stopper@example.com"))
    client = AsyncClient(key["api_key"], key["secret"])
    client.API_URL = quiet.base + "/binance/api"
    ws = quiet.base.replace("http://", "ws://") + "/binance"
    client.ws_api = WebsocketAPI(url=ws + "/ws-api/v3")
    client.ws_api.TIMEOUT = 5
    try:
        async with maker, taker, bidder, BinanceSocketManager(client).user_socket() as user:

            async def trade_at(price: str) -> None:
                await _place(maker, "NEW", side="SELL", price=price)
                await _place(taker, "FILLED", side="BUY", price=price)

            await trade_at("60000")  # the last price
            await _place(bidder, "NEW", side="BUY", price="58000")  # what the stop will sell into
            stop = await client.create_order(
                symbol="BTCUSDT", side="SELL", type="STOP_LOSS", quantity="0.01", stopPrice="59000"
            )
            got = await client.get_order(symbol="BTCUSDT", orderId=stop["orderId"])
            assert (got["status"], got["type"], got["stopPrice"]) == ("NEW", "STOP_LOSS", "59000.00000000")
            assert got["isWorking"] is False and got["workingTime"] == -1

            await trade_at("59000")  # the last price reaches the stop: it sells into the 58000 bid

            async def filled() -> dict[str, Any] | None:
                o = await client.get_order(symbol="BTCUSDT", orderId=stop["orderId"])
                return o if o["status"] == "FILLED" else None

            done: Any = await eventually(filled, timeout=15)
            assert (done["executedQty"], done["cummulativeQuoteQty"]) == ("0.01000000", "580.00000000")
            assert done["isWorking"] is False and done["workingTime"] > 0  # it worked from its trigger on

            reports: list[dict[str, Any]] = []
            while not reports or reports[-1]["X"] != "FILLED":
                event = await asyncio.wait_for(user.recv(), 10)
                if event.get("e") == "executionReport" and event["i"] == stop["orderId"]:
                    reports.append(event)
            assert [(r["x"], r["o"], r["P"]) for r in reports] == [
                ("NEW", "STOP_LOSS", "59000.00000000"),
                ("TRADE", "STOP_LOSS", "59000.00000000"),
            ]
            assert reports[0]["w"] is False and reports[-1]["L"] == "58000.00000000"
    finally:
        await client.close_connection()
