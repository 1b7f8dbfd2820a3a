"""Transactional outbox: messages are written in the same transaction as the state they describe, then
published to the bus and deleted. Nothing committed is lost (a crash before publishing leaves the row for a
relay) and nothing is lost when Redis is down (rows wait). A crash between publishing and deleting publishes a
row twice: consumers are idempotent by command id, and private events carry the order's version so clients can
ignore a repeat.

Two ways out of the table:
- the relay publishes rows in id order, woken by the commits that wrote them (``notify``) or by its poll;
- every API request that writes, and every worker batch, opts in with ``publish_after_commit``:
  its rows are marked ``eager`` and it publishes them itself right after its commit
  (``OutboxRelay.publish_committed``, one bus call), and the relay deletes them in batches. That saves the
  relay's round trips and its delay per message. Relays leave an eager row alone until it is older than their
  grace period, and then publish it like any other: its writer died or the bus was down."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import delete, insert, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.bus import Bus
from shared.bus.base import BusUnavailable
from shared.clock import Clock
from shared.db import pg_json, unit_of_work
from shared.metrics import OUTBOX_LAG
from shared.models import OutboxMessage
from shared.retry import Backoff, reraise_if_cancelled, retry
from shared.streams import PRIVATE_EVENTS, private_event, user_stream

log = structlog.get_logger(__name__)

# One relay publishes at a time across every process (PostgreSQL advisory lock), so the bus sees rows in
# commit order of their ids: a user's PENDING update never overtakes the worker's NEW.
RELAY_LOCK_KEY = 0x7452_4C59  # "tRLY"


def add_outbox(
    session: AsyncSession,
    stream: str,
    payload: Mapping[str, Any],
    *,
    mirror_to: str | None = None,
    now: Any,
) -> None:
    add_outbox_row(session, outbox_row(stream, payload, mirror_to=mirror_to, now=now))


def add_outbox_row(session: AsyncSession, row: Mapping[str, Any]) -> None:
    """Add one row (``outbox_row``/``private_row``) to the session's unit of work. In a unit of work that
    publishes after commit the row is eager like its others: one way out per unit of work keeps their order
    (a relay-published cancel could otherwise reach the worker after an order its user placed later)."""
    if _EAGER in session.info:
        message = OutboxMessage(**row, eager=True)
        session.info.setdefault(_EAGER_ORM, []).append(message)
    else:
        session.info[_FOR_RELAY] = True
        message = OutboxMessage(**row)
    session.add(message)


def outbox_row(
    stream: str, payload: Mapping[str, Any], *, mirror_to: str | None = None, now: Any
) -> dict[str, Any]:
    """One outbox row as plain values, for ``write_outbox``."""
    return {"stream": stream, "mirror_to": mirror_to, "payload": dict(payload), "created_at": now}


def private_row(event_type: str, user_id: str, data: dict[str, Any], *, now: Any) -> dict[str, Any]:
    """The outbox row of a private event: on the global private stream, mirrored to the owner's stream."""
    return outbox_row(
        PRIVATE_EVENTS, private_event(event_type, user_id, now, data), mirror_to=user_stream(user_id), now=now
    )


_EAGER = "outbox.publish_after_commit"
_EAGER_ORM = "outbox.publish_after_commit.orm"
_FOR_RELAY = "outbox.for_relay"


@dataclass(frozen=True, slots=True)
class Committed:
    """An outbox row that its writer publishes after commit."""

    id: int
    stream: str
    payload: Mapping[str, Any]
    mirror_to: str | None


def publish_after_commit(session: AsyncSession) -> list[Committed]:
    """Opt this unit of work in: rows it writes from now on (``write_outbox``, ``add_outbox``) are marked
    eager; once the commit succeeded, ``OutboxRelay.after_commit(session)`` queues them for publishing. The
    returned list holds the ``write_outbox`` rows written so far."""
    rows: list[Committed] = session.info.setdefault(_EAGER, [])
    return rows


def committed_rows(session: AsyncSession) -> list[Committed]:
    """The eager rows of a committed unit of work, in id order (the order a relay would publish them)."""
    rows: list[Committed] = list(session.info.get(_EAGER, ()))
    for m in session.info.get(_EAGER_ORM, ()):
        assert m.id is not None, "an eager outbox row was never flushed"
        rows.append(Committed(m.id, m.stream, m.payload, m.mirror_to))
    rows.sort(key=lambda r: r.id)
    return rows


async def write_outbox(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert outbox rows in one statement, in list order (their ids, hence publishing order, follow it).
    A Core insert: unlike ``add_outbox`` it needs no ORM flush (and, unless the unit of work publishes after
    commit, no generated ids back)."""
    if not rows:
        return
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    eager: list[Committed] | None = session.info.get(_EAGER)
    if eager is None:
        session.info[_FOR_RELAY] = True
        await session.execute(insert(table), rows)
        return
    # SQLite: one writer at a time, so a multi-row insert's ids follow its VALUES order; asking SQLAlchemy for them
    # in parameter order made it insert row by row there (five to seven statements per order on the embedded
    # default, issue #16). Elsewhere SQLAlchemy keeps the order with one batched statement.
    ordered = session.bind is None or session.bind.dialect.name != "sqlite"
    result = await session.execute(
        insert(table).returning(table.c.id, sort_by_parameter_order=ordered),
        [{**r, "eager": True} for r in rows],
    )
    outbox_written(session, rows, result.scalars().all())


def outbox_param(session: AsyncSession, rows: Sequence[Mapping[str, Any]]) -> str:
    """``write_outbox``'s rows as one JSON parameter, for a PostgreSQL statement that inserts them itself with
    its other writes (``json_populate_recordset(NULL::outbox, ...) WITH ORDINALITY``, in list order, returning
    the ids for ``outbox_written``): eager in a unit of work that publishes after commit, else for the relay."""
    eager = _EAGER in session.info
    if rows and not eager:
        session.info[_FOR_RELAY] = True
    return pg_json([{**r, "eager": eager} for r in rows])


def outbox_written(session: AsyncSession, rows: Sequence[Mapping[str, Any]], ids: Sequence[int]) -> None:
    """Note rows written in list order with these ids (ascending, as their insert assigned them), to be
    published after commit if the unit of work does so."""
    eager: list[Committed] | None = session.info.get(_EAGER)
    if eager is None:
        return
    for r, rid in zip(rows, sorted(ids), strict=True):
        eager.append(Committed(rid, r["stream"], r["payload"], r["mirror_to"]))


class OutboxRelay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: Bus,
        clock: Clock,
        *,
        batch: int = 500,
        poll_interval: float = 0.25,
        idle_poll_max: float = 2.0,
        linger: float = 0.02,
        clean_linger: float = 0.25,
        busy_window: float = 0.05,
        eager_grace_s: float = 2.0,
        is_postgres: bool,
    ) -> None:
        self.sessions = sessions
        self.bus = bus
        self.clock = clock
        self.batch = batch
        self.poll_interval = poll_interval
        self.idle_poll_max = max(idle_poll_max, poll_interval)
        self.linger = linger
        self.clean_linger = clean_linger
        self.busy_window = busy_window
        self.eager_grace_s = eager_grace_s
        self.is_postgres = is_postgres
        self._to_publish: list[Committed] = []  # eager rows committed, to publish
        self._publish = asyncio.Event()
        self._published: list[int] = []  # eager rows published, to delete
        self._clean = asyncio.Event()
        self._wake = asyncio.Event()
        self._local_lock = asyncio.Lock()
        self._stopped = False

    def notify(self) -> None:
        """Called after a commit that wrote outbox rows: publish now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """The relay loop, with the publisher and the cleaner of eager rows beside it, until stopped."""
        helpers = [
            asyncio.create_task(self._publish_loop(), name="outbox-publisher"),
            asyncio.create_task(self._clean_loop(), name="outbox-cleaner"),
        ]
        try:
            await self._relay_loop()
        finally:
            for task in helpers:
                task.cancel()
            await asyncio.wait(helpers, timeout=2)
            with contextlib.suppress(
                Exception
            ):  # best effort: a relay republishes what is left after the grace
                await self._delete_published()

    async def _relay_loop(self) -> None:
        """Publish whenever woken (or polled). When busy (woken again within ``busy_window`` of the last run),
        linger a few milliseconds first so one run publishes what several commits wrote: a run costs a handful
        of round trips whatever its size, and one run per commit would make the relay the bottleneck. Idle,
        a wake-up publishes at once.

        The poll is only the safety net (rows of another process, or eager rows left over): every writer in this
        process wakes the relay. So a poll that finds nothing doubles the next wait, up to ``idle_poll_max``;
        finding rows starts again from ``poll_interval``. An idle process polled four times a second, each a
        transaction and a DELETE (issue #16)."""
        loop = asyncio.get_running_loop()
        last_run = float("-inf")

        async def publish_all() -> int:
            nonlocal last_run
            last_run = loop.time()
            total = 0
            while (n := await self.publish_pending()) >= self.batch:
                total += n
            return total + n

        async def nap(seconds: float) -> None:
            """Until woken or ``seconds`` passed (the poll, or a retry's backoff), lingering when busy.

            `asyncio.timeout`, not `wait_for`: Python 3.11's `wait_for` returns normally when the task is
            cancelled in the turn a `notify()` wakes it, and the cancelled relay went on for ever."""
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(seconds):
                    await self._wake.wait()
            if self.linger > 0 and loop.time() - last_run < self.busy_window and not self._stopped:
                await asyncio.sleep(self.linger)
            self._wake.clear()

        # A failure waits twice the last wait (the poll interval first), at least 0.1 s, at most 5 s.
        backoff = Backoff(base=min(max(2 * self.poll_interval, 0.1), 5.0), factor=2.0, cap=5.0)
        wait = self.poll_interval
        while not self._stopped:
            try:
                found = await publish_all()  # the retrying machinery only once a run failed
            except Exception as exc:
                reraise_if_cancelled(exc)
                log.warning(
                    "outbox relay failed; retrying",
                    error=str(exc) or type(exc).__name__,
                    exc_info=None if isinstance(exc, BusUnavailable) else exc,
                )
                try:
                    found = await retry(
                        publish_all,
                        what="outbox relay",
                        backoff=backoff,
                        expected=BusUnavailable,
                        until=lambda: self._stopped,
                        sleep=nap,
                    )
                except Exception:  # only once stopped: the last failure was logged as it was retried
                    return
            wait = self.poll_interval if found else min(2 * wait, self.idle_poll_max)
            await nap(wait)

    def publish_committed(self, rows: Sequence[Committed]) -> None:
        """Queue rows a committed unit of work wrote with ``publish_after_commit``: the relay's publisher task
        sends everything queued in one bus call, in queue order, then has the rows deleted. (One call per
        request would queue them on a lock, handed over once per event-loop turn: under load that, not Redis,
        was the limit.) If the bus fails, or the process dies first, the rows stay in the table and a relay
        publishes them once they are older than its grace period."""
        if rows:
            self._to_publish.extend(rows)
            self._publish.set()

    async def _publish_loop(self) -> None:
        while True:
            await self._publish.wait()
            self._publish.clear()
            rows, self._to_publish = self._to_publish, []
            for i in range(0, len(rows), self.batch):
                chunk = rows[i : i + self.batch]
                try:
                    await self.bus.publish_many(
                        [(r.stream, r.payload) for r in chunk], mirrors=[r.mirror_to for r in chunk]
                    )
                except Exception as exc:
                    reraise_if_cancelled(exc)
                    log.warning(
                        "outbox: publishing after commit failed; a relay publishes later", error=str(exc)
                    )
                    break
                self._published.extend(r.id for r in chunk)
                self._clean.set()

    def after_commit(self, session: AsyncSession) -> None:
        """After ``session`` committed: queue its eager rows, and wake the relay if it wrote others. Called
        right after the commit, before anything else can commit: the queue keeps the commits' order."""
        self.publish_committed(committed_rows(session))
        if session.info.get(_FOR_RELAY):
            self.notify()

    async def _clean_loop(self) -> None:
        """Delete published eager rows in batches: one statement per ``clean_linger`` at most. Nothing waits
        for the deletion (relays skip eager rows younger than their grace), so it gathers the rows of many
        commits: one DELETE per commit was a statement per order at low rates (issue #16)."""
        # A failure waits twice the last wait (the linger first), at least 0.1 s, at most 5 s; rows published
        # meanwhile go in the same retried DELETE.
        backoff = Backoff(base=min(max(2 * self.clean_linger, 0.1), 5.0), factor=2.0, cap=5.0)
        while True:
            await self._clean.wait()
            await asyncio.sleep(self.clean_linger)  # let more rows gather: one DELETE for many orders
            self._clean.clear()
            await retry(self._delete_published, what="outbox: deleting published rows", backoff=backoff)

    async def _delete_published(self) -> None:
        ids, self._published = self._published, []
        if not ids:
            return
        t = OutboxMessage.__table__  # type: ignore[attr-defined]
        try:
            async with unit_of_work(self.sessions) as session:
                for i in range(0, len(ids), 5000):
                    await session.execute(delete(t).where(t.c.id.in_(ids[i : i + 5000])))
        except BaseException:
            self._published[:0] = ids
            raise

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    async def publish_pending(self) -> int:
        async with self._local_lock, unit_of_work(self.sessions) as session:
            if self.is_postgres:
                await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": RELAY_LOCK_KEY})
            t = OutboxMessage.__table__  # type: ignore[attr-defined]
            # Eager rows are their writers' to publish, unless left over (older than the grace period).
            cutoff = self.clock.now() - timedelta(seconds=self.eager_grace_s)
            oldest = (
                select(t.c.id)
                .where(or_(t.c.eager.is_(False), t.c.created_at < cutoff))
                .order_by(t.c.id)
                .limit(self.batch)
                .scalar_subquery()
            )
            # Taken and deleted in one statement; the deletion only commits once the bus has the rows.
            rows = sorted(
                (
                    await session.execute(
                        delete(t)
                        .where(t.c.id.in_(oldest))
                        .returning(t.c.id, t.c.stream, t.c.payload, t.c.mirror_to)
                    )
                ).all(),
                key=lambda r: r.id,
            )
            if not rows:
                OUTBOX_LAG.set(0)
                return 0
            # One round trip for the whole batch, mirrored private events included, in id order.
            await self.bus.publish_many(
                [(r.stream, r.payload) for r in rows], mirrors=[r.mirror_to for r in rows]
            )
            OUTBOX_LAG.set(len(rows) if len(rows) >= self.batch else 0)
            return len(rows)
