"""Running a report: a `running` row first (so the API can answer 202 with its id at once), then every check,
then the mismatches and the summary stored, status `done` (or `failed` with the error), metrics updated."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import func, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlmodel import col, select

import shared.models.reconciliation  # noqa: F401  (registers the tables until shared.models imports them)
from reconciliation.findings import KINDS, CheckOutcome, Finding, summarise
from reconciliation.paper import BookView, run_paper_checks
from reconciliation.testnet import (
    ExchangeFactory,
    TestnetCheckConfig,
    check_user,
    check_user_safely,
    exchange_sessions,
)
from shared.clock import Clock
from shared.credentials import TESTNET_EXCHANGE, load_plain_keys
from shared.db import READ_ONLY_OPTION, unit_of_work
from shared.ids import new_id
from shared.metrics import RECON_MISMATCHES
from shared.models import ExchangeCredential
from shared.models.reconciliation import ReconciliationMismatch, ReconciliationReport
from shared.security.crypto import KeyRing
from shared.settings import Settings

log = structlog.get_logger(__name__)

Progress = Callable[[str, int, int], None]
"""(step description, steps done, steps in total): the CLI draws a bar with it."""


@dataclass(frozen=True, slots=True)
class ReconOptions:
    stuck_after_s: float = 60.0  # PENDING / PENDING_CANCEL longer than this is stuck
    lookback_s: float = 7 * 24 * 3600.0  # testnet orders and fills newer than this are compared
    include_testnet: bool = True


PaperBook = Callable[[], Awaitable[BookView]]
"""The execution worker's open paper book (orders and locks) as it published it, or why it is unavailable."""


@dataclass(frozen=True, slots=True)
class ReconciliationParts:
    """All reconciliation uses, filled in by the composition root."""

    settings: Settings
    clock: Clock
    engine: AsyncEngine  # one REPEATABLE READ snapshot per report
    sessions: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]
    keyring: KeyRing  # testnet keys (shared.credentials)
    symbols: list[str]
    paper_book: PaperBook | None = None
    exchange_factory: ExchangeFactory | None = None
    options: ReconOptions = field(default_factory=lambda: ReconOptions())


class Reconciler:
    """Runs reports with the parts it was given; `start` runs one in the background (the API's 202)."""

    def __init__(self, parts: ReconciliationParts) -> None:
        self.rt = parts
        self.exchange_factory = parts.exchange_factory or exchange_sessions(
            parts.settings.binance_testnet_url
        )
        self.options = parts.options
        self._tasks: set[asyncio.Task[None]] = set()

    def add_report(self, session: AsyncSession, trigger: str, requested_by: str | None) -> str:
        """Add a `running` report row to the caller's transaction (the API's request: on SQLite a second
        transaction would wait on the request's write lock until it times out)."""
        report_id = new_id()
        session.add(
            ReconciliationReport(
                id=report_id,
                status="running",
                trigger=trigger,
                requested_by=requested_by,
                started_at=self.rt.clock.now(),
                summary={},
            )
        )
        return report_id

    async def create(self, trigger: str, requested_by: str | None) -> str:
        async with unit_of_work(self.rt.sessions) as session:
            return self.add_report(session, trigger, requested_by)

    async def start(self, report_id: str) -> None:
        """Run a report whose row is committed in the background. A coroutine, so that the API's
        BackgroundTasks calls it on the event loop after the commit (a plain function would run in a thread)."""
        task = asyncio.create_task(self.execute(report_id), name=f"reconciliation-{report_id}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def run(
        self, trigger: str, requested_by: str | None = None, progress: Progress | None = None
    ) -> str:
        report_id = await self.create(trigger, requested_by)
        await self.execute(report_id, progress)
        return report_id

    async def aclose(self) -> None:
        for t in list(self._tasks):
            t.cancel()
        for t in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t

    async def execute(self, report_id: str, progress: Progress | None = None) -> None:
        try:
            outcomes, extra = await self._checks(progress)
        except BaseException as exc:
            log.exception("reconciliation failed", report_id=report_id)
            with contextlib.suppress(Exception):
                await asyncio.shield(
                    self._finish(report_id, "failed", [], {}, f"{type(exc).__name__}: {exc}")
                )
            if isinstance(exc, asyncio.CancelledError):
                raise
            return
        await self._finish(report_id, "done", outcomes, extra, None)

    async def _finish(
        self,
        report_id: str,
        status: str,
        outcomes: list[CheckOutcome],
        extra: dict[str, Any],
        error: str | None,
    ) -> None:
        summary = summarise(outcomes) if outcomes or status == "done" else {}
        summary.update(extra)
        findings = [f for o in outcomes for f in o.findings]
        async with unit_of_work(self.rt.sessions) as session:
            session.add_all(mismatch_row(report_id, f) for f in findings)
            await session.execute(
                update(ReconciliationReport)
                .where(ReconciliationReport.id == report_id)  # type: ignore[arg-type]
                .values(
                    status=status,
                    finished_at=self.rt.clock.now(),
                    summary=summary,
                    mismatch_count=len(findings),
                    error=error[:1024] if error else None,
                )
            )
        if status == "done":
            counts = summary.get("by_kind", {})
            for kind in KINDS:
                RECON_MISMATCHES.labels(kind).set(counts.get(kind, 0))
        log.info("reconciliation finished", report_id=report_id, status=status, mismatches=len(findings))

    async def _checks(self, progress: Progress | None) -> tuple[list[CheckOutcome], dict[str, Any]]:
        rt, opts = self.rt, self.options
        creds = await self._users_with_keys() if opts.include_testnet else []
        total = 1 + len(creds)
        if progress:
            progress("paper ledger and books", 0, total)
        async with snapshot_session(rt) as session:
            outcomes = await run_paper_checks(
                session,
                now=rt.clock.now(),
                memory=await rt.paper_book() if rt.paper_book is not None else None,
                stuck_after_s=opts.stuck_after_s,
            )
        balances: dict[str, dict[str, str]] = {}
        since = rt.clock.now() - timedelta(seconds=opts.lookback_s)
        cfg = TestnetCheckConfig(since=since, symbols=list(rt.symbols))
        for i, user_id in enumerate(creds, start=1):
            if progress:
                progress(f"testnet user {user_id}", i, total)
            outcomes.append(
                await check_user_safely(
                    functools.partial(self._check_testnet_user, user_id, cfg, balances), user_id
                )
            )
        if not opts.include_testnet:
            outcomes.append(CheckOutcome("testnet", skipped=True, notes=["testnet checks not requested"]))
        if progress:
            progress("done", total, total)
        return outcomes, {
            "exchange_balances": balances,
            "testnet_users": len(creds),
            "stuck_after_s": opts.stuck_after_s,
        }

    async def _check_testnet_user(
        self, user_id: str, cfg: TestnetCheckConfig, balances: dict[str, dict[str, str]]
    ) -> CheckOutcome:
        async with self.rt.read_sessions() as session:
            keys = await load_plain_keys(session, self.rt.keyring, user_id)
            ack = await reset_acknowledged_at(session, user_id)
        if keys is None:
            return CheckOutcome(f"testnet:{user_id}", skipped=True, notes=["keys removed meanwhile"])
        exchange = self.exchange_factory(keys)
        try:
            # Read-only while it waits on the exchange: on SQLite a write transaction here would block
            # every other writer for the length of the network calls.
            async with self.rt.read_sessions() as session:
                return await check_user(
                    session, user_id, exchange, cfg, reset_acknowledged_at=ack, balances_out=balances
                )
        finally:
            await exchange.close()

    async def _users_with_keys(self) -> list[str]:
        async with self.rt.read_sessions() as session:
            rows = await session.execute(
                select(ExchangeCredential.user_id)
                .where(col(ExchangeCredential.exchange) == TESTNET_EXCHANGE)
                .order_by(col(ExchangeCredential.user_id))
            )
            return list(rows.scalars())


async def reset_acknowledged_at(session: AsyncSession, user_id: str) -> datetime | None:
    """When an admin last acknowledged (repaired) a testnet reset of this user: older history is gone for good."""
    result: datetime | None = await session.scalar(
        select(func.max(ReconciliationReport.started_at))
        .join(ReconciliationMismatch, col(ReconciliationMismatch.report_id) == ReconciliationReport.id)
        .where(
            col(ReconciliationMismatch.kind) == "testnet_reset",
            col(ReconciliationMismatch.user_id) == user_id,
            col(ReconciliationMismatch.repaired_at).is_not(None),
        )
    )
    return result


@contextlib.asynccontextmanager
async def snapshot_session(rt: ReconciliationParts) -> AsyncIterator[AsyncSession]:
    """One consistent read snapshot (REPEATABLE READ on PostgreSQL; SQLite's transaction already is one)."""
    async with rt.engine.execution_options(**{READ_ONLY_OPTION: True}).connect() as conn:
        if not rt.settings.is_sqlite:
            await conn.execution_options(isolation_level="REPEATABLE READ")
        async with AsyncSession(bind=conn, expire_on_commit=False) as session, session.begin():
            yield session


def mismatch_row(report_id: str, f: Finding) -> ReconciliationMismatch:
    def cut(v: str | None, n: int = 256) -> str | None:
        return v[:n] if v is not None else None

    return ReconciliationMismatch(
        report_id=report_id,
        kind=f.kind,
        scope=f.scope,
        user_id=f.user_id,
        asset=f.asset,
        symbol=f.symbol,
        order_id=cut(f.order_id, 64),
        trade_id=cut(f.trade_id, 64),
        tradebridge_value=cut(f.tradebridge_value),
        reference_value=cut(f.reference_value),
        reference_source=f.reference_source,
        action=f.action,
        repair=f.repair,
        details=f.details,
    )
