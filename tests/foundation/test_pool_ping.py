"""PostgreSQL connections are pinged at checkout only after sitting idle (``shared.db._ping_when_idle``), and
one that died while idle (a restarted server, a dropped connection) is replaced there, never handed to a
request. The ping (three round trips on asyncpg) used to run on every checkout."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from shared import db
from tests.support.eventually import eventually

pytestmark = pytest.mark.asyncio


async def _terminate(killer: Any, pid: int) -> None:
    """End the backend and wait until it is gone (termination is a signal, not a wait)."""
    async with killer.connect() as k:
        await k.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    async def gone() -> bool:
        async with killer.connect() as k:
            found = await k.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            )
            return found.scalar_one() == 0

    await eventually(gone, message=f"backend {pid} still there")


async def _backend_pid(engine: Any) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_dropped_while_idle_is_replaced_at_checkout(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_IDLE_S", 0.0)  # every checkout counts as after an idle spell
    engine = db.create_engine(pg_url, pool_size=1, max_overflow=0)
    killer = db.create_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        pid = await _backend_pid(engine)  # the pool's only connection, back in the pool
        await _terminate(killer, pid)
        # the dead connection is found by the ping and replaced: the request's statement just works
        assert await _backend_pid(engine) != pid
    finally:
        await engine.dispose()
        await killer.dispose()


async def test_a_connection_back_in_use_at_once_is_not_pinged(
    pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "PING_IDLE_S", 3600.0)  # never idle long enough here
    engine = db.create_engine(pg_url, pool_size=1, max_overflow=0)
    killer = db.create_engine(pg_url, pool_size=1, max_overflow=0)
    try:
        pid = await _backend_pid(engine)
        await _terminate(killer, pid)
        # no ping: the request meets the dead connection itself (and the pool replaces it afterwards). asyncpg
        # says so one of two ways: the connection is closed, or (its server's termination notice read before
        # the end of the stream) it is still consuming that error ("another operation is in progress")
        with pytest.raises(Exception, match=r"(?i)connection|another operation"):
            await _backend_pid(engine)
        assert await _backend_pid(engine) != pid
    finally:
        await engine.dispose()
        await killer.dispose()
