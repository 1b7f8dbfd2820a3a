"""Alembic environment: SQLModel metadata, async engines, batch mode on SQLite.

`shared.migrate` hands a live connection in `config.attributes["connection"]`; the plain `alembic`
command line gets its URL from DATABASE_URL (or alembic.ini) and opens its own async engine.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import shared.models  # noqa: F401  (registers every table)
from shared.db import create_engine
from shared.settings import Settings

config = context.config
target_metadata = SQLModel.metadata


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_engine(url)
    async with engine.connect() as conn:
        await conn.run_sync(_configure)
        await conn.commit()
    await engine.dispose()


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    if context.is_offline_mode():
        context.configure(
            url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    url = config.get_main_option("sqlalchemy.url") or Settings().database_url
    asyncio.run(_run_async(url))


run()
