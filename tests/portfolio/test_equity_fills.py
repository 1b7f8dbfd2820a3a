"""Equity snapshots after fills are gathered per window (issue #16): the first fill after a quiet window is
snapshotted at once, the fills that follow within the window in one pass at its end, each account with its last
trade id. A pass per fill was a transaction per order. On PostgreSQL + Redis and SQLite + the in-process bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlmodel import col, select

from pricefeed.equity import EquityParts, start_equity_snapshots
from shared.bus import Bus
from shared.models import EquitySnapshot, Fill, User
from shared.streams import PRIVATE_EVENTS, private_event
from tests.portfolio.test_account_api import set_price, trade
from tests.support.api import Api, running_api_on
from tests.support.bus import CountingReads
from tests.support.eventually import eventually

WINDOW_S = 5.0


@pytest.fixture(params=["postgresql", "sqlite"])
async def api(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path, redis_url: str, redis_prefix: str
) -> AsyncIterator[Api]:
    async with running_api_on(
        request.param,
        pg_url=pg_url,
        sqlite_dir=tmp_path,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        services=("execution",),  # the snapshots: started below, with a window a test can see
        paper_starting_balances_csv="USDT=10000,BTC=1",
    ) as a:
        await a.system.worker.ready.wait()
        yield a


async def _fill_snapshots(api: Api, email: str) -> list[EquitySnapshot]:
    async with api.parts.sessions() as s:
        user_id = (await s.execute(select(User.id).where(col(User.email) == email))).scalar_one()
        rows = await s.execute(
            select(EquitySnapshot)
            .where(col(EquitySnapshot.user_id) == user_id, col(EquitySnapshot.reason) == "fill")
            .order_by(col(EquitySnapshot.ts))
        )
        return list(rows.scalars())


async def _last_trade_id(api: Api, email: str) -> str:
    async with api.parts.sessions() as s:
        user_id = (await s.execute(select(User.id).where(col(User.email) == email))).scalar_one()
        last = (
            select(Fill.trade_id).where(col(Fill.user_id) == user_id).order_by(col(Fill.id).desc()).limit(1)
        )
        return str((await s.execute(last)).scalar_one())


def _parts(api: Api, bus: Bus) -> EquityParts:
    p = api.parts
    return EquityParts(
        clock=p.clock,
        sessions=p.sessions,
        bus=bus,
        market_data=p.market_data,
        markets={m.symbol: (m.base_asset, m.quote_asset) for m in p.markets.values()},
        dialect=p.engine.dialect.name,
        interval_s=86_400,
        retention=timedelta(days=1),
        fill_window_s=WINDOW_S,
    )


async def test_fills_within_a_window_are_snapshotted_in_one_pass(api: Api) -> None:
    parts = _parts(api, api.parts.bus)
    seller, buyer = await api.user("s@example.com"), await api.user("b@example.com")
    await set_price(api, "50000")
    async with AsyncExitStack() as stack:
        await start_equity_snapshots(parts, stack)
        await trade(api, seller, buyer, "50000", "0.01")
        first = await eventually(lambda: _fill_snapshots(api, "b@example.com"))
        assert [s.equity for s in first] == [Decimal("59999.5")]  # at once: no pass in the window before
        await trade(api, seller, buyer, "50000", "0.01")
        await trade(api, seller, buyer, "50000", "0.01")  # both within the window the first pass opened
        last_trade = await _last_trade_id(api, "b@example.com")

        async def two() -> list[EquitySnapshot]:
            rows = await _fill_snapshots(api, "b@example.com")
            assert len(rows) >= 2, "the window's pass has not run yet"
            return rows

        rows = await eventually(two, timeout=WINDOW_S + 10)
        # one pass for the two later fills, with the last trade id: 3 x (-500 - 0.5 fee), 3 x 0.01 BTC at 50000
        assert [(s.ref, s.equity) for s in rows[1:]] == [(last_trade, Decimal("59998.5"))]


async def test_events_within_a_window_are_read_at_its_end_not_one_by_one(api: Api) -> None:
    """Nothing read inside a window is acted on before it ends: the follower reads what gathered then, not each
    event as it comes (a read per event was ~200 bus round trips a second at 100 orders/s)."""
    counter = CountingReads(api.parts.bus)
    parts = _parts(api, counter)  # type: ignore[arg-type]
    seller, buyer = await api.user("s@example.com"), await api.user("b@example.com")
    await set_price(api, "50000")
    async with AsyncExitStack() as stack:
        await start_equity_snapshots(parts, stack)
        await trade(api, seller, buyer, "50000", "0.01")
        await eventually(lambda: _fill_snapshots(api, "b@example.com"))  # the pass that opened a window
        before = counter.reads
        for k in range(30):  # other users' events, one at a time, well inside the window
            event = private_event("ORDER_UPDATE", f"someone-{k}", datetime.now(UTC), {"n": k})
            await api.parts.bus.publish(PRIVATE_EVENTS, event)
            await asyncio.sleep(0.01)  # spacing the events (one read each before), not waiting for a result
        assert counter.reads - before <= 2
