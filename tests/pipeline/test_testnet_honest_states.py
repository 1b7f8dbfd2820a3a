"""Testnet honest states through the app (issue #17, item 3): the venue status a page shows instead of stale numbers
(reachable, when last reached, is the user data stream up), and testnet balances pushed as BALANCE_UPDATE events
with mode "testnet" when the user stream reports them. On PostgreSQL + Redis and on SQLite + the in-process bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from shared.streams import user_stream
from tests.binance_double import Account, BinanceDouble
from tests.support.api import Api, make_settings, running_api
from tests.support.eventually import eventually

FAST = {"timeout_ms": 1000, "poll_fast_s": 0.2, "poll_slow_s": 0.5, "balance_ttl_s": 0.2}


@pytest.fixture(params=["postgresql", "sqlite"])
async def system(
    request: pytest.FixtureRequest,
    pg_url: str,
    tmp_path: Path,
    redis_url: str,
    redis_prefix: str,
    binance_double: BinanceDouble,
) -> AsyncIterator[Api]:
    urls = {"binance_testnet_url": binance_double.url, "binance_testnet_ws_url": binance_double.ws_url}
    if request.param == "postgresql":
        settings = make_settings(pg_url, redis_url=redis_url, redis_prefix=redis_prefix, **urls)
        migrate = False
    else:
        settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}", **urls)
        migrate = True
    async with running_api(settings, services=("execution",), migrate=migrate, testnet_overrides=FAST) as api:
        yield api


async def _testnet_user(api: Api, account: Account) -> tuple[dict[str, str], str]:
    auth = await api.user("live@example.com")
    keys = {"api_key": account.api_key, "api_secret": account.api_secret}
    assert (await api.client.put("/api/keys/binance-testnet", json=keys, headers=auth)).status_code == 200
    assert (await api.client.put("/api/me/mode", json={"mode": "testnet"}, headers=auth)).status_code == 200
    me = (await api.client.get("/api/me", headers=auth)).json()
    # The worker follows a user (and subscribes their data stream) once it has something of theirs to follow.
    resting = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "1000"}
    assert (await api.client.post("/api/orders", json=resting, headers=auth)).status_code == 202
    return auth, str(me["id"])


async def _status(api: Api, auth: dict[str, str]) -> dict[str, Any]:
    r = await api.client.get("/api/venue-status?mode=testnet", headers=auth)
    assert r.status_code == 200, r.text
    return r.json()


async def test_venue_status_says_when_the_exchange_was_last_reached(
    system: Api, binance_double: BinanceDouble, binance_account: Account
) -> None:
    api = system
    auth, _ = await _testnet_user(api, binance_account)
    assert (await api.client.get("/api/venue-status?mode=paper", headers=auth)).json() == {
        "mode": "paper",
        "reachable": True,
        "last_reached_at": None,
        "stream": None,
    }

    async def streaming() -> dict[str, Any] | None:
        s = await _status(api, auth)
        return s if s["stream"] == "up" else None

    up = await eventually(streaming, timeout=10)
    assert up["mode"] == "testnet" and up["reachable"] is True
    reached = datetime.fromisoformat(up["last_reached_at"])
    assert (datetime.now(UTC) - reached).total_seconds() < 10

    binance_double.stop()  # unreachable: connections refused, the user stream gone

    async def down() -> dict[str, Any] | None:
        s = await _status(api, auth)
        return s if s["reachable"] is False and s["stream"] == "down" else None

    gone = await eventually(down, timeout=10)
    assert gone["last_reached_at"] is not None
    assert datetime.fromisoformat(gone["last_reached_at"]) <= datetime.now(UTC)
    r = await api.client.get("/api/balances?mode=testnet", headers=auth)
    assert r.status_code == 503 and "last reached" in r.json()["detail"]


async def test_venue_status_without_keys_is_a_conflict(system: Api) -> None:
    auth = await system.user("paper@example.com")
    r = await system.client.get("/api/venue-status?mode=testnet", headers=auth)
    assert r.status_code == 409 and r.headers["content-type"].startswith("application/problem+json")


async def test_pushed_testnet_balances_reach_the_users_events(
    system: Api, binance_double: BinanceDouble, binance_account: Account
) -> None:
    api = system
    _, user_id = await _testnet_user(api, binance_account)
    await eventually(
        lambda: [binance_account.api_key] in binance_double.ws_subscriptions()["api"], timeout=10
    )

    binance_double.state.set_balance(
        binance_account.api_key, "ETH", "12.5"
    )  # balanceUpdate + account position

    async def testnet_balance_events() -> list[dict[str, Any]] | None:
        found = [
            m.data["data"]
            for m in await api.parts.bus.range_after(user_stream(user_id), "0")
            if m.data.get("type") == "BALANCE_UPDATE" and m.data["data"].get("mode") == "testnet"
        ]
        return found if any(b["asset"] == "ETH" for e in found for b in e["balances"]) else None

    events = await eventually(testnet_balance_events, timeout=10)
    eth = [b for e in events for b in e["balances"] if b["asset"] == "ETH"][-1]
    assert eth == {"asset": "ETH", "free": "12.5", "locked": "0", "total": "12.5"}
