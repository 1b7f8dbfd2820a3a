"""The audit log: who did what, when, from where. Failures are recorded in a transaction of their own,
so the record survives the rollback of the request that failed."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.clock import Clock
from shared.db import unit_of_work
from shared.models import AuditLog


class Auditor:
    def __init__(self, clock: Clock, *, ip: str | None, request_id: str | None) -> None:
        self.clock = clock
        self.ip = ip
        self.request_id = request_id

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
        session.add(self._row(action, actor_id, target, details))
        await session.flush()

    async def record_detached(
        self,
        sessions: async_sessionmaker[AsyncSession],
        action: str,
        *,
        actor_id: str | None,
        target: str | None = None,
        **details: Any,
    ) -> None:
        async with unit_of_work(sessions) as session:
            session.add(self._row(action, actor_id, target, details))
