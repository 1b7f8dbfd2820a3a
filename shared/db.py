"""Database engine, session factory and portable column types.

SQLite (the embedded default) and PostgreSQL share one schema. Amounts are exact on both: NUMERIC on
PostgreSQL, TEXT on SQLite (which would otherwise store REAL); timestamps are always aware UTC.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sqlite3
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Hashable, Iterable, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar, cast

import aiosqlite
import asyncpg
import orjson
from sqlalchemy import ClauseElement, DateTime, Numeric, String, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import PGDialect_asyncpg
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import configure_mappers, make_transient_to_detached
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeDecorator, TypeEngine
from sqlalchemy.util import await_only
from sqlalchemy.util.concurrency import in_greenlet

READ_ONLY_OPTION = "tradebridge_read_only"

_M = TypeVar("_M", bound=Hashable)  # a class: the cache of its column processors is keyed by it


_ONE = Decimal(1)


class Amount(TypeDecorator[Decimal]):
    """An exact decimal amount: NUMERIC(38, 18) on PostgreSQL, canonical text on SQLite."""

    impl = Numeric(38, 18)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(String(64))
        return dialect.type_descriptor(Numeric(38, 18, asdecimal=True))

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        value = Decimal(value)
        if dialect.name == "sqlite":
            return format(value.normalize() if value else Decimal(0), "f")
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return exact_amount(value)


def exact_amount(value: Any) -> Decimal | None:
    """An amount as read from either database: exact, without trailing zeros, in plain digits."""
    if value is None:
        return None
    dec = value if type(value) is Decimal else Decimal(str(value))  # PostgreSQL's come as Decimals already
    if not dec:
        return Decimal(0)
    dec = dec.normalize()
    # normalize() writes whole numbers with trailing zeros as exponents (60000 -> 6E+4), which is how str()
    # and JSON would show a price; back to plain digits, same value.
    return dec.quantize(_ONE) if dec.as_tuple().exponent > 0 else dec  # type: ignore[operator]


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on both databases (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def upsert_insert(dialect: str) -> Any:
    """The dialect's ``insert`` (PostgreSQL's or SQLite's), which has ``on_conflict_do_nothing``/``_update``:
    the two spell ON CONFLICT the same way, so one statement serves both databases."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return pg_insert if dialect == "postgresql" else sqlite_insert


def create_engine(
    url: str, *, echo: bool = False, pool_size: int = 10, max_overflow: int = 20, pool_timeout_s: float = 5.0
) -> AsyncEngine:
    """`pool_timeout_s` is short on purpose: a request that cannot get a connection soon gets a 503 with
    Retry-After (see gateway.problems) rather than queueing for half a minute."""
    # JSON columns (outbox payloads) through orjson: the relay decodes every payload it publishes.
    json_args: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if url.startswith("sqlite"):
        connect: dict[str, Any] = {}
        engine = create_async_engine(
            url, echo=echo, async_creator=lambda: _InlineSqlite.open(**connect), **json_args
        )
        cargs, cparams = engine.sync_engine.dialect.create_connect_args(engine.url)
        connect.update(cparams, database=cargs[0], check_same_thread=False, timeout=_BUSY_MS / 1000)
        _sqlite_pragmas(engine)
        return engine
    engine = create_async_engine(
        url,
        echo=echo,
        pool_size=pool_size,
        max_overflow=max_overflow,
        pool_timeout=pool_timeout_s,
        **json_args,
    )
    _ping_when_idle(engine)
    return engine


# A pooled connection unused for this long is pinged before it is handed out (see ``_ping_when_idle``).
PING_IDLE_S = 1.0
_IDLE_SINCE = "tradebridge.idle_since"


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Pre-ping only connections that sat idle in the pool: one PostgreSQL restarted or a connection dropped
    while idle is found at checkout and replaced (``DisconnectionError``: the pool connects afresh), as
    ``pool_pre_ping`` does, but a connection back in use within ``PING_IDLE_S`` is not pinged again. The
    asyncpg dialect's ping is three round trips (BEGIN, ``;``, ROLLBACK): on every checkout it was most of a
    placement's round trips, and a connection returned a millisecond ago tells nothing a ping would."""
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _checked_out(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get(_IDLE_SINCE)
        if since is None or time.monotonic() - since < PING_IDLE_S:
            return  # a new connection, or one in use a moment ago
        try:
            dbapi_conn.ping()
        except Exception as exc:
            raise sa_exc.DisconnectionError("the pooled connection is gone") from exc


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def pg_json(value: object) -> str:
    """Rows as a PostgreSQL statement reads them from one JSON parameter (``json_populate_recordset``): amounts
    in plain digits, timestamps in ISO 8601. One parameter for many rows keeps such a statement prepared once."""
    return orjson.dumps(value, default=_pg_json_default).decode()


def _pg_json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, emit BEGIN, so writers can take the lock up front.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        # Statements run in the event loop's thread (``_InlineSqlite``): a lock held by another connection (another
        # process on the file) stalls the loop at most this long; BEGIN IMMEDIATE waits its turn asynchronously.
        cur.execute(f"PRAGMA busy_timeout={_BUSY_MS}")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    gate = _WriteGate()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # IMMEDIATE: take SQLite's single write lock at BEGIN, so read-check-write sequences
        # (balance reservations) are serialised instead of failing with SQLITE_BUSY at upgrade.
        # Read-only sessions (`read_session_factory`) begin deferred: in WAL mode they neither wait for
        # nor block the writer, so a read made while a request holds the write lock cannot deadlock.
        if conn.get_execution_options().get(READ_ONLY_OPTION):
            conn.exec_driver_sql("BEGIN")
            return
        gate.enter(conn.connection.info)
        try:
            _begin_immediate(conn.connection.dbapi_connection)
        except BaseException:
            gate.leave(conn.connection.info)
            raise

    # The turn ends once COMMIT or ROLLBACK has run (the connection events fire before it: the next writer's
    # BEGIN IMMEDIATE would meet the lock still held). The dialect is this engine's own instance.
    dialect = engine.sync_engine.dialect
    for name in ("do_commit", "do_rollback"):
        setattr(dialect, name, _then_leave(getattr(dialect, name), gate))
    dialect.do_terminate = _close_in_order(dialect.do_terminate)  # type: ignore[method-assign]

    @event.listens_for(engine.sync_engine.pool, "checkin")
    @event.listens_for(engine.sync_engine.pool, "invalidate")
    def _on_release(_dbapi_conn: Any, record: Any, *_: Any) -> None:
        # a transaction that ended without commit or rollback (a lost connection)
        gate.leave(record.info if record is not None else None)


def _then_leave(end: Any, gate: _WriteGate) -> Any:
    def ended(dbapi_conn: Any) -> None:
        try:
            end(dbapi_conn)
        finally:
            try:
                info = dbapi_conn.info
            except (AttributeError, NotImplementedError):  # a pool's reset passes a bare connection
                info = None
            gate.leave(info)

    return ended


def _close_in_order(terminate: Any) -> Any:
    """SQLAlchemy invalidates a connection whose task was cancelled mid-statement (shutdown cancels every
    service's task) and *terminates* it: aiosqlite's ``stop()`` first if the graceful close is interrupted,
    which ends the connection's thread while the close still waits for it, and the SQLite connection may be
    left open with its write transaction. Then a task waits for ever, or every other writer waits out the busy
    timeout: `tradebridge up` took 30 s (or for ever) to stop. Instead close it in order: the close is queued
    behind what is in flight, runs to completion even if the task is cancelled again, and ends the thread
    only then. Outside the event loop (garbage collection) there is nothing to wait on: terminate as before."""

    def close(dbapi_conn: Any) -> None:
        if not in_greenlet():
            terminate(dbapi_conn)
            return
        await_only(_to_completion(dbapi_conn.driver_connection.close()))

    return close


async def _to_completion(aw: Awaitable[None]) -> None:
    """Await `aw` to its end even if the caller is cancelled meanwhile; the cancellation is raised after."""
    task = asyncio.ensure_future(aw)
    cancelled = False
    while not task.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(task)
            continue
        cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    task.result()


# SQLite's busy handler's longest stall of the event loop (milliseconds), see ``_sqlite_pragmas``.
_BUSY_MS = 20
# A connection's calls run at most this long (seconds) before it lets the loop turn (``_InlineSqlite._execute``).
_YIELD_S = 0.001
# How long BEGIN IMMEDIATE keeps trying while another connection holds the write lock (as the former busy timeout).
_LOCK_WAIT_S = 30.0


def _begin_immediate(dbapi_conn: Any) -> None:
    """BEGIN IMMEDIATE on the raw connection; while another connection (another process, or a test's) holds
    the write lock, try again after an asynchronous pause, so the event loop goes on meanwhile. Writers of this
    process never meet here: they queue in ``_WriteGate`` first."""
    deadline = time.monotonic() + _LOCK_WAIT_S
    pause = 0.001
    while True:
        cur = dbapi_conn.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() + pause > deadline:
                raise
        finally:
            cur.close()
        await_only(asyncio.sleep(pause))
        pause = min(2 * pause, 0.05)


class _InlineQueue:
    """aiosqlite's hand-off queue to its thread, run in place: the call is made and its future resolved at once
    (SQLAlchemy's adapter puts to the queue directly to set the isolation level)."""

    def put_nowait(self, item: tuple[asyncio.Future[Any] | None, Any]) -> None:
        future, function = item
        try:
            result = function()
        except BaseException as exc:
            if future is not None:
                future.set_exception(exc)
            return
        if future is not None:
            future.set_result(result)


class _InlineSqlite(aiosqlite.Connection):
    """An aiosqlite connection whose statements run in the event loop's thread, not in a thread of its own.

    aiosqlite hands every call (each statement, fetch, BEGIN, COMMIT) to its connection's thread and back: a
    queue put, a future, ``call_soon_threadsafe``, two thread wake-ups. On the embedded default that hop, not
    SQLite, was most of a statement's cost: 14% of the process's GIL samples at 50 orders/s, 0.13 ms of CPU per
    statement in a loop of small transactions (issue #16). SQLite's own work on this schema is a few to some
    tens of microseconds per statement (WAL, ``synchronous=NORMAL``: a commit is no fsync), so running it in
    place stalls the loop less than the hop cost. The writers of the process still take turns in ``_WriteGate``;
    what commits, and when, is unchanged."""

    def __init__(self, connector: Any) -> None:
        super().__init__(connector, iter_chunk_size=64)
        self._tx = _InlineQueue()  # type: ignore[assignment]

    @classmethod
    async def open(cls, **params: Any) -> _InlineSqlite:
        conn = cls(functools.partial(sqlite3.connect, **params))
        await conn
        return conn

    def __await__(self) -> Generator[Any, None, aiosqlite.Connection]:
        return self._connect().__await__()  # no thread to start

    _yielded = 0.0

    async def _execute(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """The call in place, after a turn of the loop if the connection has not given one for ``_YIELD_S``:
        a statement stays a point where other tasks run and a cancellation lands, as it was in the thread
        (a task looping on statements would otherwise never let either happen), without a turn per call."""
        if not self._running or not self._connection:
            raise ValueError("Connection closed")
        if time.monotonic() - self._yielded > _YIELD_S:
            await asyncio.sleep(0)
            self._yielded = time.monotonic()
        return fn(*args, **kwargs)


class _WriteGate:
    """The process's writers take turns in a FIFO queue of their event loop before ``BEGIN IMMEDIATE``.

    Without it every writer's connection asks SQLite for the write lock itself, and one that finds it taken
    sleeps in SQLite's busy handler (1, 2, 5, ... up to 100 ms between tries, in its aiosqlite thread): under
    concurrent requests (the embedded default runs gateway, worker and price feed in one process) writers
    miss their turn again and again, and the execution worker waited seconds behind placements. Queued here,
    the next writer begins as soon as the previous one commits. Another process on the same file still
    waits in the busy handler as before. A turn not had within the busy timeout is a pool-style timeout
    (503 + Retry-After at the gateway)."""

    TIMEOUT_S = 30.0
    _HELD = "tradebridge.write_gate"

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )

    def enter(self, info: dict[Any, Any]) -> None:
        """Wait for this loop's turn (from SQLAlchemy's greenlet: ``await_only``); a no-op if the connection
        (``info``: its pool record's) already holds it."""
        if info.get(self._HELD) is not None:
            return
        loop = asyncio.get_running_loop()
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        try:
            await_only(_acquire(lock, self.TIMEOUT_S))
        except TimeoutError:
            raise sa_exc.TimeoutError(f"no turn at SQLite's write lock within {self.TIMEOUT_S:g} s") from None
        info[self._HELD] = lock

    def leave(self, info: dict[Any, Any] | None) -> None:
        lock = info.pop(self._HELD, None) if info is not None else None
        if lock is not None and lock.locked():
            lock.release()


async def _acquire(lock: asyncio.Lock, timeout_s: float) -> None:
    """``asyncio.timeout``, not ``wait_for``: Python 3.11's ``wait_for`` returns the lock, swallowing a
    cancellation that arrives as the lock is handed over, and the cancelled task carries on (through shutdown)."""
    async with asyncio.timeout(timeout_s):
        await lock.acquire()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def read_session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that only read. On SQLite they begin deferred (see `_sqlite_pragmas`); elsewhere they are
    ordinary sessions. Never write through one."""
    return async_sessionmaker(
        engine.execution_options(**{READ_ONLY_OPTION: True}), expire_on_commit=False, autoflush=False
    )


@functools.lru_cache(maxsize=64)
def asyncpg_statement(stmt: ClauseElement) -> tuple[str, tuple[str, ...]]:
    """A statement (built once, e.g. by a ``functools.cache`` function: this cache is by identity) as asyncpg
    takes it: its SQL with ``$n`` parameters, and the parameters' names in that order (``pg_fetch``)."""
    compiled = cast(SQLCompiler, stmt.compile(dialect=PGDialect_asyncpg(paramstyle="numeric_dollar")))
    assert compiled.positiontup is not None
    return str(compiled), tuple(compiled.positiontup)


def detached_rows(model: type[_M], rows: Iterable[Mapping[str, Any]]) -> list[_M]:
    """Instances of a mapped class made from complete rows that ``pg_fetch`` read (every column, by name), each
    value processed as the ORM would load it (``Amount``, ``UTCDateTime``), and detached: in no session, so no
    flush writes them; whoever changes one writes its changes itself. ~6 us an instance, a fraction of the ORM's
    loading (issue #16)."""
    processors = _column_processors(model)
    manager = model._sa_class_manager  # type: ignore[attr-defined]
    out: list[_M] = []
    for row in rows:
        obj = manager.new_instance()
        values = obj.__dict__
        for name, process in processors:
            value = row[name]
            values[name] = value if process is None or value is None else process(value)
        make_transient_to_detached(obj)
        out.append(obj)
    return out


@functools.cache
def _column_processors(model: Any) -> tuple[tuple[str, Callable[[Any], Any] | None], ...]:
    configure_mappers()  # the identity key of a detached instance needs the mapper's attributes set up
    dialect = PGDialect_asyncpg()
    return tuple(
        (
            c.name,
            functools.partial(c.type.process_result_value, dialect=dialect)
            if isinstance(c.type, TypeDecorator)
            and type(c.type).process_result_value is not TypeDecorator.process_result_value
            else None,
        )
        for c in model.__table__.c
    )


async def pg_fetch(
    session: AsyncSession, stmt: ClauseElement, params: dict[str, Any]
) -> list[asyncpg.Record]:
    """Run a PostgreSQL statement by asyncpg itself, in ``session``'s transaction (begun first if no statement
    has yet): for the hottest statements of a unit of work, where SQLAlchemy's execution around them (its
    compiled cache, ORM rows, result processing, the greenlet hop) cost more than the statement did (issue #16;
    the gateway's group commit does the same outside a session). Rows come back as asyncpg records, unprocessed
    by the columns' types. Errors are SQLAlchemy's, as its own execution would raise them (``IntegrityError``,
    ``DBAPIError`` with ``connection_invalidated``); a connection left in an unknown state (anything but the
    server's answer) is invalidated, not returned to the pool."""
    sql, names = asyncpg_statement(stmt)
    conn = await session.connection()
    pooled = await conn.get_raw_connection()
    adapted: Any = pooled.dbapi_connection  # SQLAlchemy's asyncpg adapter
    try:
        # The adapter begins its transaction lazily, before its own first statement; begun here the same way
        # if none ran yet, so the session's commit or rollback ends it.
        if adapted._transaction is None:
            async with adapted._execute_mutex:
                if adapted._transaction is None:
                    await adapted._start_transaction()
        driver: Any = pooled.driver_connection
        rows: list[asyncpg.Record] = await driver.fetch(sql, *(params[n] for n in names))
        return rows
    except Exception as exc:
        lost = not isinstance(exc, asyncpg.PostgresError)
        if lost:
            await conn.invalidate()
        dbapi = conn.dialect.loaded_dbapi
        try:
            adapted._handle_exception(exc)  # raises the DBAPI error the adapter makes of it
        except dbapi.Error as translated:
            raise sa_exc.DBAPIError.instance(
                sql, None, translated, dbapi.Error, connection_invalidated=lost, dialect=conn.dialect
            ) from exc
        raise
    except BaseException:  # cancelled mid-statement: its protocol state is unknown
        await conn.invalidate()
        raise


@asynccontextmanager
async def unit_of_work(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """One transaction: committed when the block ends cleanly, rolled back otherwise."""
    async with factory() as session, session.begin():
        yield session
