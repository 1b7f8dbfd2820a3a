"""The database ledger on both databases: the same balances, postings and refusals whichever path applies them
(PostgreSQL moves balances with one upsert per call, SQLite locks and rewrites rows)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from shared.clock import SystemClock
from shared.db import create_engine, session_factory
from shared.ledger import EXTERNAL_ACCOUNT
from shared.ledger_store import SqlLedger
from shared.models import LedgerPosting
from shared.paper.ledger import (
    InsufficientBalance,
    LedgerError,
    deposit_entry,
    release_entry,
    reserve_entry,
)


@pytest.fixture(params=["postgresql", "sqlite"])
async def sessions(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> AsyncIterator[object]:
    if request.param == "postgresql":
        url = pg_url
    else:
        from shared.migrate import upgrade

        url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
        await upgrade(url)
    engine = create_engine(url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def _apply(sessions: object, entries: list, *, check_funds: bool = False) -> list:
    async with sessions() as s, s.begin():  # type: ignore[operator]
        return await SqlLedger(s, SystemClock()).apply(entries, check_funds=check_funds)


async def _state(sessions: object, account: str) -> tuple[dict[str, tuple[Decimal, Decimal]], int]:
    async with sessions() as s:  # type: ignore[operator]
        assert isinstance(s, AsyncSession)
        views = await SqlLedger(s, SystemClock()).balances(account)
        n = (await s.execute(select(func.count()).select_from(LedgerPosting))).scalar_one()
    return {v.asset: (v.free, v.locked) for v in views}, n


async def test_apply_moves_balances_and_refuses_overdrafts(sessions: object) -> None:
    views = await _apply(sessions, [deposit_entry("alice", "USDT", Decimal("100"), "d1")])
    assert [(v.account_id, v.asset, v.free, v.locked) for v in views] == [
        ("alice", "USDT", Decimal("100"), Decimal(0)),
        (EXTERNAL_ACCOUNT, "USDT", Decimal("-100"), Decimal(0)),  # the outside world may go negative
    ]
    views = await _apply(
        sessions,
        [
            reserve_entry("alice", "USDT", Decimal("60.5"), "o1"),
            release_entry("alice", "USDT", Decimal("20"), "o1"),
        ],
    )
    assert [(v.asset, v.free, v.locked) for v in views] == [("USDT", Decimal("59.5"), Decimal("40.5"))]
    before = await _state(sessions, "alice")
    assert before == ({"USDT": (Decimal("59.5"), Decimal("40.5"))}, 6)

    with pytest.raises(InsufficientBalance) as info:  # a client's shortfall: 422 naming what is free
        await _apply(sessions, [reserve_entry("alice", "USDT", Decimal("60"), "o2")], check_funds=True)
    assert info.value.status == 422 and "59.5" in info.value.detail
    with pytest.raises(LedgerError):  # an invariant breach otherwise, and in either case nothing applied
        await _apply(sessions, [reserve_entry("alice", "USDT", Decimal("60"), "o3")])
    with pytest.raises(LedgerError):  # a locked balance never goes negative either
        await _apply(sessions, [release_entry("alice", "USDT", Decimal("41"), "o1")])
    with pytest.raises(LedgerError):  # nor does a balance that did not exist yet
        await _apply(sessions, [reserve_entry("bob", "BTC", Decimal("1"), "o4")])
    assert await _state(sessions, "alice") == before
    assert (await _state(sessions, "bob"))[0] == {}


async def test_postgresql_applies_entries_in_one_statement(pg_url: str) -> None:
    """Balances moved and postings added by one statement (``pg_apply_ctes``), the entries' own postings."""
    from sqlalchemy import event

    engine = create_engine(pg_url)
    seen: list[str] = []

    def before(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    try:
        sessions = session_factory(engine)
        await _apply(sessions, [deposit_entry("carol", "USDT", Decimal("5"), "d1")])
        event.listen(engine.sync_engine, "before_cursor_execute", before)
        entries = [
            reserve_entry("carol", "USDT", Decimal("1.25"), "o1"),
            release_entry("carol", "USDT", Decimal("1"), "o1"),
        ]
        views = await _apply(sessions, entries, check_funds=True)
        event.remove(engine.sync_engine, "before_cursor_execute", before)
        assert len(seen) == 1, seen
        assert [(v.free, v.locked) for v in views] == [(Decimal("4.75"), Decimal("0.25"))]
        async with sessions() as s:
            rows = (
                await s.execute(
                    select(
                        col(LedgerPosting.entry_kind), col(LedgerPosting.bucket), col(LedgerPosting.amount)
                    )
                    .where(col(LedgerPosting.ref) == "o1")
                    .order_by(col(LedgerPosting.id))
                )
            ).all()
        assert [tuple(r) for r in rows] == [(e.kind, p.bucket, p.amount) for e in entries for p in e.postings]
    finally:
        await engine.dispose()
