"""Issue #16: the market maker's re-quotes move only its own locks, about four times a second per symbol round. They
are written with the next batch or before the next book snapshot (at most once a second while idle), not in a
transaction each, and reconciliation still finds the snapshot and the database in agreement, the ledger whole."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlmodel import col, select

from reconciliation.paper import BookUnavailable, flatten, published_book, run_paper_checks
from shared.models import Balance, LedgerPosting
from shared.paper_book import PUBLISH_EVERY_S
from shared.streams import MARKET_TICKER, public_event
from tests.support.api import Api, running_api_on
from tests.support.eventually import eventually

MM = "system/market-maker"


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
    ) as api:
        await api.system.worker.ready.wait()

        async def quoted_everywhere() -> bool:
            for symbol, price in (("BTCUSDT", "60000"), ("ETHUSDT", "3000"), ("BNBUSDT", "600")):
                await _tick(api, price, symbol=symbol)
            return (await api.client.get("/readyz")).status_code == 200

        await eventually(quoted_everywhere, timeout=30, interval=0.2)
        yield api


async def _tick(api: Api, price: str, *, symbol: str = "BTCUSDT") -> None:
    data = {"symbol": symbol, "price": price, "stale": False}
    await api.parts.bus.publish(MARKET_TICKER, public_event("TICKER", symbol, datetime.now(UTC), data))


async def _quoted_near(api: Api, mid: Decimal) -> bool:
    d = (await api.client.get("/api/markets/BTCUSDT/depth")).json()
    return bool(d["bids"] and d["asks"]) and Decimal(d["bids"][0][0]) < mid < Decimal(d["asks"][0][0])


async def _mm_writes(api: Api, since: datetime) -> list[datetime]:
    """When the market maker's ledger was written (one posting time per transaction), since `since`."""
    async with api.system.worker.rt.sessions() as session:
        rows = await session.execute(
            select(col(LedgerPosting.ts))
            .where(col(LedgerPosting.account_id) == MM, col(LedgerPosting.ts) > since)
            .distinct()
            .order_by(col(LedgerPosting.ts))
        )
        return list(rows.scalars())


async def _checks_clean(api: Api) -> bool:
    """Every paper check of reconciliation passes against the book the worker publishes, and the market maker's
    locks in the database are those of its quotes in that book."""
    rt = api.system.worker.rt
    memory = await published_book(rt.market_data, rt.clock, wait_s=3.0)
    async with rt.sessions() as session:
        outcomes = await run_paper_checks(session, now=rt.clock.now(), memory=memory, stuck_after_s=3600)
        held = (await session.execute(select(Balance).where(col(Balance.account_id) == MM))).scalars().all()
    assert not isinstance(memory, BookUnavailable)
    quoted = {asset: v for (account, asset), v in memory.open_locks().items() if account == MM}
    in_db = {b.asset: b.locked for b in held if b.locked}
    return not flatten(outcomes) and quoted == in_db and bool(quoted)


async def test_requotes_write_the_makers_locks_at_most_once_a_second_and_reconcile(mm_api: Api) -> None:
    api = mm_api
    start = api.system.worker.rt.clock.now()
    prices = [Decimal(60000 + 150 * i) for i in range(1, 13)]  # each moves the ladder: cancels and places
    for p in prices:
        await _tick(api, str(p))
        await eventually(lambda p=p: _quoted_near(api, p), timeout=15, interval=0.02)  # type: ignore[misc]
    # Let the last held entries reach the database, with the snapshot taken after them.
    await eventually(lambda: _checks_clean(api), timeout=15, interval=0.3)
    writes = await _mm_writes(api, start)
    assert writes, "the re-quotes' locks never reached the database"
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(writes)]
    # Without holding them back: one transaction per re-quote, 12 writes a few tens of ms apart.
    assert len(writes) < len(prices), writes
    assert all(g >= PUBLISH_EVERY_S * 0.9 for g in gaps), gaps

    # A user's order fills against quotes whose locks were held back: the batch writes them first, so the
    # maker's balances never go negative and the ledger stays whole.
    await _tick(api, "62000")
    await eventually(lambda: _quoted_near(api, Decimal(62000)), timeout=15, interval=0.02)
    auth = await api.user("mm-locks@example.com")
    r = await api.client.post(
        "/api/orders",
        json={"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.05"},
        headers=auth,
    )
    assert r.status_code == 202, r.text
    oid = r.json()["order_id"]

    async def filled() -> bool:
        o = (await api.client.get(f"/api/orders/{oid}", headers=auth)).json()
        return bool(o["status"] == "FILLED")

    await eventually(filled, timeout=15)
    await eventually(lambda: _checks_clean(api), timeout=15, interval=0.3)
