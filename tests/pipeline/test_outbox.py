"""The outbox's two ways out, on PostgreSQL with Redis and on the embedded SQLite with the in-process bus: rows
published by their writer right after commit (eager), and the relay, which leaves eager rows to their writer
until they are older than its grace period."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from shared.bus.memory import MemoryBus
from shared.bus.redis_streams import RedisStreamsBus
from shared.clock import ManualClock
from shared.db import create_engine, session_factory, unit_of_work
from shared.migrate import upgrade
from shared.models import OutboxMessage
from shared.outbox import OutboxRelay, outbox_row, private_row, publish_after_commit, write_outbox
from tests.support.eventually import eventually


@pytest.fixture(params=["postgresql", "sqlite"])
async def env(
    request: pytest.FixtureRequest, pg_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> AsyncIterator[dict[str, Any]]:
    clock = ManualClock()
    if request.param == "postgresql":
        engine = create_engine(pg_url)
        bus: Any = RedisStreamsBus(redis_url, prefix=redis_prefix)
        dead: Any = RedisStreamsBus("redis://127.0.0.1:1/0", prefix="dead:")
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}"
        await upgrade(url)
        engine = create_engine(url)
        bus = MemoryBus(maxlen=None, clock=clock)
        dead = MemoryBus(maxlen=None, clock=clock)
        await dead.close()  # a closed bus refuses like an unreachable Redis
    try:
        yield {
            "sessions": session_factory(engine),
            "bus": bus,
            "dead": dead,
            "clock": clock,
            "pg": request.param == "postgresql",
        }
    finally:
        await bus.close()
        await dead.close()
        await engine.dispose()


async def _write(env: dict[str, Any], n: int, *, eager: bool) -> Any:
    clock = env["clock"]
    async with unit_of_work(env["sessions"]) as session:
        if eager:
            publish_after_commit(session)
        rows = [outbox_row("cmds", {"n": i}, now=clock.now()) for i in range(n)]
        rows.append(private_row("ORDER_UPDATE", "u1", {"n": n}, now=clock.now()))
        await write_outbox(session, rows)
    return session


async def _count(env: dict[str, Any]) -> int:
    async with env["sessions"]() as s:
        return int((await s.execute(select(func.count()).select_from(OutboxMessage))).scalar_one())


def _relay(env: dict[str, Any], bus: Any = None) -> OutboxRelay:
    return OutboxRelay(
        env["sessions"],
        bus or env["bus"],
        env["clock"],
        is_postgres=env["pg"],
        poll_interval=3600,
        eager_grace_s=2,
    )


async def test_writer_publishes_its_rows_after_commit_and_the_relay_deletes_them(env: dict[str, Any]) -> None:
    relay = _relay(env)
    task = asyncio.create_task(relay.run())
    try:
        session = await _write(env, 3, eager=True)
        assert await relay.publish_pending() == 0  # fresh eager rows are their writer's
        relay.after_commit(session)
        bus = env["bus"]

        async def published() -> bool:
            assert [m.data for m in await bus.range_after("cmds", "0")] == [{"n": 0}, {"n": 1}, {"n": 2}]
            (mirrored,) = await bus.range_after("events.user.u1", "0")
            return bool(mirrored.data["data"] == {"n": 3})

        await eventually(published)
        await eventually(_is_empty(env), message="the relay deletes the rows their writer published")
    finally:
        relay.stop()
        await task


def _is_empty(env: dict[str, Any]) -> Any:
    async def probe() -> bool:
        return await _count(env) == 0

    return probe


async def test_a_writers_rows_are_one_insert_and_keep_their_order(env: dict[str, Any]) -> None:
    """Issue #16: the rows of a unit of work that publishes after commit go in with one statement on either
    database (SQLite inserted them row by row to return their ids in order: five to seven statements per order on
    the embedded default), and each row's id, the publishing order, follows the list."""
    from sqlalchemy import event

    from shared.outbox import committed_rows

    inserts: list[str] = []

    def before(conn: object, cursor: object, statement: str, *args: object) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO OUTBOX"):
            inserts.append(statement)

    engine = env["sessions"].kw["bind"].sync_engine
    event.listen(engine, "before_cursor_execute", before)
    try:
        session = await _write(env, 6, eager=True)
    finally:
        event.remove(engine, "before_cursor_execute", before)
    assert len(inserts) == 1, inserts
    rows = committed_rows(session)
    assert [r.payload.get("n", r.payload.get("data", {}).get("n")) for r in rows] == list(range(7))
    assert [r.id for r in rows] == sorted(r.id for r in rows)
    async with env["sessions"]() as s:
        stored = (await s.execute(select(OutboxMessage).order_by(OutboxMessage.id))).scalars().all()  # type: ignore[arg-type]
    assert [(m.id, m.stream) for m in stored] == [(r.id, r.stream) for r in rows]


async def test_rows_left_by_a_failed_writer_go_out_with_the_relay_after_the_grace(
    env: dict[str, Any],
) -> None:
    session = await _write(env, 2, eager=True)
    failing = _relay(env, env["dead"])
    task = asyncio.create_task(failing.run())
    failing.after_commit(session)  # the bus is down: the rows stay for a relay
    await eventually(lambda: not failing._to_publish and not failing._publish.is_set())
    failing.stop()
    await task
    await _write(env, 1, eager=False)  # written without opting in: the relay's at once
    relay = _relay(env)
    assert await relay.publish_pending() == 2  # the plain rows only
    assert [m.data for m in await env["bus"].range_after("cmds", "0")] == [{"n": 0}]
    assert await _count(env) == 3
    env["clock"].advance(timedelta(seconds=3).total_seconds())
    assert await relay.publish_pending() == 3  # left-over eager rows, in id order, once past the grace
    assert [m.data for m in await env["bus"].range_after("cmds", "0")] == [{"n": 0}, {"n": 0}, {"n": 1}]
    assert await _count(env) == 0


class _CountingRelay(OutboxRelay):
    """Counts its runs, with the loop time of each."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.runs: list[float] = []

    async def publish_pending(self) -> int:
        self.runs.append(asyncio.get_running_loop().time())
        return await super().publish_pending()


async def test_an_idle_relay_polls_less_and_less_and_still_finds_rows_nobody_announced(
    env: dict[str, Any],
) -> None:
    """Issue #16: the poll is the safety net (writers in the process wake the relay), so empty polls back off
    from poll_interval to idle_poll_max; a row written without a wake-up still goes out."""
    relay = _CountingRelay(
        env["sessions"],
        env["bus"],
        env["clock"],
        is_postgres=env["pg"],
        poll_interval=0.02,
        idle_poll_max=0.16,
    )
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: len(relay.runs) >= 5)
        # Four empty polls apart: 0.04 + 0.08 + 0.16 + 0.16 s at least (at a fixed poll: 4 x 0.02 s).
        assert relay.runs[4] - relay.runs[0] >= 0.4
        await _write(env, 1, eager=False)  # no notify: the poll finds it
        await eventually(lambda: _published_cmds(env), timeout=10)
    finally:
        relay.stop()
        await task


async def _published_cmds(env: dict[str, Any]) -> bool:
    return [m.data for m in await env["bus"].range_after("cmds", "0")] == [{"n": 0}]


async def test_a_relay_cancelled_as_it_is_woken_ends(env: dict[str, Any]) -> None:
    """The relay's wait for a wake-up keeps a cancellation that arrives in the turn a writer's `notify()` wakes
    it (Python 3.11's `wait_for` returned normally then, and the cancelled relay ran on)."""
    relay = _relay(env)
    task = asyncio.create_task(relay.run())
    try:
        await eventually(lambda: relay._wake._waiters, message="the relay never waited for a wake-up")
        relay.notify()
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        assert task in done and task.cancelled(), "the relay swallowed its cancellation"
    finally:
        relay.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await task
