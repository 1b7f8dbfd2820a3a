"""Run Alembic migrations from code (CLI `tradebridge migrate`, `tradebridge up`, tests).

Alembic's own INFO narration is silenced by shared.logging (warnings and errors still show); in its
place, one line of ours says what a run changed.
"""

from __future__ import annotations

from pathlib import Path

import structlog
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection

from shared.db import create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"

log = structlog.get_logger(__name__)


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


async def _run(url: str, fn: str, revision: str) -> None:
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:

            def work(sync_conn: Connection) -> tuple[str, str]:
                cfg = alembic_config(url)
                cfg.attributes["connection"] = sync_conn
                before = _heads(sync_conn)
                getattr(command, fn)(cfg, revision)
                return before, _heads(sync_conn)

            before, after = await conn.run_sync(work)
            await conn.commit()
    finally:
        await engine.dispose()
    if before != after:
        log.info("database migrated", from_revision=before, to_revision=after)


async def upgrade(url: str, revision: str = "head") -> None:
    await _run(url, "upgrade", revision)


async def downgrade(url: str, revision: str = "base") -> None:
    await _run(url, "downgrade", revision)


def _heads(sync_conn: Connection) -> str:
    return ",".join(sorted(MigrationContext.configure(sync_conn).get_current_heads())) or "base"


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
