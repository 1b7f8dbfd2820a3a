"""Order acceptance edge cases of the few-round-trip path (gateway alone: no worker needed)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col

from tests.support.api import Api, make_settings, running_api, running_api_on
from tests.support.statements import statements

LIMIT_BUY = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001", "price": "50000"}


@pytest.fixture(params=["postgresql", "sqlite"])
async def gateway(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path, redis_url: str, redis_prefix: str
) -> AsyncIterator[Api]:
    async with running_api_on(
        request.param,
        pg_url=pg_url,
        sqlite_dir=tmp_path,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        order_rate_limit="3/minute",
        paper_starting_balances_csv="USDT=1000,BTC=1",
    ) as api:
        yield api


def _balances(rows: list[dict]) -> dict[str, tuple[Decimal, Decimal]]:
    return {r["asset"]: (Decimal(r["free"]), Decimal(r["locked"])) for r in rows}


async def test_first_order_refused_still_funds_the_account_later(gateway: Api) -> None:
    """The first order's transaction (which makes the starting deposit) rolls back when the order is
    unaffordable; the deposit must then happen on the next order, not be remembered as done."""
    auth = await gateway.user("first@example.com")
    too_big = {**LIMIT_BUY, "quantity": "1"}  # 50,050 USDT > 1,000
    r = await gateway.client.post("/api/orders", json=too_big, headers=auth)
    assert r.status_code == 422, r.text
    assert "INSUFFICIENT" in r.text.upper() or "balance" in r.text
    assert (await gateway.client.get("/api/orders", headers=auth)).json()["items"] == []
    r = await gateway.client.post("/api/orders", json=LIMIT_BUY, headers=auth)
    assert r.status_code == 202, r.text
    b = _balances((await gateway.client.get("/api/balances", headers=auth)).json())
    assert b["USDT"] == (Decimal("1000") - Decimal("50.05"), Decimal("50.05"))
    # and a second account-level check: later orders keep reserving from the same funds
    r = await gateway.client.post("/api/orders", json=LIMIT_BUY, headers=auth)
    assert r.status_code == 202, r.text
    b = _balances((await gateway.client.get("/api/balances", headers=auth)).json())
    assert b["USDT"] == (Decimal("1000") - Decimal("100.10"), Decimal("100.10"))


async def test_replay_is_answered_even_when_new_orders_are_throttled(gateway: Api) -> None:
    auth = await gateway.user("replay@example.com")
    first = await gateway.client.post(
        "/api/orders", json={**LIMIT_BUY, "client_order_id": "c-1"}, headers=auth
    )
    assert first.status_code == 202, first.text
    for i in (2, 3):
        r = await gateway.client.post(
            "/api/orders", json={**LIMIT_BUY, "client_order_id": f"c-{i}"}, headers=auth
        )
        assert r.status_code == 202, r.text
    r = await gateway.client.post("/api/orders", json={**LIMIT_BUY, "client_order_id": "c-4"}, headers=auth)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    again = await gateway.client.post(
        "/api/orders", json={**LIMIT_BUY, "client_order_id": "c-1"}, headers=auth
    )
    assert again.status_code == 200, again.text
    assert again.json()["order_id"] == first.json()["order_id"]
    other = await gateway.client.post(
        "/api/orders", json={**LIMIT_BUY, "price": "50001", "client_order_id": "c-1"}, headers=auth
    )
    assert other.status_code == 409
    b = _balances((await gateway.client.get("/api/balances", headers=auth)).json())
    assert b["USDT"][1] == Decimal("150.15")  # three reservations, none twice


async def test_replay_after_acceptance_reserves_nothing_more(gateway: Api) -> None:
    auth = await gateway.user("idem2@example.com")
    body = {**LIMIT_BUY, "client_order_id": "same"}
    rs = [await gateway.client.post("/api/orders", json=body, headers=auth) for _ in range(3)]
    assert [r.status_code for r in rs] == [202, 200, 200]
    assert len({r.json()["order_id"] for r in rs}) == 1
    b = _balances((await gateway.client.get("/api/balances", headers=auth)).json())
    assert b["USDT"] == (Decimal("1000") - Decimal("50.05"), Decimal("50.05"))


async def test_acceptance_writes_the_same_records_on_either_database(gateway: Api) -> None:
    """PostgreSQL accepts a paper order in one statement, SQLite in several: the same rows and events."""
    from sqlalchemy import select

    from shared.models import LedgerPosting, OrderEvent
    from shared.streams import PAPER_COMMANDS, PRIVATE_EVENTS
    from tests.support.eventually import eventually

    rt = gateway.parts
    auth = await gateway.user("records@example.com")
    r = await gateway.client.post("/api/orders", json=LIMIT_BUY, headers=auth)
    assert r.status_code == 202, r.text
    oid = r.json()["order_id"]
    refused = await gateway.client.post("/api/orders", json={**LIMIT_BUY, "quantity": "1"}, headers=auth)
    assert refused.status_code == 422, refused.text
    async with rt.sessions() as s:
        events = (await s.execute(select(OrderEvent).where(OrderEvent.order_id == oid))).scalars().all()
        postings = (
            (await s.execute(select(LedgerPosting).where(col(LedgerPosting.entry_kind) == "RESERVE")))
            .scalars()
            .all()
        )
    assert [(e.status, e.filled_quantity) for e in events] == [("PENDING", Decimal(0))]
    assert sorted((p.ref, p.asset, p.bucket, p.amount) for p in postings) == [
        (oid, "USDT", "free", Decimal("-50.05")),
        (oid, "USDT", "locked", Decimal("50.05")),
    ]  # the refused order left none

    async def published() -> tuple[list, list]:
        private = [
            m for m in await rt.bus.range_after(PRIVATE_EVENTS, "0") if m.data["type"] != "POSITION_UPDATE"
        ]
        commands = await rt.bus.range_after(PAPER_COMMANDS, "0")
        assert len(private) == 2 and len(commands) == 1
        return private, commands

    private, commands = await eventually(published)
    assert [m.data["type"] for m in private] == ["BALANCE_UPDATE", "ORDER_UPDATE"]
    (bal,) = private[0].data["data"]["balances"]
    assert bal["asset"] == "USDT" and private[0].data["data"]["mode"] == "paper"
    assert (Decimal(bal["free"]), Decimal(bal["locked"]), Decimal(bal["total"])) == (
        Decimal("949.95"),
        Decimal("50.05"),
        Decimal("1000"),
    )
    assert (bal["free"], bal["locked"], bal["total"]) == ("949.95", "50.05", "1000")  # plain, either database
    assert private[1].data["data"]["order_id"] == oid and private[1].data["data"]["status"] == "PENDING"
    # REST and events carry the same version, so a client can tell a stale answer from a newer event
    assert private[1].data["data"]["version"] == r.json()["version"] == 0
    # amounts read back from the database are plain digits, never exponents ("50000", not "5E+4")
    (listed,) = (await gateway.client.get("/api/orders", headers=auth)).json()["items"]
    assert (listed["price"], listed["quantity"]) == ("50000", "0.001")
    balances = {b["asset"]: b for b in (await gateway.client.get("/api/balances", headers=auth)).json()}
    shown = [balances[a][k] for a in ("USDT", "BTC") for k in ("free", "locked", "total")]
    assert not any("E" in v for v in shown), shown
    assert [Decimal(v) for v in shown] == [Decimal("949.95"), Decimal("50.05"), Decimal("1000"), 1, 0, 1]
    assert private[0].data["user_id"] == private[1].data["user_id"]
    # the answer and the ORDER_UPDATE are made from the row as written (no read back, no ORM instance): the
    # order exactly as stored and shown by GET
    stored = (await gateway.client.get(f"/api/orders/{oid}", headers=auth)).json()
    assert (
        {k: v for k, v in stored.items() if k not in ("fills", "history")}
        == r.json()
        == private[1].data["data"]
    )
    assert commands[0].data == {
        "command_id": f"{oid}:place",
        "kind": "place",
        "order_id": oid,
        "mode": "paper",
    }


async def test_an_accepted_order_wakes_the_relay_at_once(
    pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    """The relay publishes an accepted order's command because the request woke it, not because it polled:
    with a poll interval of an hour, the command still reaches the bus within seconds."""
    from shared.streams import PAPER_COMMANDS
    from tests.support.eventually import eventually

    settings = make_settings(
        pg_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        outbox_poll_interval_s=3600,
        paper_starting_balances_csv="USDT=1000,BTC=1",
    )
    async with running_api(settings, migrate=False) as api:
        auth = await api.user("wake@example.com")
        for n in range(
            3
        ):  # the first wait of the relay may be its start-up one: later orders prove the wake-up
            r = await api.client.post("/api/orders", json=LIMIT_BUY, headers=auth)
            assert r.status_code == 202, r.text

            async def published(oid: str = r.json()["order_id"]) -> bool:
                ids = [m.data["order_id"] for m in await api.parts.bus.range_after(PAPER_COMMANDS, "0")]
                return oid in ids

            await eventually(published, timeout=5)


async def test_placements_past_the_inflight_limit_are_refused_at_once(gateway: Api) -> None:
    """Load shedding: with every slot taken, a placement gets 503 + Retry-After before any other work
    (even before authentication) and nothing is stored or reserved; with a slot free it goes through."""
    auth = await gateway.user("busy@example.com")
    gate = gateway.parts.order_admission
    taken = 0
    try:
        while gate.inflight < gate.limit:
            gate.enter()
            taken += 1
        r = await gateway.client.post("/api/orders", json=LIMIT_BUY, headers=auth)
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        anonymous = await gateway.client.post(
            "/api/orders", json=LIMIT_BUY, headers={"Authorization": "Bearer x"}
        )
        assert anonymous.status_code == 503
    finally:
        for _ in range(taken):
            gate.leave()
    assert (await gateway.client.get("/api/orders", headers=auth)).json()["items"] == []
    assert _balances((await gateway.client.get("/api/balances", headers=auth)).json())["USDT"] == (
        Decimal("1000"),
        Decimal(0),
    )
    r = await gateway.client.post("/api/orders", json=LIMIT_BUY, headers=auth)
    assert r.status_code == 202, r.text
    assert gate.inflight == 0  # every request gives its slot back


@pytest.fixture(params=["postgresql", "sqlite"])
async def unthrottled(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path, redis_url: str, redis_prefix: str
) -> AsyncIterator[Api]:
    """The gateway without a practical order rate limit, on either database."""
    common: dict = {"order_rate_limit": "1000/minute", "paper_starting_balances_csv": "USDT=1000,BTC=1"}
    if request.param == "postgresql":
        settings = make_settings(pg_url, redis_url=redis_url, redis_prefix=redis_prefix, **common)
    else:
        settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}", **common)
    async with running_api(settings, migrate=request.param == "sqlite") as api:
        yield api


async def test_concurrent_orders_never_overspend_on_either_database(unthrottled: Api) -> None:
    """50 concurrent buys that together need 5x the balance: exactly what it covers is accepted, and the refused
    ones leave nothing behind (no order, no posting, no event)."""
    import asyncio

    from sqlalchemy import func, select

    from shared.models import LedgerPosting, Order, OutboxMessage

    auth = await unthrottled.user("race@example.com")
    await unthrottled.client.get("/api/balances", headers=auth)  # fund the paper account first
    body = {**LIMIT_BUY, "quantity": "0.01", "price": "9990"}  # locks 0.01 x 9990 x 1.001 = 99.9999: 10 fit
    results = await asyncio.gather(
        *(unthrottled.client.post("/api/orders", json=body, headers=auth) for _ in range(50))
    )
    codes = sorted(r.status_code for r in results)
    assert codes.count(202) == 10 and codes.count(422) == 40, codes
    b = _balances((await unthrottled.client.get("/api/balances", headers=auth)).json())
    assert b["USDT"] == (Decimal("1000") - 10 * Decimal("99.9999"), 10 * Decimal("99.9999"))
    accepted = {r.json()["order_id"] for r in results if r.status_code == 202}
    async with unthrottled.parts.sessions() as s:
        orders = set((await s.execute(select(col(Order.id)))).scalars())
        refs = set(
            (
                await s.execute(
                    select(col(LedgerPosting.ref)).where(col(LedgerPosting.entry_kind) == "RESERVE")
                )
            ).scalars()
        )
        commands = (
            await s.execute(
                select(func.count())
                .select_from(OutboxMessage)
                .where(col(OutboxMessage.stream).contains("commands"))
            )
        ).scalar_one()
    assert orders == refs == accepted
    assert commands <= 10  # published rows are deleted: never more than the accepted orders'


async def test_funded_users_orders_race_for_the_balance_and_replays_still_answer(unthrottled: Api) -> None:
    """A user known funded: on PostgreSQL their paper orders are accepted by the one statement on an autocommit
    connection (no transaction to roll a refusal back: the statement writes nothing unless the free balance
    covers the reservation). 50 concurrent buys needing 5x the balance: exactly what it covers is accepted,
    refused ones leave nothing; a replay of an accepted order is answered with it (200) although the balance
    no longer covers it, and a new order that does not fit is a 422 naming the shortfall."""
    import asyncio

    from sqlalchemy import event, select

    from shared.models import LedgerPosting, Order

    auth = await unthrottled.user("funded@example.com")
    small = {**LIMIT_BUY, "quantity": "0.0001"}
    first = [await unthrottled.client.post("/api/orders", json=small, headers=auth) for _ in range(2)]
    # the first funds the account, the second finds it funded and has the process remember it
    assert [r.status_code for r in first] == [202, 202], first[-1].text
    seen: list[str] = []

    def before(conn: Any, cursor: object, statement: str, *args: object) -> None:
        if "INTO orders" in statement:
            seen.append(conn.get_execution_options().get("isolation_level"))

    engine = unthrottled.parts.engine.sync_engine
    group = unthrottled.parts.group_commit
    statements = group.statements if group is not None else 0
    event.listen(engine, "before_cursor_execute", before)
    body = {**LIMIT_BUY, "quantity": "0.01", "price": "9990"}  # 99.9999 USDT each: 9 fit in what is left
    try:
        results = await asyncio.gather(
            *(
                unthrottled.client.post(
                    "/api/orders", json={**body, "client_order_id": f"c{i}"}, headers=auth
                )
                for i in range(50)
            )
        )
    finally:
        event.remove(engine, "before_cursor_execute", before)
    codes = sorted(r.status_code for r in results)
    assert codes.count(202) == 9 and codes.count(422) == 41, codes
    if group is not None:  # PostgreSQL: the group commit's statements, run by asyncpg outside any transaction
        assert seen == [] and group.statements > statements, seen
    refused = next(r for r in results if r.status_code == 422)
    assert "USDT" in refused.json()["detail"], refused.json()
    accepted = [r.json() for r in results if r.status_code == 202]
    async with unthrottled.parts.sessions() as s:
        orders = set((await s.execute(select(col(Order.id)))).scalars())
        refs = set(
            (
                await s.execute(
                    select(col(LedgerPosting.ref)).where(col(LedgerPosting.entry_kind) == "RESERVE")
                )
            ).scalars()
        )
    assert orders == refs == {*(r.json()["order_id"] for r in first), *(a["order_id"] for a in accepted)}
    again = await unthrottled.client.post(
        "/api/orders", json={**body, "client_order_id": accepted[0]["client_order_id"]}, headers=auth
    )
    assert (again.status_code, again.json()["order_id"]) == (200, accepted[0]["order_id"]), again.text
    b = _balances((await unthrottled.client.get("/api/balances", headers=auth)).json())
    spent = 2 * Decimal("0.0001") * Decimal("50000") * Decimal("1.001") + 9 * Decimal("99.9999")
    assert b["USDT"] == (Decimal("1000") - spent, spent)


async def test_postgresql_accepts_a_paper_order_in_one_statement(
    pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    """The order, its reservation (balance and postings), status row and outbox rows in one statement; a refused
    order too: nothing else is written."""

    settings = make_settings(
        pg_url, redis_url=redis_url, redis_prefix=redis_prefix, paper_starting_balances_csv="USDT=1000,BTC=1"
    )
    async with running_api(settings, migrate=False) as api:
        auth = await api.user("one@example.com")
        for _ in range(2):  # the first funds the account, the second finds it funded (and remembers it)
            assert (await api.client.post("/api/orders", json=LIMIT_BUY, headers=auth)).status_code == 202
        with statements(api.parts.engine) as seen:
            ok = await api.client.post("/api/orders", json=LIMIT_BUY, headers=auth)
            refused = await api.client.post("/api/orders", json={**LIMIT_BUY, "quantity": "1"}, headers=auth)
        assert (ok.status_code, refused.status_code) == (202, 422), refused.text
        writes = [s for s in seen if s.startswith(("INSERT", "UPDATE", "WITH")) or "INTO orders" in s]
        assert len(writes) == 2, writes  # one per order
        for s in writes:
            for table in (
                "INTO orders",
                "INTO balances",
                "INTO ledger_postings",
                "INTO order_events",
                "INTO outbox",
            ):
                assert table in s, (table, s)


async def test_a_known_users_paper_order_needs_no_user_read_and_its_statement_checks_the_user(
    pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    """PostgreSQL: a funded user seen before is taken unread from the gateway's hints and the one acceptance
    statement checks the user itself, so the placement's only round trip is that statement. A user locked or
    switched to another mode since (by another process, say) is followed at once: locked is a 401 that
    writes nothing (also for an order that a check before the statement would refuse), a new default mode
    is the one the order is placed in."""
    from sqlalchemy import func, select, update

    from shared.models import Order, User

    settings = make_settings(
        pg_url, redis_url=redis_url, redis_prefix=redis_prefix, paper_starting_balances_csv="USDT=1000,BTC=1"
    )
    async with running_api(settings, migrate=False) as api:
        auth = await api.user("hinted@example.com")
        for _ in range(2):  # the first funds the account, the second finds it funded (and remembers it)
            assert (await api.client.post("/api/orders", json=LIMIT_BUY, headers=auth)).status_code == 202

        async def set_user(**values: Any) -> None:
            async with api.parts.sessions() as s, s.begin():
                await s.execute(update(User).where(col(User.email) == "hinted@example.com").values(**values))

        async def orders() -> int:
            async with api.parts.sessions() as s:
                return int((await s.execute(select(func.count()).select_from(Order))).scalar_one())

        with statements(api.parts.engine) as seen:
            ok = await api.client.post("/api/orders", json=LIMIT_BUY, headers=auth)
            assert ok.status_code == 202, ok.text
            assert [s for s in seen if "FROM users" in s and "INTO orders" not in s] == [], seen
            assert len([s for s in seen if "INTO orders" in s]) == 1, seen
            await set_user(mode="testnet")  # now its orders without a mode are testnet orders (no keys: 409)
            switched = await api.client.post("/api/orders", json=LIMIT_BUY, headers=auth)
            assert switched.status_code == 409 and "testnet" in switched.text, switched.text
            await set_user(mode="paper", is_active=False)
            assert await orders() == 3
            locked = await api.client.post("/api/orders", json=LIMIT_BUY, headers=auth)
            assert locked.status_code == 401, locked.text
            await set_user(is_active=True)
            assert (await api.client.post("/api/orders", json=LIMIT_BUY, headers=auth)).status_code == 202
            await set_user(is_active=False)
            bad = await api.client.post("/api/orders", json={**LIMIT_BUY, "price": "0.0000001"}, headers=auth)
            assert bad.status_code == 401, bad.text  # not the 422 its price would get
            assert await orders() == 4


async def test_a_funded_users_paper_order_opens_no_unit_of_work_and_is_published_at_once(
    pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    """PostgreSQL: the one statement commits by itself, so the placement opens no session transaction and hands
    its outbox rows to the relay at once (the command reaches the bus with the relay's polling off). A first
    order (funding) still runs in the request's unit of work."""
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    from shared.streams import PAPER_COMMANDS
    from tests.support.eventually import eventually

    settings = make_settings(
        pg_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        outbox_poll_interval_s=3600,
        paper_starting_balances_csv="USDT=1000,BTC=1",
    )
    opened: list[object] = []

    def created(session: object, transaction: Any) -> None:
        if transaction.parent is None:
            opened.append(session)

    async with running_api(settings, migrate=False) as api:
        auth = await api.user("lazy@example.com")
        event.listen(Session, "after_transaction_create", created)
        try:
            first = await api.client.post("/api/orders", json=LIMIT_BUY, headers=auth)  # funds the account
            assert first.status_code == 202 and opened, first.text
            assert (await api.client.post("/api/orders", json=LIMIT_BUY, headers=auth)).status_code == 202
            opened.clear()
            r = await api.client.post("/api/orders", json=LIMIT_BUY, headers=auth)
            assert r.status_code == 202, r.text
            assert opened == []
        finally:
            event.remove(Session, "after_transaction_create", created)

        async def published() -> bool:
            ids = [m.data["order_id"] for m in await api.parts.bus.range_after(PAPER_COMMANDS, "0")]
            return r.json()["order_id"] in ids

        await eventually(published, timeout=5)
