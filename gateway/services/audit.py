"""The audit log: who did what, when, from where. Rows go into the caller's transaction, always: a refusal
that must leave a record raises with ``commit=True`` (see ``shared.errors``), so the request commits it. A
transaction of its own inside a request would, on SQLite, wait for the request's write lock."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.clock import Clock
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
