"""The audit log: who did what, when, from where. Rows go into the caller's transaction: a refusal that must
leave a record raises with ``commit=True`` (see ``shared.errors``), so the request commits it. A transaction of
its own inside a request would, on SQLite, wait for the request's write lock.

A read request (GET/HEAD) must not write in its own transaction, though: it is read-only (on SQLite deferred),
and upgrading it to a writer fails at once with "database is locked" whenever another connection writes. Rows
recorded in a read-only session are therefore queued, and the session dependency (``gateway.deps``) writes
them after the read transaction has ended, in a short write transaction of its own, before the response is
sent. That is not a detached write: the request then holds no other transaction, so the write simply waits
its turn for the lock. (The alternative, a write session for audited reads, would hold SQLite's single write
lock through the whole read and stall every writer meanwhile; the route would also have to tell the session
dependency up front that it writes.)"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.clock import Clock
from shared.db import READ_ONLY_OPTION, unit_of_work
from shared.models import AuditLog


def _reads_only(session: AsyncSession) -> bool:
    """True for a session of ``read_session_factory``: its engine carries the read-only option."""
    bind = session.bind
    return isinstance(bind, AsyncEngine) and bool(bind.get_execution_options().get(READ_ONLY_OPTION))


class Auditor:
    def __init__(self, clock: Clock, *, ip: str | None, request_id: str | None) -> None:
        self.clock = clock
        self.ip = ip
        self.request_id = request_id
        self._after_read: list[AuditLog] = []

    def _row(
        self, action: str, actor_id: str | None, target: str | None, details: dict[str, Any]
    ) -> AuditLog:
        return AuditLog(
            ts=self.clock.now(),
            actor_id=actor_id,
            action=action,
            target=target,
            ip=self.ip,
            request_id=self.request_id,
            details=details,
        )

    async def record(
        self,
        session: AsyncSession,
        action: str,
        *,
        actor_id: str | None,
        target: str | None = None,
        **details: Any,
    ) -> None:
        """Into ``session``'s transaction; queued for ``write_after_read`` if ``session`` only reads."""
        row = self._row(action, actor_id, target, details)
        if _reads_only(session):
            self._after_read.append(row)
            return
        session.add(row)
        await session.flush()

    async def write_after_read(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        """Write the rows a read recorded, in one short transaction. Call only once the read's transaction
        has ended (never while the caller holds another)."""
        if not self._after_read:
            return
        rows, self._after_read = self._after_read, []
        async with unit_of_work(sessions) as session:
            session.add_all(rows)
