"""Scheduled reports every RECONCILIATION_INTERVAL_S (0 disables), as a gateway service hook."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack
from datetime import timedelta

import structlog
from sqlalchemy import update
from sqlmodel import col, select

from reconciliation.runner import Reconciler, ReconciliationParts
from shared.db import unit_of_work
from shared.models.reconciliation import ReconciliationReport

log = structlog.get_logger(__name__)

DEFAULT_INTERVAL_S = 3600.0
ABANDONED_AFTER = timedelta(hours=1)


class ReconciliationScheduler:
    def __init__(self, reconciler: Reconciler, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.reconciler = reconciler
        self.rt = reconciler.rt
        self.interval_s = interval_s
        self._task: asyncio.Task[None] | None = None
        self.runs = 0

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="reconciliation-scheduler")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                if await self._someone_else_running():
                    continue
                await self.reconciler.run("schedule")
                self.runs += 1
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduled reconciliation failed")

    async def _someone_else_running(self) -> bool:
        """Several gateways may schedule: a report still running (started within the interval) wins."""
        since = self.rt.clock.now() - timedelta(seconds=self.interval_s)
        async with unit_of_work(self.rt.sessions) as session:
            found = await session.scalar(
                select(ReconciliationReport.id)
                .where(
                    col(ReconciliationReport.status) == "running",
                    col(ReconciliationReport.started_at) >= since,
                )
                .limit(1)
            )
        return found is not None


async def fail_abandoned(rt: ReconciliationParts) -> None:
    """Reports left `running` by a process that died are marked failed (their task is gone)."""
    async with unit_of_work(rt.sessions) as session:
        await session.execute(
            update(ReconciliationReport)
            .where(
                col(ReconciliationReport.status) == "running",
                col(ReconciliationReport.started_at) < rt.clock.now() - ABANDONED_AFTER,
            )
            .values(
                status="failed", error="abandoned: the process running it stopped", finished_at=rt.clock.now()
            )
        )


async def start_reconciliation(
    reconciler: Reconciler, stack: AsyncExitStack, interval_s: float | None = None
) -> ReconciliationScheduler | None:
    """Fail reports a dead process left running, then schedule one every `interval_s` (None: the setting
    RECONCILIATION_INTERVAL_S, default 3600; 0 or less: on demand only). The scheduler and in-flight reports
    stop when the stack closes."""
    interval = interval_s
    if interval is None:
        interval = float(getattr(reconciler.rt.settings, "reconciliation_interval_s", DEFAULT_INTERVAL_S))
    stack.push_async_callback(reconciler.aclose)
    with contextlib.suppress(Exception):
        await fail_abandoned(reconciler.rt)
    if interval <= 0:
        return None
    scheduler = ReconciliationScheduler(reconciler, interval)
    scheduler.start()
    stack.push_async_callback(scheduler.stop)
    return scheduler
