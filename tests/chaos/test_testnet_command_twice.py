"""Found by the chaos run (seed 17): one testnet command handled twice at once (published twice, or redelivered
while its first handler still waited on the exchange). The first handler recorded the command with the order
NEW; the second, answered later, had the fill, and its transaction failed on the command's mark and rolled the
fill back. The venue, having reported the order final, no longer followed it: it stayed NEW until reconciliation.
The later answer is now applied (idempotently) without the mark."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlmodel import select

from execution.venues.base import FillReport, OrderChange, VenueOrder, VenueResult
from shared.bus.base import BusMessage
from shared.db import unit_of_work
from shared.models import Fill, Order
from shared.settings import Settings
from shared.streams import TESTNET_COMMANDS, order_command
from tests.support.api import Api, running_api

OID = "01twicecommand000000000000000000"
QTY, PRICE = Decimal("0.001"), Decimal("60000")


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(settings, migrate=settings.is_sqlite, services=("execution",)) as served:
        await served.system.worker.ready.wait()
        yield served


class TwoAnswers:
    """The exchange as two handlers of one command see it: the first to call is answered NEW, the second (still
    waiting on the exchange meanwhile) FILLED with its trade, once the first has recorded the command."""

    def __init__(self) -> None:
        self.second_waiting = asyncio.Event()
        self.release = asyncio.Event()
        self.calls = 0

    async def place(self, order: VenueOrder) -> VenueResult:
        self.calls += 1
        if self.calls == 1:
            await self.second_waiting.wait()
            return VenueResult(
                changes=(
                    OrderChange(order.order_id, "NEW", Decimal(0), Decimal(0), None, venue_order_id="7"),
                )
            )
        self.second_waiting.set()
        await self.release.wait()
        fill = FillReport(
            "t7", order.order_id, "BTCUSDT", "BUY", PRICE, QTY, QTY * PRICE, Decimal(0), "USDT", "TAKER",
            datetime.now(UTC),
        )  # fmt: skip
        change = OrderChange(order.order_id, "FILLED", QTY, QTY * PRICE, PRICE, venue_order_id="7")
        return VenueResult(changes=(change,), fills=(fill,))


async def test_the_later_answer_of_a_command_handled_twice_at_once_is_applied(api: Api) -> None:
    auth = await api.user("twice@example.com")
    user_id = (await api.client.get("/api/me", headers=auth)).json()["id"]
    now = datetime.now(UTC)
    async with unit_of_work(api.parts.sessions) as s:
        s.add(
            Order(
                id=OID,
                user_id=user_id,
                client_order_id="twice-1",
                request_hash="h",
                mode="testnet",
                symbol="BTCUSDT",
                side="BUY",
                type="LIMIT",
                time_in_force="GTC",
                quantity=QTY,
                price=PRICE,
                status="PENDING",
                created_at=now,
                updated_at=now,
            )
        )
    worker = api.system.worker
    exchange = TwoAnswers()
    worker.testnet = exchange
    msg = BusMessage(TESTNET_COMMANDS, "1-0", order_command("place", OID, "testnet"))
    handlers = {asyncio.create_task(worker.handle_testnet(msg)) for _ in range(2)}
    # Which handler reaches the exchange first (and is answered NEW) is up to the scheduler, not the order the
    # tasks were made in: wait for whichever finishes, then let the other's answer (FILLED) come.
    async with asyncio.timeout(60):
        done, _ = await asyncio.wait(handlers, return_when=asyncio.FIRST_COMPLETED)
        assert len(done) == 1 and exchange.calls == 2, (done, exchange.calls)
        exchange.release.set()
        await asyncio.gather(*handlers)
    async with api.parts.sessions() as s:
        order = await s.get(Order, OID)
        fills = (await s.execute(select(Fill).where(Fill.order_id == OID))).scalars().all()
    assert order is not None and (order.status, order.filled_quantity) == ("FILLED", QTY)
    assert [f.trade_id for f in fills] == ["t7"]
