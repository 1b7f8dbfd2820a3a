"""What a database is asked: SQLAlchemy's statements (its cursor events) and, on PostgreSQL, the ones code runs by
asyncpg itself on a pooled connection (the gateway's group commit, ``shared.db.pg_fetch``), which those events
miss and asyncpg's query loggers see. (asyncpg logs only statements run by its connection's own
``execute``/``fetch``, BEGIN and COMMIT included, not SQLAlchemy's prepared ones, so nothing is noted twice.)"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[list[str]]:
    """Every statement run on the engine's connections while open, whitespace collapsed. SQLAlchemy's are noted
    as they start; asyncpg's own as they finish, on the event loop's next turn (read the list after an await),
    so the two kinds are each in order but not interleaved in order: tests look statements up by what they
    say, not by position across kinds."""
    seen: list[str] = []
    watched: list[Any] = []

    def log(record: Any) -> None:
        seen.append(" ".join(record.query.split()))

    def before(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(" ".join(statement.split()))

    def checkout(dbapi_conn: Any, record: object, proxy: object) -> None:
        raw = dbapi_conn.driver_connection
        if all(raw is not w for w in watched):
            raw.add_query_logger(log)
            watched.append(raw)

    postgres = engine.dialect.name == "postgresql"
    pool = engine.sync_engine.pool
    event.listen(engine.sync_engine, "before_cursor_execute", before)
    if postgres:
        event.listen(pool, "checkout", checkout)
    try:
        yield seen
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", before)
        if postgres:
            event.remove(pool, "checkout", checkout)
        for raw in watched:
            raw.remove_query_logger(log)
