"""Run Alembic migrations from code (CLI `tradebridge migrate`, `tradebridge up`, tests)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

from shared.db import create_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


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

            def work(sync_conn: Connection) -> None:
                cfg = alembic_config(url)
                cfg.attributes["connection"] = sync_conn
                getattr(command, fn)(cfg, revision)

            await conn.run_sync(work)
            await conn.commit()
    finally:
        await engine.dispose()


async def upgrade(url: str, revision: str = "head") -> None:
    await _run(url, "upgrade", revision)


async def downgrade(url: str, revision: str = "base") -> None:
    await _run(url, "downgrade", revision)


def _ensure_sqlite_dir(url: str) -> None:
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).expanduser().resolve().parent.mkdir(parents=True, exist_ok=True)
