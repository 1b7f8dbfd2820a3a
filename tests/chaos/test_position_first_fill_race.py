"""Found by the chaos run (benchmarks/chaos.py): two testnet orders of one user filled at the same time, the
user's first position in the symbol. Both transactions found no position row, both inserted one, the second
failed on the primary key and its whole result (the fill included) was rolled back; the redelivered command
then marked the order FILLED without its fill. Both results must apply: the second waits for the first's row.
"""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlalchemy import text
from sqlmodel import select

from execution.engine import apply_result
from shared.clock import SystemClock
from shared.db import unit_of_work
from shared.models import Fill, Order, Position
from tests.chaos.conftest import Db, filled, market_order
from tests.support.eventually import eventually


async def test_first_fills_of_a_new_position_in_two_transactions_both_apply(db: Db) -> None:
    sessions, clock = db.sessions, SystemClock()
    async with unit_of_work(sessions) as s:
        s.add(market_order("o1"))
        s.add(market_order("o2"))

    async def second() -> None:
        async with unit_of_work(sessions) as s:
            await apply_result(s, clock, filled("o2", "BUY", "60010", trade="t2"))

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
        await apply_result(s1, clock, filled("o1", "BUY", "60000", trade="t1"))
        other = asyncio.create_task(second())
        if db.engine.dialect.name == "postgresql":
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
