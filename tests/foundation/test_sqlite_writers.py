"""SQLite's writers in one process take turns in an asyncio queue (``shared.db._WriteGate``) instead of each
asking SQLite for the write lock and sleeping in its busy handler when it is taken.

Measured the way it failed: with the busy handler switched off (``busy_timeout=0``) every write transaction
that overlaps another one fails at once with "database is locked" unless the process queues its writers;
the embedded default (gateway, worker and price feed in one process) relied on the busy handler's sleeps,
1 to 100 ms between tries, and under load its execution worker waited seconds behind placements. Readers
(deferred transactions) never queue."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text

from shared.db import create_engine, read_session_factory, session_factory, unit_of_work

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def engine(tmp_path: Path) -> Any:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'writers.db'}")

    @event.listens_for(engine.sync_engine, "connect")
    def _no_busy_handler(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA busy_timeout=0")  # a writer that finds the lock taken fails at once
        cur.close()

    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE turns (writer INTEGER, step INTEGER)"))
    yield engine
    await engine.dispose()


async def test_overlapping_writers_take_turns(engine: Any) -> None:
    sessions = session_factory(engine)

    async def writer(k: int) -> None:
        async with unit_of_work(sessions) as s:
            for step in range(3):  # holds the transaction across awaits, as a request does
                await s.execute(text("INSERT INTO turns VALUES (:k, :s)"), {"k": k, "s": step})
                await asyncio.sleep(0)

    tasks = []
    for k in range(12):
        tasks.append(asyncio.create_task(writer(k)))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)  # none failed with "database is locked"
    async with engine.connect() as conn:
        rows = (await conn.execute(text("SELECT writer, step FROM turns ORDER BY rowid"))).all()
    # one writer at a time, each transaction whole
    order = [w for w, step in rows if step == 0]
    assert sorted(order) == list(range(12))
    assert [tuple(r) for r in rows] == [(k, s) for k in order for s in range(3)]


async def test_a_failed_writer_gives_its_turn_back(engine: Any) -> None:
    sessions = session_factory(engine)
    with pytest.raises(RuntimeError):
        async with unit_of_work(sessions) as s:
            await s.execute(text("INSERT INTO turns VALUES (1, 0)"))
            raise RuntimeError("the request failed")
    async with unit_of_work(sessions) as s:  # would wait forever on a turn never given back
        await asyncio.wait_for(s.execute(text("INSERT INTO turns VALUES (2, 0)")), timeout=10)
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT writer FROM turns"))).scalars().all() == [2]


async def test_readers_do_not_wait_for_a_writer(engine: Any) -> None:
    async with unit_of_work(session_factory(engine)) as writing:
        await writing.execute(text("INSERT INTO turns VALUES (1, 0)"))
        async with read_session_factory(engine)() as reading:
            seen = await asyncio.wait_for(reading.execute(text("SELECT count(*) FROM turns")), timeout=10)
            assert seen.scalar_one() == 0  # the writer has not committed yet
