"""Migration 0005 widens orders.type so an external order keeps its exchange type (LIMIT_MAKER,
STOP_LOSS_LIMIT, ...) on both databases, and will not downgrade over such orders (it says why instead)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import delete, inspect, text

from shared.db import create_engine, session_factory
from shared.migrate import downgrade, upgrade
from shared.models import Order, User


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path, pg_empty_url: str) -> str:
    return pg_empty_url if request.param == "postgresql" else f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}"


async def _type_length(url: str) -> int | None:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            columns = await conn.run_sync(lambda c: inspect(c).get_columns("orders"))
    finally:
        await engine.dispose()
    [column] = [c for c in columns if c["name"] == "type"]
    length = getattr(column["type"], "length", None)
    return None if length is None else int(length)


async def test_orders_type_holds_exchange_types_and_downgrade_refuses_over_them(url: str) -> None:
    await upgrade(url)
    assert await _type_length(url) == 32
    now = datetime.now(UTC)
    engine = create_engine(url)
    sessions = session_factory(engine)
    try:
        async with sessions() as s, s.begin():
            s.add(User(id="u1", email="u1@example.com", password_hash="x", created_at=now, updated_at=now))
            await s.flush()
            s.add(
                Order(
                    id="o1",
                    user_id="u1",
                    request_hash="external",
                    mode="testnet",
                    symbol="BTCUSDT",
                    side="SELL",
                    type="TAKE_PROFIT_LIMIT",
                    time_in_force="GTC",
                    quantity=Decimal("0.001"),
                    price=Decimal("90000"),
                    status="NEW",
                    external=True,
                    created_at=now,
                    updated_at=now,
                )
            )
        async with sessions() as s:
            assert (await s.execute(text("SELECT type FROM orders"))).scalar_one() == "TAKE_PROFIT_LIMIT"

        with pytest.raises(RuntimeError, match="1 orders have a type longer than 8"):
            await downgrade(url, "0004")
        assert await _type_length(url) == 32  # nothing changed

        async with sessions() as s, s.begin():
            await s.execute(delete(Order))
        await downgrade(url, "0004")
        assert await _type_length(url) == 8
        await upgrade(url)
        assert await _type_length(url) == 32
    finally:
        await engine.dispose()
