"""Testnet-mode market data is the double's, not the paper book's (issue #17, item 2).

The app as create_app builds it (gateway + events service + the testnet market feed hook), served on a real
port, against the Binance double through ccxt.pro unmodified; the paper book is seeded at another price. On
SQLite with the in-process bus (tradebridge up) and on PostgreSQL with Redis.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from execution.paper.quote import quote_levels
from gateway.services.orders import rules_for
from pricefeed.testnet_market import start_testnet_market
from shared.settings import Settings
from tests.binance_double import Account, BinanceDouble
from tests.events.helpers import Served, client, serve
from tests.support.api import make_settings, running_api
from tests.support.eventually import eventually
from tradebridge.app import create_app

D = Decimal
PAPER_DEPTH = {
    "symbol": "BTCUSDT",
    "bids": [["65023.00", "1"], ["65022.00", "2"]],
    "asks": [["65024.00", "0.5"], ["65025.00", "2"]],
    "ts": "2026-01-01T00:00:00+00:00",
}
PAPER_TICKER = {
    "symbol": "BTCUSDT",
    "price": "65024",
    "ts": "2026-01-01T00:00:00+00:00",
    "source": "synthetic",
    "stale": False,
}


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, binance_double: BinanceDouble) -> Settings:
    """The embedded default's storage (SQLite, in-process bus, memory market data) or PostgreSQL + Redis."""
    if request.param == "sqlite":
        database, extra = f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}", {}
    else:
        database = request.getfixturevalue("pg_url")
        extra = {
            "redis_url": request.getfixturevalue("redis_url"),
            "redis_prefix": request.getfixturevalue("redis_prefix"),
        }
    return make_settings(
        database,
        binance_testnet_url=binance_double.url,
        binance_testnet_ws_url=binance_double.ws_url,
        symbols_csv="BTCUSDT,ETHUSDT",
        **extra,
    )


@pytest.fixture
async def app_url(settings: Settings) -> AsyncIterator[tuple[Served, str]]:
    """The gateway with the events service and the testnet market feed, served on a real port."""
    app = create_app(
        settings,
        migrate=settings.is_sqlite,
        services=("events",),
        hooks=[functools.partial(start_testnet_market, fallback_poll_s=0.2)],
    )
    async with serve(app) as served:
        rt = app.state.parts
        await rt.market_data.put(
            "depth", "BTCUSDT", PAPER_DEPTH
        )  # the paper venue's book, as its worker keeps it
        await rt.market_data.put("ticker", "BTCUSDT", PAPER_TICKER)
        yield served, served.url.replace("ws://", "http://").removesuffix("/ws")


async def _testnet_user(http: httpx.AsyncClient, account: Account) -> dict[str, str]:
    creds = {"email": "venue@example.com", "password": "correct horse battery"}
    assert (await http.post("/auth/register", json=creds)).status_code == 201
    token = (await http.post("/auth/login", json=creds)).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    keys = {"api_key": account.api_key, "api_secret": account.api_secret}
    assert (await http.put("/api/keys/binance-testnet", json=keys, headers=auth)).status_code == 200
    assert (await http.put("/api/me/mode", json={"mode": "testnet"}, headers=auth)).status_code == 200
    return auth


def _levels(rows: list[tuple[Decimal, Decimal]]) -> list[list[Decimal]]:
    return [[p, q] for p, q in rows]


def _dec_levels(rows: list[list[str]]) -> list[list[Decimal]]:
    return [[D(p), D(q)] for p, q in rows]


async def test_testnet_mode_market_data_is_the_doubles_not_the_paper_books(
    app_url: tuple[Served, str], binance_double: BinanceDouble, binance_account: Account
) -> None:
    served, base = app_url
    state = binance_double.state
    state.set_price("BTCUSDT", "65000")  # the paper book is at 65,023/65,024
    async with httpx.AsyncClient(base_url=base, timeout=10) as http:
        auth = await _testnet_user(http, binance_account)

        async def testnet_ticker(**kw: Any) -> dict[str, Any] | None:
            r = await http.get("/api/markets/BTCUSDT/ticker", **kw)
            body = r.json() if r.status_code == 200 else {}
            return body if body.get("bid") == "64999.99" else None

        ticker = await eventually(lambda: testnet_ticker(params={"venue": "testnet"}), timeout=15)
        assert (ticker["venue"], D(ticker["price"]), D(ticker["ask"])) == (
            "testnet",
            D("65000"),
            D("65000.01"),
        )
        mine = await eventually(lambda: testnet_ticker(headers=auth), timeout=5)  # the user's mode by default
        assert mine["venue"] == "testnet"
        paper = (await http.get("/api/markets/BTCUSDT/ticker")).json()  # anonymous: paper, as before
        assert (paper["venue"], paper["price"]) == ("paper", "65024")

        bids, asks = state.depth("BTCUSDT", 20)
        depth = (await http.get("/api/markets/BTCUSDT/depth", headers=auth)).json()
        assert depth["venue"] == "testnet"
        assert (_dec_levels(depth["bids"]), _dec_levels(depth["asks"])) == (_levels(bids), _levels(asks))
        paper_depth = (
            await http.get("/api/markets/BTCUSDT/depth", params={"venue": "paper"}, headers=auth)
        ).json()
        assert (paper_depth["venue"], paper_depth["asks"][0]) == ("paper", ["65024.00", "0.5"])

        # The quote a testnet-mode user sees walks the double's book: what the testnet fill will be.
        rules = rules_for(served.app.state.parts.markets, "BTCUSDT")
        expected = quote_levels(asks, rules, "BUY", D("2.5"))
        r = await http.post(
            "/api/orders/quote", json={"symbol": "BTCUSDT", "side": "BUY", "quantity": "2.5"}, headers=auth
        )
        assert r.status_code == 200, r.text
        quote = r.json()
        assert quote["venue"] == "testnet"
        assert (D(quote["avg_price"]), D(quote["worst_price"])) == (expected.avg_price, expected.worst_price)
        assert D(quote["worst_price"]) < D("65024")
        anonymous = (
            await http.post("/api/orders/quote", json={"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.1"})
        ).json()
        assert (anonymous["venue"], D(anonymous["avg_price"])) == ("paper", D("65024"))

        candles = await eventually(lambda: _candles(http, auth), timeout=10, message="no testnet candles")
        assert D(candles[-1]["close"]) == D("65000") and candles[-1]["venue"] == "testnet"

        # WebSocket: the testnet channels carry the double's trades and book; the paper channels stay paper's.
        login = await http.post(
            "/auth/login", json={"email": "venue@example.com", "password": "correct horse battery"}
        )
        token = login.json()["access_token"]
    async with client(served.url, token) as ws:
        await ws.send(
            op="subscribe",
            channels=[
                "trades:BTCUSDT@testnet",
                "depth:BTCUSDT@testnet",
                "ticker:BTCUSDT@testnet",
                "trades:BTCUSDT",
            ],
        )
        await ws.wait_for("SUBSCRIBED")
        await ws.ping()
        state.place_external_order(binance_account.api_key, "BTCUSDT", "SELL", "MARKET", "0.03")
        state.set_price("BTCUSDT", "65100")
        trade = (await ws.wait_for("MARKET_TRADE", timeout=15))[0]
        assert trade["channel"] == "trades:BTCUSDT@testnet"
        assert (
            trade["data"]["venue"],
            D(trade["data"]["price"]),
            D(trade["data"]["quantity"]),
            trade["data"]["side"],
        ) == (
            "testnet",
            D("65000"),
            D("0.03"),
            "SELL",
        )
        moved = await eventually(
            lambda: [
                m
                for m in ws.of_type("DEPTH")
                if m["data"]["bids"] and D(m["data"]["bids"][0][0]) == D("65099.99")
            ],
            timeout=15,
            message="no testnet depth at the new price",
        )
        assert moved[0]["channel"] == "depth:BTCUSDT@testnet" and moved[0]["data"]["venue"] == "testnet"
        await eventually(
            lambda: any(D(m["data"]["price"]) == D("65100") for m in ws.of_type("TICKER")), timeout=15
        )
        assert all(m["channel"].endswith("@testnet") for m in ws.of_type("MARKET_TRADE", "DEPTH", "TICKER"))


async def _candles(http: httpx.AsyncClient, auth: dict[str, str]) -> list[dict[str, Any]] | None:
    r = await http.get("/api/markets/BTCUSDT/candles", params={"interval": "1m"}, headers=auth)
    body = r.json() if r.status_code == 200 else []
    return body if body and D(body[-1]["close"]) == D("65000") else None


async def test_rest_fallback_when_the_testnet_streams_are_down(
    settings: Settings, binance_double: BinanceDouble
) -> None:
    """No market stream reachable: the ticker, book and trades still come from the testnet, over REST."""
    down = settings.model_copy(update={"binance_testnet_ws_url": "ws://127.0.0.1:9"})
    binance_double.state.set_price("ETHUSDT", "3100")
    account = binance_double.state.create_account({"USDT": "100000"})
    binance_double.state.place_external_order(account.api_key, "ETHUSDT", "BUY", "MARKET", "0.7")
    app = create_app(
        down,
        migrate=down.is_sqlite,
        hooks=[functools.partial(start_testnet_market, fallback_poll_s=0.2)],
    )
    async with running_api(down, app=app) as api:
        http = api.client

        async def ticker() -> dict[str, Any] | None:
            r = await http.get("/api/markets/ETHUSDT/ticker", params={"venue": "testnet"})
            return r.json() if r.status_code == 200 and r.json().get("bid") == "3099.99" else None

        body = await eventually(ticker, timeout=15)
        assert (D(body["price"]), body["via"], body["venue"]) == (D("3100"), "rest", "testnet")
        depth = (await http.get("/api/markets/ETHUSDT/depth", params={"venue": "testnet"})).json()
        bids, asks = binance_double.state.depth("ETHUSDT", 20)
        assert (_dec_levels(depth["bids"]), _dec_levels(depth["asks"])) == (_levels(bids), _levels(asks))

        async def trades() -> list[dict[str, Any]] | None:
            r = await http.get("/api/markets/ETHUSDT/trades", params={"venue": "testnet"})
            return r.json() or None

        rows = await eventually(trades, timeout=10)
        assert [(D(t["price"]), D(t["quantity"]), t["venue"]) for t in rows] == [
            (D("3100"), D("0.7"), "testnet")
        ]
