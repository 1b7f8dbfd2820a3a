"""What the tests of the chaos run's findings share: a migrated database of their own with one trader (`u1`),
testnet MARKET orders and their fills as the venue reports them, and the settings of an app whose testnet is the
Binance double (REST only), on SQLite and on PostgreSQL with Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from execution.venues.base import FillReport, OrderChange, VenueResult
from shared.db import create_engine, session_factory, unit_of_work
from shared.migrate import upgrade
from shared.models import Order, User
from shared.settings import Settings
from tests.binance_double import BinanceDouble
from tests.support.api import make_settings

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
QTY = Decimal("0.001")


@pytest.fixture(params=["sqlite", "postgresql"])
def settings(request: pytest.FixtureRequest, tmp_path: Path, binance_double: BinanceDouble) -> Settings:
    urls: dict[str, Any] = {"binance_testnet_url": binance_double.url, "binance_testnet_ws_url": ""}
    if request.param == "sqlite":
        return make_settings(f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}", **urls)
    return make_settings(
        request.getfixturevalue("pg_url"),
        redis_url=request.getfixturevalue("redis_url"),
        redis_prefix=request.getfixturevalue("redis_prefix"),
        **urls,
    )


@pytest.fixture(params=["sqlite", "postgresql"])
async def db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> AsyncIterator[str]:
    """A migrated database of the test's own: a SQLite file, then PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}"
        await upgrade(url)
        yield url
    else:
        yield pg_url


@dataclass(frozen=True)
class Db:
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]


@pytest.fixture
async def db(db_url: str) -> AsyncIterator[Db]:
    """`db_url`'s engine and sessions, with the user `u1` the orders below belong to."""
    engine = create_engine(db_url)
    sessions = session_factory(engine)
    try:
        async with unit_of_work(sessions) as s:
            s.add(User(id="u1", email="u1@example.com", password_hash="x", created_at=T0, updated_at=T0))
        yield Db(engine, sessions)
    finally:
        await engine.dispose()


def market_order(oid: str, side: str = "BUY") -> Order:
    """A testnet MARKET order of `u1` for QTY BTC, accepted and not yet placed."""
    return Order(
        id=oid,
        user_id="u1",
        client_order_id=oid,
        request_hash="h",
        mode="testnet",
        symbol="BTCUSDT",
        side=side,
        type="MARKET",
        time_in_force="IOC",
        quantity=QTY,
        status="PENDING",
        created_at=T0,
        updated_at=T0,
    )


def filled(oid: str, side: str, price: str, *, trade: str, at: datetime = T0) -> VenueResult:
    """The venue's answer: `oid` FILLED in one trade of QTY at `price`."""
    px = Decimal(price)
    return VenueResult(
        changes=(OrderChange(oid, "FILLED", QTY, QTY * px, px, venue_order_id=trade),),
        fills=(FillReport(trade, oid, "BTCUSDT", side, px, QTY, QTY * px, Decimal(0), "USDT", "TAKER", at),),
    )
