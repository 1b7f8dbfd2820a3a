"""SQLite statements run in the event loop's thread (``shared.db._InlineSqlite``), not handed to aiosqlite's
thread and back per statement (issue #16: that hop was most of a statement's cost on the embedded default).
A write lock held by another connection (another process on the file) is waited for without stalling the
loop, and the write goes ahead once it is released."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.db import create_engine, read_session_factory, session_factory, unit_of_work
from tests.support.eventually import eventually

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'inline.db'}")

    @event.listens_for(engine.sync_engine, "connect")
    def _thread_function(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.create_function("thread_id", 0, threading.get_ident)

    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (k INTEGER)"))
    yield engine
    await engine.dispose()


async def test_statements_run_in_the_loops_thread(engine: AsyncEngine) -> None:
    here = threading.get_ident()
    async with unit_of_work(session_factory(engine)) as s:
        assert (await s.execute(text("SELECT thread_id()"))).scalar_one() == here
        await s.execute(text("INSERT INTO t VALUES (1)"))
    async with read_session_factory(engine)() as s:
        assert (await s.execute(text("SELECT thread_id()"))).scalar_one() == here
        assert (await s.execute(text("SELECT count(*) FROM t"))).scalar_one() == 1


async def test_a_lock_held_elsewhere_is_waited_for_without_stalling_the_loop(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    outsider = sqlite3.connect(tmp_path / "inline.db", isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")  # as another process would hold it
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    async def write() -> None:
        async with unit_of_work(session_factory(engine)) as s:
            await s.execute(text("INSERT INTO t VALUES (2)"))

    ticking = asyncio.create_task(ticker())
    writing = asyncio.create_task(write())
    try:
        await eventually(lambda: ticks >= 40, message="the loop stalled while the write waited")
        assert not writing.done(), "the write did not wait for the lock"
        outsider.execute("ROLLBACK")
        await asyncio.wait_for(writing, timeout=10)
    finally:
        ticking.cancel()
        outsider.close()
    async with read_session_factory(engine)() as s:
        assert (await s.execute(text("SELECT k FROM t"))).scalars().all() == [2]
