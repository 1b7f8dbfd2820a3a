"""Issue #16: the worker publishes public depth and trades at most every `MARKET_PUBLISH_S` (a publication per
batch was four Redis round trips and a depth snapshot per batch), yet every trade exactly once and in order,
and the last depth as the book is."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlmodel import col, select

from execution.venues.base import VenueResult
from execution.worker import MARKET_PUBLISH_S
from shared.bus.base import BusMessage
from shared.models import Fill
from shared.streams import MARKET_DEPTH, MARKET_TICKER, MARKET_TRADES, public_event
from tests.support.api import Api, running_api_on
from tests.support.eventually import eventually

ORDERS = 40


@pytest.fixture(params=["postgresql", "sqlite"])
async def mm_api(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path, redis_url: str, redis_prefix: str
) -> AsyncIterator[Api]:
    async with running_api_on(
        request.param,
        pg_url=pg_url,
        sqlite_dir=tmp_path,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        services=("execution",),
        paper_market_maker="on",
        order_rate_limit="100000/second",
    ) as api:
        await api.system.worker.ready.wait()

        async def quoted_everywhere() -> bool:
            for symbol, price in (("BTCUSDT", "60000"), ("ETHUSDT", "3000"), ("BNBUSDT", "600")):
                data = {"symbol": symbol, "price": price, "stale": False}
                await api.parts.bus.publish(
                    MARKET_TICKER, public_event("TICKER", symbol, datetime.now(UTC), data)
                )
            return (await api.client.get("/readyz")).status_code == 200

        await eventually(quoted_everywhere, timeout=30, interval=0.2)
        yield api


def _ms(stream_id: str) -> int:
    return int(stream_id.split("-", 1)[0])


async def test_depth_and_trades_are_published_coalesced_and_whole(mm_api: Api) -> None:
    api = mm_api
    bus = api.parts.bus
    start = await bus.range_after(MARKET_TRADES, "0")
    after_trades = start[-1].id if start else "0"
    depth_before = await bus.range_after(MARKET_DEPTH, "0")
    after_depth = depth_before[-1].id if depth_before else "0"

    users = [await api.user(f"taker{i}@example.com") for i in range(4)]

    async def place(i: int) -> str:
        body = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}
        r = await api.client.post("/api/orders", json=body, headers=users[i % len(users)])
        assert r.status_code == 202, r.text
        return str(r.json()["order_id"])

    first = [await place(i) for i in range(len(users))]  # each user's first order funds the account
    ids = first + list(await asyncio.gather(*(place(i) for i in range(ORDERS))))

    async def all_filled() -> bool:
        for i, oid in enumerate(ids):
            o = (await api.client.get(f"/api/orders/{oid}", headers=users[i % len(users)])).json()
            if o["status"] != "FILLED":
                return False
        return True

    await eventually(all_filled, timeout=60, interval=0.2)
    async with api.system.worker.rt.sessions() as session:
        fills = (
            await session.execute(
                select(col(Fill.trade_id)).where(col(Fill.order_id).in_(ids)).order_by(col(Fill.trade_id))
            )
        ).all()
    wanted = {str(t) for (t,) in fills}

    async def every_trade_published() -> list[str] | None:
        got = [
            str(m.data["data"]["trade_id"])
            for m in await bus.range_after(MARKET_TRADES, after_trades)
            if m.data["data"]["trade_id"] in wanted
        ]
        return got if set(got) == wanted else None

    published = await eventually(every_trade_published, timeout=15)
    assert published is not None
    assert len(published) == len(wanted), "a trade published twice"
    numbers = [int(t.rsplit("-", 1)[1]) for t in published]
    assert numbers == sorted(numbers), "trades out of order"

    # The depth publications of the burst are at least MARKET_PUBLISH_S apart (a little slack for the clocks).
    depth = [m for m in await bus.range_after(MARKET_DEPTH, after_depth) if m.data["symbol"] == "BTCUSDT"]
    assert depth
    gaps = [_ms(b.id) - _ms(a.id) for a, b in itertools.pairwise(depth)]
    assert all(g >= MARKET_PUBLISH_S * 1000 * 0.8 for g in gaps), gaps

    # The last depth published is the book as it is.
    async def depth_is_the_books() -> bool:
        stored = await api.parts.market_data.get("depth", "BTCUSDT")
        book = api.system.worker.paper.depth("BTCUSDT")
        return bool(stored) and (stored["bids"], stored["asks"]) == (book["bids"], book["asks"])

    await eventually(depth_is_the_books, timeout=15)
    assert Decimal(depth[-1].data["data"]["bids"][0][0]) > 0


async def test_changes_within_the_interval_make_one_publication(mm_api: Api) -> None:
    """Ten book changes reported at once (as ten batches under load would) make at most two DEPTH
    publications, the second on the paper loop's next turn, showing the book as it is then."""
    api = mm_api
    bus = api.parts.bus
    worker = api.system.worker
    await asyncio.sleep(MARKET_PUBLISH_S * 2)  # nothing published in the last interval
    before = await bus.range_after(MARKET_DEPTH, "0")
    after = before[-1].id if before else "0"
    for _ in range(10):
        await worker._publish_market(VenueResult(touched_symbols=frozenset({"BTCUSDT"})))

    async def btc() -> list[BusMessage]:
        return [m for m in await bus.range_after(MARKET_DEPTH, after) if m.data["symbol"] == "BTCUSDT"]

    assert 1 <= len(await btc()) <= 2  # without coalescing: 10
    await asyncio.sleep(MARKET_PUBLISH_S * 6)
    published = await btc()
    assert 1 <= len(published) <= 3, [m.id for m in published]
    book = worker.paper.depth("BTCUSDT")
    assert (published[-1].data["data"]["bids"], published[-1].data["data"]["asks"]) == (
        book["bids"],
        book["asks"],
    )
