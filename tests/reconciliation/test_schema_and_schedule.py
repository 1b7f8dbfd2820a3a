"""The migration matches the models (no drift for the reconciliation tables); the schedule runs reports."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import shared.models.reconciliation  # noqa: F401
from execution.service import start_execution
from gateway.reconciliation import reconciliation_hook
from gateway.reconciliation.store import list_reports
from shared.db import create_engine, unit_of_work
from tests.reconciliation.conftest import build
from tests.support.api import running_api
from tests.support.eventually import eventually

TABLES = {"reconciliation_reports", "reconciliation_mismatches"}


async def test_no_drift_between_models_and_migration(pg_url: str) -> None:
    engine = create_engine(pg_url)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda c: compare_metadata(
                    MigrationContext.configure(c, opts={"compare_type": True}), SQLModel.metadata
                )
            )
    finally:
        await engine.dispose()
    mine = [d for d in diff if TABLES & set(str(d).split("'")) or any(t in str(d) for t in TABLES)]
    assert mine == []


async def test_scheduled_reports(pg_url: str, redis_url: str, redis_prefix: str) -> None:
    app, settings = build(
        pg_url, redis_url, redis_prefix, "http://127.0.0.1:9", [start_execution, reconciliation_hook(0.2)]
    )
    async with running_api(settings, app=app) as api:

        async def two_scheduled() -> bool:
            async with unit_of_work(api.runtime.sessions) as s:
                reports = await list_reports(s)
            return sum(r.trigger == "schedule" and r.status == "done" for r in reports) >= 2

        await eventually(two_scheduled, timeout=15)
