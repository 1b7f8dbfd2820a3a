"""``shared.db.pg_fetch``: a statement run by asyncpg itself inside a session's unit of work (the execution
worker's hottest two, issue #16) is part of the session's transaction wherever it comes in the unit, and fails
as SQLAlchemy's own execution would: the server's answer as SQLAlchemy's error type on a connection that stays
in the pool, a lost connection as an invalidated one that does not."""

from __future__ import annotations

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError, IntegrityError

from shared import db
from tests.foundation.test_pool_ping import _backend_pid, _terminate

pytestmark = pytest.mark.asyncio

_INSERT = text("INSERT INTO raw_rows (id) VALUES (:id) RETURNING id")
_PID = text("SELECT pg_backend_pid() AS pid")


async def _ids(engine: db.AsyncEngine) -> list[int]:
    async with engine.connect() as c:
        return sorted((await c.execute(text("SELECT id FROM raw_rows"))).scalars())


async def test_a_statement_run_by_asyncpg_is_part_of_the_sessions_transaction(pg_url: str) -> None:
    engine = db.create_engine(pg_url, pool_size=1, max_overflow=0)
    sessions = db.session_factory(engine)
    try:
        async with engine.begin() as c:
            await c.execute(text("CREATE TABLE raw_rows (id INTEGER PRIMARY KEY)"))
        # the unit's first statement begins its transaction, which a rollback ends
        with pytest.raises(RuntimeError):
            async with db.unit_of_work(sessions) as s:
                assert [r["id"] for r in await db.pg_fetch(s, _INSERT, {"id": 1})] == [1]
                raise RuntimeError
        assert await _ids(engine) == []
        # after SQLAlchemy's own statement, in the same transaction, committed with it
        async with db.unit_of_work(sessions) as s:
            await s.execute(text("INSERT INTO raw_rows (id) VALUES (2)"))
            await db.pg_fetch(s, _INSERT, {"id": 3})
            await s.execute(text("INSERT INTO raw_rows (id) VALUES (4)"))
        assert await _ids(engine) == [2, 3, 4]
    finally:
        await engine.dispose()


async def test_its_errors_are_sqlalchemys_and_a_lost_connection_leaves_the_pool(pg_url: str) -> None:
    engine = db.create_engine(pg_url, pool_size=1, max_overflow=0)
    killer = db.create_engine(pg_url, pool_size=1, max_overflow=0)
    sessions = db.session_factory(engine)
    try:
        async with engine.begin() as c:
            await c.execute(text("CREATE TABLE raw_rows (id INTEGER PRIMARY KEY)"))
            await c.execute(text("INSERT INTO raw_rows (id) VALUES (1)"))
        pid = await _backend_pid(engine)
        with pytest.raises(IntegrityError):  # the server's answer: the worker's handling of it is unchanged
            async with db.unit_of_work(sessions) as s:
                await db.pg_fetch(s, _INSERT, {"id": 1})
        assert await _backend_pid(engine) == pid  # the connection is fine and back in the pool

        with pytest.raises(DBAPIError) as lost:
            async with db.unit_of_work(sessions) as s:
                assert (await db.pg_fetch(s, _PID, {}))[0]["pid"] == pid
                await _terminate(killer, pid)
                await db.pg_fetch(s, _INSERT, {"id": 2})
        assert lost.value.connection_invalidated  # what the worker reads as the database being down
        assert await _backend_pid(engine) != pid  # the dropped connection was not handed out again
        async with db.unit_of_work(sessions) as s:
            await db.pg_fetch(s, _INSERT, {"id": 2})
        assert await _ids(engine) == [1, 2]
    finally:
        await engine.dispose()
        await killer.dispose()
