"""Found by the chaos run (benchmarks/chaos.py): testnet fills reach the engine out of their time order (a fill
behind a lost acknowledgement is found later, a poll and the user stream race). The weighted-average position
depends on the order, so folding them as they arrived left positions that reconciliation (which folds a
position's fills in time order) reported as `position_mismatch`. A late, older fill makes the engine fold the
position again from all its fills in time order."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlmodel import select

from execution.engine import apply_result
from execution.venues.base import FillReport, OrderChange, VenueResult
from reconciliation.paper import check_positions
from shared.clock import SystemClock
from shared.db import create_engine, session_factory, unit_of_work
from shared.models import Order, Position, User

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
QTY = Decimal("0.001")


def _order(oid: str, side: str) -> Order:
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


def _filled(oid: str, side: str, price: str, seconds: int) -> VenueResult:
    px = Decimal(price)
    ts = T0 + timedelta(seconds=seconds)
    return VenueResult(
        changes=(OrderChange(oid, "FILLED", QTY, QTY * px, px, venue_order_id=oid),),
        fills=(
            FillReport(f"t-{oid}", oid, "BTCUSDT", side, px, QTY, QTY * px, Decimal(0), "USDT", "TAKER", ts),
        ),
    )


async def test_a_fill_older_than_the_position_is_folded_in_time_order(db_url: str) -> None:
    engine = create_engine(db_url)
    sessions = session_factory(engine)
    clock = SystemClock()
    try:
        async with unit_of_work(sessions) as s:
            s.add(User(id="u1", email="u1@example.com", password_hash="x", created_at=T0, updated_at=T0))
        async with unit_of_work(sessions) as s:
            for oid, side in (("a", "BUY"), ("b", "SELL"), ("c", "BUY")):
                s.add(_order(oid, side))
        # In time order: buy at 60000, sell it at 60100 (flat), buy at 60200: long 0.001 at 60200.
        # They arrive a, c, then b (b's answer was lost and found later).
        for result in (
            _filled("a", "BUY", "60000", 1),
            _filled("c", "BUY", "60200", 3),
            _filled("b", "SELL", "60100", 2),
        ):
            async with unit_of_work(sessions) as s:
                await apply_result(s, clock, result)

        async with sessions() as s:
            position = (await s.execute(select(Position))).scalars().one()
            report = await check_positions(s)
        assert (position.quantity, position.avg_entry_price) == (QTY, Decimal("60200"))
        assert report.checked == 1 and report.findings == []
    finally:
        await engine.dispose()
