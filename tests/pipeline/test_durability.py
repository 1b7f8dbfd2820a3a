"""Nothing lost, nothing done twice: concurrency, redelivery, restart recovery (in-process services)."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from sqlalchemy import func, select
from sqlmodel import col

from execution.service import build_worker
from shared.ledger_store import SqlLedger
from shared.models import Fill, Order, ProcessedCommand
from shared.streams import PAPER_COMMANDS
from tests.pipeline.test_paper_orders import balances
from tests.support.api import Api
from tests.support.eventually import eventually


async def test_concurrent_orders_never_overspend(system: Api) -> None:
    """50 concurrent buys that together need 5x the balance: exactly what the balance covers is accepted."""
    auth = await system.user("race@example.com")
    await system.client.get("/api/balances", headers=auth)  # fund the paper account first
    body = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "1000"}
    # each locks 0.01 x 1000 x 1.001 = 10.01 USDT; 10000 USDT covers 999 of them... make it tight:
    body["price"] = "99900"  # 0.01 x 99900 x 1.001 = 999.999 -> 10 orders fit into 10000
    results = await asyncio.gather(
        *(system.client.post("/api/orders", json=body, headers=auth) for _ in range(50))
    )
    codes = sorted(r.status_code for r in results)
    assert codes.count(202) == 10 and codes.count(422) == 40, codes
    b = balances((await system.client.get("/api/balances", headers=auth)).json())
    assert b["USDT"] == (Decimal("10000") - 10 * Decimal("999.999"), 10 * Decimal("999.999"))
    assert all(b[a][0] >= 0 and b[a][1] >= 0 for a in b)


async def test_redelivered_commands_execute_once(system: Api) -> None:
    seller = await system.user("s1@example.com")
    buyer = await system.user("b1@example.com")
    r = await system.client.post(
        "/api/orders",
        json={"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "quantity": "0.01", "price": "60000"},
        headers=seller,
    )
    sell_id = r.json()["order_id"]
    r = await system.client.post(
        "/api/orders",
        json={"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "60000"},
        headers=buyer,
    )
    buy_id = r.json()["order_id"]

    async def filled() -> bool:
        o = (await system.client.get(f"/api/orders/{buy_id}", headers=buyer)).json()
        return o["status"] == "FILLED"

    await eventually(filled)
    rt = system.parts
    # The relay publishes again (as after a crash between publish and delete): same commands, twice more.
    for _ in range(2):
        await rt.bus.publish(
            PAPER_COMMANDS,
            {"command_id": f"{buy_id}:place", "kind": "place", "order_id": buy_id, "mode": "paper"},
        )
        await rt.bus.publish(
            PAPER_COMMANDS,
            {"command_id": f"{sell_id}:place", "kind": "place", "order_id": sell_id, "mode": "paper"},
        )
    marker = await rt.bus.publish(
        PAPER_COMMANDS, {"command_id": "probe", "kind": "noop", "order_id": "none", "mode": "paper"}
    )

    async def probe_done() -> bool:
        async with rt.sessions() as s:
            return await s.get(ProcessedCommand, "probe") is not None

    await eventually(probe_done)
    assert marker
    async with rt.sessions() as s:
        fills = (await s.execute(select(func.count()).select_from(Fill))).scalar_one()
        totals = await SqlLedger(s, rt.clock).totals()
    assert fills == 2  # one trade, two sides
    assert totals["BTC"] == 2 * Decimal("1") and totals["USDT"] == 2 * Decimal("10000")


async def test_restart_rebuilds_books_in_priority_order(system: Api) -> None:
    a = await system.user("a@example.com")
    b = await system.user("b@example.com")
    c = await system.user("c@example.com")
    ids = []
    for who in (a, b):
        r = await system.client.post(
            "/api/orders",
            json={"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "quantity": "0.01", "price": "61000"},
            headers=who,
        )
        ids.append(r.json()["order_id"])
    rt = system.parts

    async def resting() -> bool:
        async with rt.sessions() as s:
            rows = (await s.execute(select(Order).where(col(Order.id).in_(ids)))).scalars().all()
            return all(o.status == "NEW" for o in rows)

    await eventually(resting)
    # Stop the worker and start a fresh one: its books come from the database.
    old = system.system.worker
    await old.stop()
    fresh = build_worker(old.rt)  # the parts the composition root gave the worker
    system.system.worker = fresh
    await fresh.start()
    try:
        await fresh.ready.wait()
        assert fresh.paper.in_book(ids[0]) and fresh.paper.in_book(ids[1])
        r = await system.client.post(
            "/api/orders",
            json={"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "61000"},
            headers=c,
        )
        assert r.status_code == 202

        async def first_filled() -> bool:
            async with rt.sessions() as s:
                first = await s.get(Order, ids[0])
                second = await s.get(Order, ids[1])
                return first.status == "FILLED" and second.status == "NEW"  # FIFO survived the restart

        await eventually(first_filled)
    finally:
        await fresh.stop()


async def test_a_poison_command_is_parked_and_does_not_block_the_book(system: Api) -> None:
    """A command that fails every time (here: an order whose stored reservation is corrupt) is retried,
    then isolated and parked as REJECTED; the orders behind it still execute."""
    from datetime import UTC, datetime

    from shared.models import Order as OrderRow
    from shared.outbox import add_outbox
    from shared.streams import PAPER_COMMANDS

    auth = await system.user("poison@example.com")
    me = (await system.client.get("/api/me", headers=auth)).json()
    rt = system.parts
    now = datetime.now(UTC)
    async with rt.sessions() as s, s.begin():
        s.add(
            OrderRow(
                id="poison0000000000000000000000000a",
                user_id=me["id"],
                client_order_id="poison",
                request_hash="x",
                mode="paper",
                symbol="BTCUSDT",
                side="BUY",
                type="LIMIT",
                time_in_force="GTC",
                quantity=Decimal("0.01"),
                price=Decimal("50000"),
                status="PENDING",
                reserved_asset="USDT",
                reserved_amount=Decimal("1"),
                reserved_price_cap=Decimal("50000"),
                created_at=now,
                updated_at=now,
            )
        )
        add_outbox(
            s,
            PAPER_COMMANDS,
            {
                "command_id": "poison0000000000000000000000000a:place",
                "kind": "place",
                "order_id": "poison0000000000000000000000000a",
                "mode": "paper",
            },
            now=now,
        )
    rt.relay.notify()
    r = await system.client.post(
        "/api/orders",
        json={"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "50000"},
        headers=auth,
    )
    good = r.json()["order_id"]

    async def settled() -> bool:
        async with rt.sessions() as s:
            bad = await s.get(OrderRow, "poison0000000000000000000000000a")
            ok = await s.get(OrderRow, good)
            return bad.status == "REJECTED" and ok.status == "NEW"

    await eventually(settled, timeout=60)
