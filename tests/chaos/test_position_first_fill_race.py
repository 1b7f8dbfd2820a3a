"""Found by the chaos run (benchmarks/chaos.py): two testnet orders of one user filled at the same time, the
user's first position in the symbol. Both transactions found no position row, both inserted one, the second
failed on the primary key and its whole result (the fill included) was rolled back; the redelivered command
then marked the order FILLED without its fill. Both results must apply: the second waits for the first's row.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import text
from sqlmodel import select

from execution.engine import apply_result
from execution.venues.base import FillReport, OrderChange, VenueResult
from shared.clock import SystemClock
from shared.db import create_engine, session_factory, unit_of_work
from shared.models import Fill, Order, Position, User
from tests.support.eventually import eventually

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def _order(oid: str) -> Order:
    return Order(
        id=oid,
        user_id="u1",
        client_order_id=oid,
        request_hash="h",
        mode="testnet",
        symbol="BTCUSDT",
        side="BUY",
        type="MARKET",
        time_in_force="IOC",
        quantity=Decimal("0.001"),
        status="PENDING",
        created_at=NOW,
        updated_at=NOW,
    )


def _filled(oid: str, trade: str, price: str) -> VenueResult:
    qty, px = Decimal("0.001"), Decimal(price)
    return VenueResult(
        changes=(OrderChange(oid, "FILLED", qty, qty * px, px, venue_order_id=trade),),
        fills=(
            FillReport(trade, oid, "BTCUSDT", "BUY", px, qty, qty * px, Decimal(0), "USDT", "TAKER", NOW),
        ),
    )


async def test_first_fills_of_a_new_position_in_two_transactions_both_apply(db_url: str) -> None:
    engine = create_engine(db_url)
    sessions = session_factory(engine)
    clock = SystemClock()
    try:
        async with unit_of_work(sessions) as s:
            s.add(User(id="u1", email="u1@example.com", password_hash="x", created_at=NOW, updated_at=NOW))
        async with unit_of_work(sessions) as s:
            s.add(_order("o1"))
            s.add(_order("o2"))

        async def second() -> None:
            async with unit_of_work(sessions) as s:
                await apply_result(s, clock, _filled("o2", "t2", "60010"))

        async def waits_for_a_lock() -> bool:
            async with sessions() as s:
                n = await s.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    )
                )
                return bool(n.scalar_one())

        # The first result is applied but not yet committed when the second starts: on PostgreSQL the second
        # then finds no position row either and has to wait for the first's.
        async with unit_of_work(sessions) as s1:
            await apply_result(s1, clock, _filled("o1", "t1", "60000"))
            other = asyncio.create_task(second())
            if engine.dialect.name == "postgresql":
                await eventually(waits_for_a_lock, timeout=10, message="the second apply waits for the first")
        await asyncio.wait_for(other, 30)  # before the fix: IntegrityError on positions_pkey

        async with sessions() as s:
            orders = {o.id: o for o in (await s.execute(select(Order))).scalars()}
            fills = sorted(f.trade_id for f in (await s.execute(select(Fill))).scalars())
            position = (await s.execute(select(Position))).scalars().one()
        assert {o.status for o in orders.values()} == {"FILLED"}
        assert fills == ["t1", "t2"]
        assert position.quantity == Decimal("0.002")
        assert position.avg_entry_price == Decimal("60005")
    finally:
        await engine.dispose()
