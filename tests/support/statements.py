"""What PostgreSQL is asked, as asyncpg sends it: SQLAlchemy's statements and the ones code runs on a pooled
connection's asyncpg connection itself (the gateway's group commit), which SQLAlchemy's cursor events miss."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


@contextmanager
def pg_statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every statement run on the engine's connections checked out while open, whitespace collapsed, in the
    order asyncpg finished them (its query loggers are called soon after, so read the list after an await)."""
    seen: list[str] = []
    watched: list[Any] = []

    def log(record: Any) -> None:
        seen.append(" ".join(record.query.split()))

    def checkout(dbapi_conn: Any, record: object, proxy: object) -> None:
        raw = dbapi_conn.driver_connection
        if all(raw is not w for w in watched):
            raw.add_query_logger(log)
            watched.append(raw)

    pool = engine.sync_engine.pool
    event.listen(pool, "checkout", checkout)
    try:
        yield seen
    finally:
        event.remove(pool, "checkout", checkout)
        for raw in watched:
            raw.remove_query_logger(log)
