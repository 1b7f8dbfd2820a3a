"""The migration matches the models (no drift for the reconciliation tables); the schedule runs reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlmodel import SQLModel

import shared.models.reconciliation  # noqa: F401
from reconciliation.store import list_reports
from shared.db import create_engine, unit_of_work
from shared.migrate import upgrade
from tests.reconciliation.conftest import recon_settings
from tests.support.api import running_api
from tests.support.eventually import eventually

TABLES = {"reconciliation_reports", "reconciliation_mismatches"}


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
async def test_no_drift_between_models_and_migration(database: str, tmp_path: Path, pg_url: str) -> None:
    url = pg_url
    if database == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'schema.db'}"
        await upgrade(url)
    engine = create_engine(url)
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


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
async def test_scheduled_reports(
    database: str, tmp_path: Path, pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    """RECONCILIATION_INTERVAL_S alone schedules reports in the app create_app builds."""
    settings, migrate = recon_settings(
        database, tmp_path, pg_url, redis_url, redis_prefix, reconciliation_interval_s=0.2
    )
    async with running_api(settings, migrate=migrate, services=("execution",)) as api:

        async def two_scheduled() -> bool:
            async with unit_of_work(api.parts.sessions) as s:
                reports = await list_reports(s)
            return sum(r.trigger == "schedule" and r.status == "done" for r in reports) >= 2

        await eventually(two_scheduled, timeout=15)
