"""Shutdown cancels every service's task, often in the middle of a statement, and a task group or a second
`stop()` may cancel it again while it cleans up. SQLAlchemy then discards the connection; on SQLite it
*terminated* it: aiosqlite's `stop()` raced the graceful close and ended the connection's thread while the
close still waited for it, a task that never finished (shutdown of `tradebridge up` hung in CI's teardown).
Through the app as `create_app` builds it, on both databases; `sleep(0)` only yields, to place the
cancellations at different points of the statement and of the clean-up."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text

from shared.db import unit_of_work
from tests.support.api import Api, running_api_on
from tests.support.eventually import eventually

pytestmark = pytest.mark.asyncio


@pytest.fixture(params=["sqlite", "postgresql"])
async def app(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str, redis_url: str, redis_prefix: str
) -> AsyncIterator[Api]:
    async with running_api_on(
        request.param, pg_url=pg_url, sqlite_dir=tmp_path, redis_url=redis_url, redis_prefix=redis_prefix
    ) as api:
        yield api


def database_tasks() -> set[asyncio.Task[object]]:
    """Tasks the database layer started (SQLAlchemy's and the driver's own, e.g. a connection's close)."""
    found = set()
    for task in asyncio.all_tasks():
        code = getattr(task.get_coro(), "cr_code", None)
        name = code.co_filename if code is not None else ""
        if any(lib in name for lib in ("sqlalchemy", "aiosqlite", "asyncpg")):
            found.add(task)
    return found


async def test_a_writer_cancelled_mid_statement_leaves_nothing_waiting(app: Api) -> None:
    api = app
    sessions = api.parts.sessions

    async def writer() -> None:
        async with unit_of_work(sessions) as session:
            while True:  # a statement is always in flight when the cancellation comes
                await session.execute(text("SELECT count(*) FROM users"))

    # the second cancellation arrives after a few turns of the loop: while the connection is being discarded
    for turns in (1, 2, 3):
        for cancels in (1, 2):
            before = database_tasks()
            started = asyncio.Event()

            async def run() -> None:
                started.set()
                await writer()

            task = asyncio.create_task(run())
            await eventually(started.is_set, message="writer started")
            await asyncio.sleep(0)  # into its first statement
            task.cancel()
            for _ in range(turns):
                await asyncio.sleep(0)
            for _ in range(cancels):
                task.cancel()
                await asyncio.sleep(0)
            with pytest.raises(asyncio.CancelledError):
                await task
            left = database_tasks() - before

            def finished(left: set[asyncio.Task[object]] = left) -> bool:
                return all(t.done() for t in left)

            await eventually(finished, message=f"database work left waiting for ever: {left}")
