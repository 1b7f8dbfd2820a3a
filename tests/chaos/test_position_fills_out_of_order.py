"""Found by the chaos run (benchmarks/chaos.py): testnet fills reach the engine out of their time order (a fill
behind a lost acknowledgement is found later, a poll and the user stream race). The weighted-average position
depends on the order, so folding them as they arrived left positions that reconciliation (which folds a
position's fills in time order) reported as `position_mismatch`. A late, older fill makes the engine fold the
position again from all its fills in time order."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlmodel import select

from execution.engine import apply_result
from reconciliation.paper import check_positions
from shared.clock import SystemClock
from shared.db import unit_of_work
from shared.models import Position
from tests.chaos.conftest import QTY, T0, Db, filled, market_order


async def test_a_fill_older_than_the_position_is_folded_in_time_order(db: Db) -> None:
    sessions, clock = db.sessions, SystemClock()
    async with unit_of_work(sessions) as s:
        for oid, side in (("a", "BUY"), ("b", "SELL"), ("c", "BUY")):
            s.add(market_order(oid, side))
    # In time order: buy at 60000, sell it at 60100 (flat), buy at 60200: long 0.001 at 60200.
    # They arrive a, c, then b (b's answer was lost and found later).
    for oid, side, price, seconds in (
        ("a", "BUY", "60000", 1),
        ("c", "BUY", "60200", 3),
        ("b", "SELL", "60100", 2),
    ):
        async with unit_of_work(sessions) as s:
            await apply_result(
                s, clock, filled(oid, side, price, trade=f"t-{oid}", at=T0 + timedelta(seconds=seconds))
            )

    async with sessions() as s:
        position = (await s.execute(select(Position))).scalars().one()
        report = await check_positions(s)
    assert (position.quantity, position.avg_entry_price) == (QTY, Decimal("60200"))
    assert report.checked == 1 and report.findings == []
