"""The documented example client against the real system (gateway + worker + events on PostgreSQL and
Redis, served by uvicorn): orders over REST, their updates over the WebSocket, across a reconnect."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from events.app import events_hook, install_events
from execution.service import start_execution
from gateway.app import create_app
from tests.events.helpers import serve
from tests.support.api import make_settings
from tests.support.eventually import eventually

ROOT = Path(__file__).resolve().parents[2]


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("trading_client", ROOT / "examples" / "trading_client.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["trading_client"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
async def test_example_client_trades_and_follows_updates(pg_url: str, redis_url: str, redis_prefix: str) -> None:
    tc = _example()
    settings = make_settings(pg_url, redis_url=redis_url, redis_prefix=redis_prefix,
                             paper_starting_balances_csv="USDT=10000,BTC=1")
    app = create_app(settings, hooks=[events_hook, start_execution])
    install_events(app)
    async with serve(app) as served:
        base = served.url.replace("ws://", "http://").rsplit("/ws", 1)[0]
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for email in ("maker@example.com", "taker@example.com"):
                r = await http.post("/auth/register", json={"email": email, "password": "password-123"})
                assert r.status_code == 201
            maker = await tc.login(http, "maker@example.com", "password-123")
            taker = await tc.login(http, "taker@example.com", "password-123")

            seen: list[dict[str, Any]] = []

            async def get_token() -> str:
                return taker

            stream = tc.EventStream(base, get_token, seen.append)
            stop = asyncio.Event()
            follower = asyncio.create_task(stream.run(stop))
            try:
                await eventually(lambda: stream.connects >= 1)
                await tc.place_order(http, maker, symbol="BTCUSDT", side="SELL", type="LIMIT",
                                     quantity=Decimal("0.01"), price=Decimal("60000"))
                resting = await tc.place_order(http, taker, symbol="BTCUSDT", side="BUY", type="LIMIT",
                                               quantity=Decimal("0.01"), price=Decimal("50000"))
                await tc.cancel_order(http, taker, resting["order_id"])

                async def ask_resting() -> bool:
                    return bool((await http.get("/api/markets/BTCUSDT/depth")).json()["asks"])

                await eventually(ask_resting)
                bought = await tc.place_order(http, taker, symbol="BTCUSDT", side="BUY", type="MARKET",
                                              quantity=Decimal("0.004"))

                def statuses(order_id: str) -> list[str]:
                    return [m["data"]["status"] for m in seen if m.get("type") == "ORDER_UPDATE" and m["data"]["order_id"] == order_id]

                await eventually(lambda: "FILLED" in statuses(bought["order_id"]), timeout=20)
                await eventually(lambda: "CANCELED" in statuses(resting["order_id"]), timeout=20)
                assert {m["type"] for m in seen} >= {"ORDER_UPDATE", "TRADE", "BALANCE_UPDATE", "POSITION_UPDATE"}
                assert all(m["data"].get("order_id") != "maker" for m in seen)

            finally:
                stop.set()
                await asyncio.wait_for(follower, 10)

            # Away: the client is gone while an order fills; it comes back from its last event id.
            last = stream.last_event_id
            assert last is not None
            away = await tc.place_order(http, taker, symbol="BTCUSDT", side="BUY", type="MARKET",
                                        quantity=Decimal("0.002"))
            await eventually(lambda: _status(http, taker, away["order_id"], "FILLED"), timeout=20)
            resumed: list[dict[str, Any]] = []
            stream2 = tc.EventStream(base, get_token, resumed.append, last_event_id=last)
            stop2 = asyncio.Event()
            follower2 = asyncio.create_task(stream2.run(stop2))
            try:
                await eventually(
                    lambda: any(m.get("type") == "ORDER_UPDATE" and m["data"]["order_id"] == away["order_id"]
                                and m["data"]["status"] == "FILLED" for m in resumed),
                    timeout=20,
                )
            finally:
                stop2.set()
                await asyncio.wait_for(follower2, 10)
            replayed = [m["id"] for m in resumed if m.get("id")]
            assert len(replayed) == len(set(replayed)), "an event was delivered twice"
            assert all(_key(i) > _key(last) for i in replayed), "an already handled event came back"
            assert replayed == sorted(replayed, key=_key)
            assert not ({m["id"] for m in seen if m.get("id")} & set(replayed))


def _key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


async def _status(http: httpx.AsyncClient, token: str, order_id: str, status: str) -> bool:
    r = await http.get(f"/api/orders/{order_id}", headers={"Authorization": f"Bearer {token}"})
    return r.json()["status"] == status
