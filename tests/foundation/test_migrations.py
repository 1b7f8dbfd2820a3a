"""Migrations on both databases: up to head, down to base, up again, and no drift from the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect
from sqlmodel import SQLModel

import shared.models  # noqa: F401
from shared.db import create_engine
from shared.migrate import downgrade, upgrade


async def _diff_and_tables(url: str) -> tuple[list, set[str]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:

            def run(sync_conn):
                ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})
                return compare_metadata(ctx, SQLModel.metadata), set(inspect(sync_conn).get_table_names())

            return await conn.run_sync(run)
    finally:
        await engine.dispose()


async def _roundtrip(url: str) -> None:
    await upgrade(url)
    diff, tables = await _diff_and_tables(url)
    assert diff == [], f"models and migrations disagree: {diff}"
    assert set(SQLModel.metadata.tables) <= tables
    await downgrade(url, "base")
    _, tables = await _diff_and_tables(url)
    assert tables <= {"alembic_version"}
    await upgrade(url)
    diff, _ = await _diff_and_tables(url)
    assert diff == []


async def test_postgresql_roundtrip(pg_empty_url: str) -> None:
    await _roundtrip(pg_empty_url)


async def test_sqlite_roundtrip(tmp_path: Path) -> None:
    await _roundtrip(f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}")


@pytest.mark.parametrize("head_only", [True])
def test_single_head(head_only: bool) -> None:
    from alembic.script import ScriptDirectory

    from shared.migrate import alembic_config

    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, heads
