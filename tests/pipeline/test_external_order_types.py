"""External orders of any exchange type are recorded at start-up without breaking recovery.

A LIMIT_MAKER and a STOP_LOSS_LIMIT order placed directly on the exchange (the Binance double) while
TradeBridge was down are found by the start-up recovery, recorded (flagged external, with the exchange's own
type) and listed by GET /api/orders, and the rest of that recovery result (a fill of a known order) is applied
with them. (orders.type was VARCHAR(8) and OrderOut allowed MARKET/LIMIT only: either refusal dropped the
whole result.) One record that still cannot be stored is skipped and logged, not the result around it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from execution.venues.base import ExternalOrder, OrderChange, VenueResult
from shared.migrate import upgrade
from shared.settings import Settings
from tests.support.api import Api, make_settings, running_api
from tests.support.eventually import eventually

FAST = {"timeout_ms": 2000, "poll_fast_s": 0.2, "poll_slow_s": 0.5}


@dataclass
class System:
    settings: Settings

    def run(self) -> Any:
        return running_api(self.settings, services=("execution",), testnet_overrides=dict(FAST))


@pytest.fixture(params=["postgresql", "sqlite"])
async def system(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    pg_url: str,
    redis_url: str,
    redis_prefix: str,
    binance_double: Any,
) -> AsyncIterator[System]:
    if request.param == "postgresql":
        settings = make_settings(
            pg_url, redis_url=redis_url, redis_prefix=redis_prefix, binance_testnet_url=binance_double.url
        )
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}"
        await upgrade(url)
        settings = make_settings(url, binance_testnet_url=binance_double.url)
    yield System(settings)


async def _testnet_trader(api: Api, account: Any) -> dict[str, str]:
    auth = await api.user("outside@example.com")
    keys = {"api_key": account.api_key, "api_secret": account.api_secret}
    assert (await api.client.put("/api/keys/binance-testnet", json=keys, headers=auth)).status_code == 200
    assert (await api.client.put("/api/me/mode", json={"mode": "testnet"}, headers=auth)).status_code == 200
    return auth


async def _orders(api: Api, auth: dict[str, str]) -> list[dict[str, Any]]:
    r = await api.client.get("/api/orders", params={"status": "all", "mode": "testnet"}, headers=auth)
    assert r.status_code == 200, r.text
    return r.json()["items"]


async def test_external_orders_of_other_types_are_recorded_at_start_up(
    system: System, binance_double: Any, binance_account: Any
) -> None:
    state = binance_double.state
    async with system.run() as api:
        auth = await _testnet_trader(api, binance_account)
        body = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "1000"}
        r = await api.client.post("/api/orders", json=body, headers=auth)
        assert r.status_code == 202, r.text
        known = r.json()["order_id"]

        async def resting() -> bool:
            o = (await api.client.get(f"/api/orders/{known}", headers=auth)).json()
            return bool(o["status"] == "NEW")

        await eventually(resting, timeout=20)

    # While TradeBridge is down: the known order fills, and two orders of types we never place appear.
    [venue_order] = state.orders(binance_account.api_key, client_order_id=known)
    state.fill_order(venue_order.order_id)
    maker, _ = state.place_order(
        binance_account.api_key,
        {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT_MAKER", "quantity": "0.001", "price": "200000"},
        external=True,
    )
    stop, _ = state.place_order(
        binance_account.api_key,
        {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "STOP_LOSS_LIMIT",
            "quantity": "0.01",
            "price": "1000",
            "stopPrice": "1001",
            "timeInForce": "GTC",
        },
        external=True,
    )

    async with system.run() as api:
        login = await api.login("outside@example.com")
        auth = {"Authorization": f"Bearer {login['access_token']}"}

        async def recovered() -> list[dict[str, Any]] | None:
            items = await _orders(api, auth)
            return (
                items
                if len(items) == 3 and any(o["order_id"] == known and o["status"] == "FILLED" for o in items)
                else None
            )

        items = await eventually(
            recovered, timeout=30, message="the start-up recovery result was not applied"
        )
        external = {o["type"]: o for o in items if o["external"]}
        assert sorted(external) == ["LIMIT_MAKER", "STOP_LOSS_LIMIT"]
        assert external["LIMIT_MAKER"]["status"] == "NEW" and external["LIMIT_MAKER"]["price"] == "200000"
        assert external["STOP_LOSS_LIMIT"]["time_in_force"] == "GTC"
        assert {o["client_order_id"] for o in external.values()} == {
            maker.client_order_id,
            stop.client_order_id,
        }
        [filled] = [o for o in items if o["order_id"] == known]
        assert Decimal(filled["filled_quantity"]) == Decimal("0.01") and not filled["external"]
        detail = (
            await api.client.get(f"/api/orders/{external['STOP_LOSS_LIMIT']['order_id']}", headers=auth)
        ).json()
        assert detail["type"] == "STOP_LOSS_LIMIT" and detail["external"] is True

        # Input stays strict: the API places MARKET and LIMIT only.
        bad = {
            "symbol": "BTCUSDT",
            "side": "SELL",
            "type": "LIMIT_MAKER",
            "quantity": "0.001",
            "price": "200000",
        }
        r = await api.client.post("/api/orders", json=bad, headers=auth)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")


async def test_one_unrecordable_external_order_does_not_drop_the_result(
    system: System, binance_double: Any, binance_account: Any
) -> None:
    async with system.run() as api:
        auth = await _testnet_trader(api, binance_account)
        body = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "1000"}
        r = await api.client.post("/api/orders", json=body, headers=auth)
        known = r.json()["order_id"]
        user_id = (await api.client.get("/api/me", headers=auth)).json()["id"]

        async def resting() -> bool:
            return bool(
                (await api.client.get(f"/api/orders/{known}", headers=auth)).json()["status"] == "NEW"
            )

        await eventually(resting, timeout=20)
        now = datetime.now(UTC)

        def ext(venue_id: str, **over: Any) -> ExternalOrder:
            values: dict[str, Any] = {
                "user_id": user_id,
                "venue_order_id": venue_id,
                "client_order_id": f"web_{venue_id}",
                "symbol": "BTCUSDT",
                "side": "SELL",
                "type": "LIMIT_MAKER",
                "time_in_force": "GTC",
                "quantity": Decimal("0.001"),
                "price": Decimal("200000"),
                "status": "NEW",
                "filled_quantity": Decimal(0),
                "cumulative_quote": Decimal(0),
                "avg_price": None,
                "created_at": now,
            }
            return ExternalOrder(**{**values, **over})

        # A time in force the schema does not know (a futures-only GTD): this one record cannot be recorded.
        result = VenueResult(
            changes=(
                OrderChange(
                    order_id=known,
                    status="CANCELED",
                    filled_quantity=Decimal(0),
                    cumulative_quote=Decimal(0),
                    avg_price=None,
                    reason="canceled on the exchange",
                ),
            ),
            external_orders=(ext("9001", time_in_force="GTD"), ext("9002")),
        )
        with capture_logs() as logs:
            await api.system.worker.apply_from_venue(result)

        items = await _orders(api, auth)
        assert {o["order_id"]: o["status"] for o in items if not o["external"]} == {known: "CANCELED"}
        assert [(o["client_order_id"], o["type"]) for o in items if o["external"]] == [
            ("web_9002", "LIMIT_MAKER")
        ]
        [skipped] = [e for e in logs if e["event"].startswith("external order not recorded")]
        assert skipped["venue_order_id"] == "9001" and skipped["log_level"] == "error"
