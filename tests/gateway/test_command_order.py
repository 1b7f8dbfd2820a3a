"""A user's requests reach the bus in the order they committed, whichever kind they are.

Placing used to publish its rows right after commit while a cancel waited for the outbox relay, so "cancel
the ask, then buy at market" could reach the worker as buy-then-cancel and fill against the canceled ask.
Here the relay is held (the database lock it publishes under; on SQLite its in-process lock): the requests'
own rows must not need it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.outbox import RELAY_LOCK_KEY
from shared.streams import command_stream
from tests.support.api import Api, running_api_on
from tests.support.eventually import eventually

ASK = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "quantity": "0.01", "price": "61000"}
BUY = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001", "price": "50000"}


@pytest.fixture(params=["postgresql", "sqlite"])
async def gateway(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path, redis_url: str, redis_prefix: str
) -> AsyncIterator[Api]:
    async with running_api_on(
        request.param,
        pg_url=pg_url,
        sqlite_dir=tmp_path,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        paper_starting_balances_csv="USDT=10000,BTC=1",
    ) as api:
        yield api


@asynccontextmanager
async def relay_held(api: Api) -> AsyncIterator[None]:
    """The outbox relay cannot publish until the block ends."""
    parts = api.parts
    if parts.engine.dialect.name == "postgresql":
        async with parts.engine.connect() as conn:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": RELAY_LOCK_KEY})
            try:
                yield
            finally:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": RELAY_LOCK_KEY})
                await conn.commit()
    else:
        async with parts.relay._local_lock:  # the SQLite relay's only serialisation
            yield


async def commands(api: Api) -> list[tuple[str, str]]:
    got = await api.parts.bus.range_after(command_stream("paper"), "0-0")
    return [(m.data["kind"], m.data["order_id"]) for m in got]


async def test_cancel_then_place_reach_the_worker_in_that_order(gateway: Api) -> None:
    seller = await gateway.user("order-of-commands@example.com")
    r = await gateway.client.post("/api/orders", json=ASK, headers=seller)
    assert r.status_code == 202, r.text
    ask = r.json()["order_id"]
    await eventually(lambda: commands(gateway), message="the ask's command published")

    async with relay_held(gateway):
        r = await gateway.client.delete(f"/api/orders/{ask}", headers=seller)
        assert r.status_code == 202, r.text
        r = await gateway.client.post("/api/orders", json=BUY, headers=seller)
        assert r.status_code == 202, r.text
        buy = r.json()["order_id"]

        async def all_three() -> list[tuple[str, str]]:
            got = await commands(gateway)
            assert len(got) >= 3, got
            return got

        got = await eventually(all_three, timeout=5, message="cancel and buy published without the relay")
    assert got == [("place", ask), ("cancel", ask), ("place", buy)]
