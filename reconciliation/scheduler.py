"""Scheduled reports every RECONCILIATION_INTERVAL_S (0 disables), as a gateway service hook."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy import select, update

from reconciliation.runner import get_reconciler
from shared.db import unit_of_work
from shared.models.reconciliation import ReconciliationReport
from tradebridge.bootstrap import Runtime

log = structlog.get_logger(__name__)

DEFAULT_INTERVAL_S = 3600.0
ABANDONED_AFTER = timedelta(hours=1)


class ReconciliationScheduler:
    def __init__(self, rt: Runtime, interval_s: float) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.rt = rt
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
                await get_reconciler(self.rt).run("schedule")
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
                .where(ReconciliationReport.status == "running", ReconciliationReport.started_at >= since)
                .limit(1)
            )
        return found is not None


async def fail_abandoned(rt: Runtime) -> None:
    """Reports left `running` by a process that died are marked failed (their task is gone)."""
    async with unit_of_work(rt.sessions) as session:
        await session.execute(
            update(ReconciliationReport)
            .where(
                ReconciliationReport.status == "running",  # type: ignore[arg-type]
                ReconciliationReport.started_at < rt.clock.now() - ABANDONED_AFTER,
            )
            .values(
                status="failed", error="abandoned: the process running it stopped", finished_at=rt.clock.now()
            )
        )


def reconciliation_hook(interval_s: float | None = None) -> Any:
    """A gateway service hook. `interval_s` None reads `settings.reconciliation_interval_s` (default 3600);
    0 or less: no schedule (reports still run on demand). Stops the scheduler and in-flight reports on exit."""

    async def hook(rt: Runtime, stack: AsyncExitStack) -> None:
        interval = interval_s
        if interval is None:
            interval = float(getattr(rt.settings, "reconciliation_interval_s", DEFAULT_INTERVAL_S))
        reconciler = get_reconciler(rt)
        stack.push_async_callback(reconciler.aclose)
        with contextlib.suppress(Exception):
            await fail_abandoned(rt)
        if interval > 0:
            scheduler = ReconciliationScheduler(rt, interval)
            rt.extras["reconciliation_scheduler"] = scheduler
            scheduler.start()
            stack.push_async_callback(scheduler.stop)

    return hook
