"""Mark-driven POSITION_UPDATEs travel as one bus entry per re-mark (issue #16) and still reach each user as
their own POSITION_UPDATE frames: the price feed's re-marking, the bus and the events hub as `create_app` runs
them, on PostgreSQL + Redis Streams and on SQLite + the in-process bus."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

from shared.positions import PositionSnapshot
from shared.streams import POSITION_MARKS, PRIVATE_EVENTS, private_event
from tests.support.api import Api
from tests.support.eventually import eventually


@pytest.fixture
async def stack(api_on: Callable[..., AbstractAsyncContextManager[Api]]) -> AsyncIterator[Api]:
    async with api_on(services=("pricefeed", "events"), pricefeed_source="synthetic") as api:
        yield api


class Socket:
    """What the hub sends one connection (its sender), decoded."""

    def __init__(self) -> None:
        self.frames: list[dict[str, Any]] = []

    async def send(self, text: str) -> None:
        self.frames.append(orjson.loads(text))

    def marks(self) -> list[dict[str, Any]]:
        return [f for f in self.frames if f["type"] == "POSITION_UPDATE" and f["data"]["source"] == "mark"]


def _position(user_id: str, symbol: str, quantity: str) -> PositionSnapshot:
    qty = Decimal(quantity)
    return PositionSnapshot(user_id, "paper", symbol, qty, Decimal(100), qty * 100, Decimal(0), Decimal(0))


async def test_a_remark_is_one_entry_and_each_user_gets_only_their_positions(stack: Api) -> None:
    system = stack.system
    hub, runner = system.hub, system.pricefeed
    alice_tab1, alice_tab2, bob = Socket(), Socket(), Socket()
    conns = [
        hub.connect(user_id, socket.send)
        for user_id, socket in (("alice", alice_tab1), ("alice", alice_tab2), ("bob", bob))
    ]
    senders = [asyncio.create_task(c.run_sender()) for c in conns]
    try:
        await _check(stack, hub, runner, alice_tab1, alice_tab2, bob)
    finally:
        for conn, sender in zip(conns, senders, strict=True):
            sender.cancel()
            hub.disconnect(conn)


async def _check(
    stack: Api, hub: Any, runner: Any, alice_tab1: Socket, alice_tab2: Socket, bob: Socket
) -> None:
    runner.engine.load(
        [
            _position("alice", "BTCUSDT", "0.5"),
            _position("alice", "ETHUSDT", "2"),
            _position("bob", "BTCUSDT", "1"),
            _position("carol", "BTCUSDT", "3"),  # no socket: her marks go nowhere
        ]
    )

    def both_symbols_in_one_entry() -> list[dict[str, Any]]:
        by_id: dict[str, set[str]] = {}
        for f in alice_tab2.marks():
            by_id.setdefault(f["id"], set()).add(f["data"]["symbol"])
        return [f for f in alice_tab2.marks() if by_id[f["id"]] == {"BTCUSDT", "ETHUSDT"}]

    together = await eventually(both_symbols_in_one_entry, timeout=20, message="alice's two marks")
    await eventually(lambda: bob.marks(), timeout=10, message="bob's mark")

    # Each tab got the same frames; every frame is its user's own, with the documented shape.
    assert [f["id"] for f in alice_tab1.marks()][: len(alice_tab2.marks())] == [
        f["id"] for f in alice_tab2.marks()
    ][: len(alice_tab1.marks())]
    assert {f["data"]["symbol"] for f in alice_tab1.marks()} == {"BTCUSDT", "ETHUSDT"}
    assert {(f["data"]["symbol"], f["data"]["quantity"]) for f in bob.marks()} == {("BTCUSDT", "1")}
    assert set(together[0]) == {"type", "id", "ts", "data"}
    assert {f["data"]["quantity"] for f in together} == {"0.5", "2"}

    # On the bus: one entry per re-mark carrying every user's position (carol's too), none per position.
    entries = await stack.parts.bus.range_after(PRIVATE_EVENTS, "0")
    marks = [m for m in entries if m.data.get("type") == POSITION_MARKS]
    assert not [m for m in entries if m.data.get("type") == "POSITION_UPDATE"]
    shared = next(m for m in marks if m.id == together[0]["id"])
    carried = {(p["user_id"], p["data"]["symbol"]) for p in shared.data["data"]["positions"]}
    assert carried == {("alice", "BTCUSDT"), ("alice", "ETHUSDT"), ("bob", "BTCUSDT"), ("carol", "BTCUSDT")}


async def test_the_marks_carry_the_position_a_committed_fill_left(stack: Api) -> None:
    """The worker publishes a fill's POSITION_UPDATE after its commit; the price feed brings it in before its next
    tick and flush (``pricefeed.follow.CatchUp``), so the marks that follow carry the new position."""
    hub, bus = stack.system.hub, stack.parts.bus
    dave = Socket()
    conn = hub.connect("dave", dave.send)
    sender = asyncio.create_task(conn.run_sender())
    try:
        for quantity in ("0.25", "0.75"):  # opened, then added to
            filled = {
                "symbol": "BTCUSDT",
                "mode": "paper",
                "quantity": quantity,
                "avg_entry_price": "100",
                "mark_price": "100",
                "unrealized_pnl": "0",
                "realized_pnl": "0",
                "cost_basis": str(Decimal(quantity) * 100),
                "fees_paid": "0",
                "updated_at": datetime.now(UTC).isoformat(),
                "source": "fill",
            }
            await bus.publish(
                PRIVATE_EVENTS, private_event("POSITION_UPDATE", "dave", datetime.now(UTC), filled)
            )

            def marked(q: str = quantity) -> list[dict[str, Any]]:
                return [f for f in dave.marks() if f["data"]["quantity"] == q]

            await eventually(marked, timeout=20, message=f"a mark of dave's {quantity} BTC")
    finally:
        sender.cancel()
        hub.disconnect(conn)
