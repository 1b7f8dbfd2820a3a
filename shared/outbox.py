"""Transactional outbox: messages are written in the same transaction as the state they describe, then a
relay publishes them to the bus in id order and deletes them. Nothing committed is lost (a crash before
publishing leaves the row for the next relay) and nothing is lost when Redis is down (rows wait).
A crash between publishing and deleting publishes a row twice: consumers are idempotent by command id,
and private events carry the order's version so clients can ignore a repeat."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import structlog
from sqlalchemy import delete, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.bus import Bus
from shared.bus.base import BusUnavailable
from shared.clock import Clock
from shared.db import unit_of_work
from shared.metrics import OUTBOX_LAG
from shared.models import OutboxMessage
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
    """Add one row (``outbox_row``/``private_row``) to the session's unit of work."""
    session.add(OutboxMessage(**row))


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


async def write_outbox(session: AsyncSession, rows: list[dict[str, Any]]) -> None:
    """Insert outbox rows in one statement, in list order (their ids, hence publishing order, follow it).
    A Core insert: unlike ``add_outbox`` it needs no ORM flush and no generated ids back."""
    if rows:
        await session.execute(insert(OutboxMessage.__table__), rows)  # type: ignore[attr-defined]


class OutboxRelay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        bus: Bus,
        clock: Clock,
        *,
        batch: int = 500,
        poll_interval: float = 0.25,
        linger: float = 0.02,
        busy_window: float = 0.05,
        is_postgres: bool,
    ) -> None:
        self.sessions = sessions
        self.bus = bus
        self.clock = clock
        self.batch = batch
        self.poll_interval = poll_interval
        self.linger = linger
        self.busy_window = busy_window
        self.is_postgres = is_postgres
        self._wake = asyncio.Event()
        self._local_lock = asyncio.Lock()
        self._stopped = False

    def notify(self) -> None:
        """Called after a commit that wrote outbox rows: publish now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        """Publish whenever woken (or polled). When busy (woken again within ``busy_window`` of the last run),
        linger a few milliseconds first so one run publishes what several commits wrote: a run costs a handful
        of round trips whatever its size, and one run per order would make the relay the bottleneck. Idle,
        a wake-up publishes at once."""
        loop = asyncio.get_running_loop()
        backoff = self.poll_interval
        last_run = float("-inf")
        while not self._stopped:
            try:
                last_run = loop.time()
                while await self.publish_pending() >= self.batch:
                    pass
                backoff = self.poll_interval
            except BusUnavailable as exc:
                backoff = min(max(backoff * 2, 0.1), 5.0)
                log.warning("outbox relay: bus unavailable, will retry", error=str(exc), retry_in=backoff)
            except Exception:
                backoff = min(max(backoff * 2, 0.1), 5.0)
                log.exception("outbox relay failed, will retry", retry_in=backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            if self.linger > 0 and loop.time() - last_run < self.busy_window and not self._stopped:
                await asyncio.sleep(self.linger)
            self._wake.clear()

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    async def publish_pending(self) -> int:
        async with self._local_lock, unit_of_work(self.sessions) as session:
            if self.is_postgres:
                await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": RELAY_LOCK_KEY})
            t = OutboxMessage.__table__  # type: ignore[attr-defined]
            oldest = select(t.c.id).order_by(t.c.id).limit(self.batch).scalar_subquery()
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
