"""Paper orders accepted on PostgreSQL in one statement, and placements arriving together accepted together.

One statement accepts any number of paper orders (``accept_paper_pg``): each is inserted, its funds reserved,
its first status and outbox rows written, or, not affordable, a changed user or a replay, nothing of it. A funded
user's order runs that statement on its own (autocommit): no transaction round trips. ``GroupCommit`` runs one
such statement at a time and gathers the placements that arrive meanwhile into the next: alone, an order runs at
once; under load one statement, one commit and one publication serve many orders, and PostgreSQL works on one
connection instead of a backend per placement in flight (past the pool, new backends were born under overload,
and the gateway alone shed orders; issue #16: the figures are in docs/performance.md)."""

from __future__ import annotations

import asyncio
import functools
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from shared.db import asyncpg_statement, pg_json
from shared.ledger_store import (
    PG_DELTA_COLUMNS,
    PG_POSTING_COLUMNS,
    Movement,
    pg_apply_ctes,
    pg_balance_payload,
)
from shared.metrics import ACCEPT_GROUP
from shared.models import Order
from shared.outbox import Committed
from shared.trading_errors import InsufficientBalance


@dataclass(frozen=True, slots=True)
class Acceptance:
    """One paper order to accept: its row, the RESERVE entry's movement, its first status row and its outbox
    rows (the BALANCE_UPDATE's balances filled in by the statement). ``assumed_mode``: the user was taken
    unread from the gateway's hints: the statement checks the user is still of this mode (and active, always)."""

    row: dict[str, Any]
    movement: Movement
    status_row: dict[str, Any]
    outbox: list[dict[str, Any]]
    assumed_mode: str | None = None

    def keys(self) -> set[tuple[str, ...]]:
        """What two orders of one statement may not share: a balance (the statement checks each order
        against the balances before it, not after the others) or a client order id."""
        keys: set[tuple[str, ...]] = set(self.movement.deltas)
        keys.add(("client_order_id", self.row["user_id"], self.row["client_order_id"]))
        return keys


@dataclass(frozen=True, slots=True)
class Accepted:
    """What the statement did with one order: ``inserted`` (else nothing of it was written: a replay, or
    ``short`` when not affordable), ``user_ok`` (False: the user is not as assumed, nothing written), the
    balances it moved, as (free, locked) per key, and (for the batch's first order) every outbox row written."""

    inserted: bool
    user_ok: bool
    balances: dict[tuple[str, str], tuple[Decimal, Decimal]]
    short: InsufficientBalance | None
    committed: list[Committed] = field(default_factory=list)


@functools.cache
def _accept_paper_pg() -> TextClause:
    """PostgreSQL: paper orders accepted in ONE statement (data-modifying CTEs, applied together or not at
    all), fed with the rows the general path writes one by one (``OrderService._accept``). Per order: insert
    it unless (user, client_order_id) exists and only if its user check holds (``who``: active and, for a user
    taken unread, still of the mode assumed) and its free balances cover its movement (``held``: the balance
    rows locked in key order, the latest committed values; ``short`` what is missing); if inserted, move its
    balances (one upsert for all, ``moved``), add its postings, its first status row and its outbox rows,
    marked eager (published by the caller right away; they come back in the result), the BALANCE_UPDATE's
    balances filled in from its moved rows (``pg_balance_payload``). An order that is not accepted writes
    nothing, so the statement needs no transaction to roll back one order and runs on its own (autocommit).
    The orders of one statement share no balance and no client order id (``Acceptance.keys``): each is checked
    against the balances before the statement. Built once (the values are one JSON parameter)."""
    table = Order.__table__  # type: ignore[attr-defined]
    cols = ", ".join(c.name for c in table.columns)
    from_r = ", ".join(f"r.{c.name}" for c in table.columns)
    mine = "(SELECT mine.account_id, mine.asset, mine.free, mine.locked FROM mine WHERE mine.i = b.i)"
    # what the accepted orders move and post (``done``), for the ledger's CTEs
    moving = "(SELECT w.account_id, w.asset, w.free, w.locked, w.ts FROM wanted AS w JOIN done USING (i))"
    posting = (
        "(SELECT p.*, q.ts FROM b AS q JOIN done USING (i)"  # noqa: S608
        f" CROSS JOIN LATERAL json_to_recordset(q.postings) AS p({PG_POSTING_COLUMNS}))"
    )
    # interpolated: column names and SQL written in code; every value is a bound parameter
    sql = f"""
WITH b AS (
  SELECT * FROM json_to_recordset(CAST(:batch AS JSON))
         AS b(i INT, uid VARCHAR, umode VARCHAR, ts TIMESTAMPTZ, ord JSON, status_row JSON, outbox JSON,
              deltas JSON, postings JSON)
), who AS (
  SELECT b.i FROM b JOIN users AS u ON u.id = b.uid
   WHERE u.is_active AND (b.umode IS NULL OR u.mode = b.umode)
), wanted AS (
  SELECT b.i, b.ts, d.account_id, d.asset, d.free, d.locked
    FROM b CROSS JOIN LATERAL json_to_recordset(b.deltas)
         AS d({PG_DELTA_COLUMNS})
), held AS (
  SELECT bal.account_id, bal.asset, bal.free FROM balances AS bal
   WHERE (bal.account_id, bal.asset) IN (SELECT w.account_id, w.asset FROM wanted AS w)
   ORDER BY bal.account_id, bal.asset
     FOR UPDATE OF bal
), short AS (
  SELECT w.i, w.account_id, w.asset, -w.free AS needed, coalesce(h.free, 0) AS available
    FROM wanted AS w LEFT JOIN held AS h USING (account_id, asset)
   WHERE w.free < 0 AND coalesce(h.free, 0) + w.free < 0
), ins AS (
  INSERT INTO orders ({cols})
  SELECT {from_r} FROM b CROSS JOIN LATERAL json_populate_record(NULL::orders, b.ord) AS r
   WHERE b.i IN (SELECT who.i FROM who) AND b.i NOT IN (SELECT short.i FROM short)
   ORDER BY b.i
  ON CONFLICT (user_id, client_order_id) DO NOTHING
  RETURNING id
), done AS (
  SELECT b.i FROM b JOIN ins ON ins.id = b.ord->>'id'
), {pg_apply_ctes(deltas=moving, postings=posting)}, mine AS (
  SELECT w.i, m.account_id, m.asset, m.free, m.locked FROM wanted AS w JOIN moved AS m USING (account_id, asset)
), ev AS (
  INSERT INTO order_events (order_id, status, filled_quantity, reason, ts)
  SELECT e.order_id, e.status, e.filled_quantity, e.reason, e.ts
    FROM b JOIN done USING (i) CROSS JOIN LATERAL json_populate_record(NULL::order_events, b.status_row) AS e
), ob AS (
  INSERT INTO outbox (stream, mirror_to, payload, created_at, eager)
  SELECT o.stream, o.mirror_to,
         CASE WHEN o.payload->>'type' = 'BALANCE_UPDATE'
              THEN jsonb_set(o.payload::jsonb, '{{data,balances}}', ({pg_balance_payload(mine)}))::json
              ELSE o.payload END,
         o.created_at, true
    FROM b JOIN done USING (i)
         CROSS JOIN LATERAL json_populate_recordset(NULL::outbox, b.outbox) WITH ORDINALITY AS o
   ORDER BY b.i, o.ordinality
  RETURNING id, stream, mirror_to, payload
)
SELECT b.i,
       EXISTS (SELECT FROM done WHERE done.i = b.i) AS inserted,
       EXISTS (SELECT FROM who WHERE who.i = b.i) AS user_ok,
       (SELECT json_agg(json_build_object('account_id', account_id, 'asset', asset, 'free', free::text,
                                          'locked', locked::text)) FROM mine WHERE mine.i = b.i) AS balances,
       (SELECT json_agg(json_build_object('account_id', account_id, 'asset', asset, 'needed', needed::text,
                                          'available', available::text)) FROM short WHERE short.i = b.i) AS short,
       CASE WHEN b.i = 0 THEN (SELECT json_agg(json_build_object('id', id, 'stream', stream,
                                                                 'mirror_to', mirror_to, 'payload', payload)
                                               ORDER BY id) FROM ob) END AS outbox
  FROM b
 ORDER BY b.i
"""  # noqa: S608
    return text(sql)


def _batch_param(batch: Sequence[Acceptance]) -> str:
    """The statement's one parameter: the batch's orders as JSON rows."""
    rows = []
    for i, a in enumerate(batch):
        deltas, postings = a.movement.pg_rows()
        rows.append(
            {
                "i": i,
                "uid": a.row["user_id"],
                "umode": a.assumed_mode,
                "ts": a.row["created_at"],
                "ord": a.row,
                "status_row": a.status_row,
                "outbox": a.outbox,
                "deltas": deltas,
                "postings": postings,
            }
        )
    return pg_json(rows)


def _accepted(result: Iterable[Any]) -> list[Accepted]:
    """Rows of the statement by column name (SQLAlchemy's mappings or asyncpg's records), one per order."""
    out = []
    for r in result:
        short = None
        if r["short"]:
            s = r["short"][0]
            short = InsufficientBalance(
                s["account_id"], s["asset"], Decimal(s["needed"]), Decimal(s["available"])
            )
        out.append(
            Accepted(
                inserted=r["inserted"],
                user_ok=r["user_ok"],
                balances={
                    (b["account_id"], b["asset"]): (Decimal(b["free"]), Decimal(b["locked"]))
                    for b in r["balances"] or ()
                },
                short=short,
                committed=[
                    Committed(int(o["id"]), o["stream"], o["payload"], o["mirror_to"])
                    for o in r["outbox"] or ()
                ],
            )
        )
    return out


async def accept_paper_pg(on: AsyncSession | AsyncConnection, batch: Sequence[Acceptance]) -> list[Accepted]:
    """Run ``_accept_paper_pg`` for ``batch`` (orders sharing no ``keys``) in the session's transaction or on a
    connection of its own (autocommit); one ``Accepted`` per order, in order."""
    result = await on.execute(_accept_paper_pg(), {"batch": _batch_param(batch)})
    return _accepted(result.mappings().all())


async def accept_paper_asyncpg(conn: Any, batch: Sequence[Acceptance]) -> list[Accepted]:
    """``accept_paper_pg`` on an asyncpg connection outside a transaction (autocommit), by asyncpg itself: the
    group commit runs one such statement per batch, and SQLAlchemy's execution around it (the compiled
    statement's cache look-up, the result's rows, the greenlet hop) was ~6% of the gateway's CPU at 0.2 R, more
    than the statement's own share (issue #16). The connection's JSON codec is the engine's (orjson)."""
    sql, names = asyncpg_statement(_accept_paper_pg())  # its one parameter, ``batch``
    params = {"batch": _batch_param(batch)}
    return _accepted(await conn.fetch(sql, *(params[n] for n in names)))


class GroupCommit:
    """Paper orders of funded users accepted by ``accept_paper_asyncpg`` on connections of their own
    (autocommit), the ones that arrive while a statement runs gathered into the next (up to ``max_batch``, sharing no
    ``Acceptance.keys`` with each other or with a statement in flight: an order that does waits for a later
    one). One statement at a time, and a second only once ``spill_at`` orders wait: always two split the
    gathering and queued placements behind both (p50 +40% at 300/s), while one alone held every placement
    behind a statement waiting on a lock (a balance row a worker's transaction holds). Each statement's outbox
    rows are handed to ``publish`` (the relay) as soon as it returns, in id order, whether or not the requests
    still wait: committed is published. A request cancelled before its order was taken drops it (nothing
    written)."""

    def __init__(
        self,
        engine: AsyncEngine,
        publish: Callable[[list[Committed]], None],
        *,
        max_batch: int = 100,
        max_inflight: int = 2,
        spill_at: int = 16,
    ) -> None:
        self._engine = engine
        self._publish = publish
        self.max_batch = max_batch
        self.max_inflight = max_inflight
        self.spill_at = spill_at
        self._busy: set[tuple[str, ...]] = set()  # the keys of the statements in flight
        self._queue: deque[tuple[Acceptance, asyncio.Future[Accepted]]] = deque()
        self._running = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.statements = 0  # statements run (with ACCEPT_GROUP, orders per statement): the grouping

    @property
    def pending(self) -> int:
        """Orders waiting for a statement."""
        return len(self._queue)

    async def accept(self, acceptance: Acceptance) -> Accepted:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Accepted] = loop.create_future()
        self._queue.append((acceptance, future))
        if self._running == 0 or (self._running < self.max_inflight and len(self._queue) >= self.spill_at):
            self._running += 1
            task = loop.create_task(self._drain(), name="group-commit")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    def _take(self) -> tuple[list[tuple[Acceptance, asyncio.Future[Accepted]]], set[tuple[str, ...]]]:
        """The next statement's orders, in arrival order, and their keys; the ones sharing a key with an earlier
        one or with a statement in flight wait."""
        taken: list[tuple[Acceptance, asyncio.Future[Accepted]]] = []
        later: deque[tuple[Acceptance, asyncio.Future[Accepted]]] = deque()
        used: set[tuple[str, ...]] = set()
        while self._queue and len(taken) < self.max_batch:
            acceptance, future = self._queue.popleft()
            if future.done():  # its request was cancelled: nothing was written for it
                continue
            keys = acceptance.keys()
            if used.isdisjoint(keys) and self._busy.isdisjoint(keys):
                taken.append((acceptance, future))
                used |= keys
            else:
                later.append((acceptance, future))
        later.extend(self._queue)
        self._queue = later
        return taken, used

    async def _drain(self) -> None:
        try:
            while self._queue:
                batch, keys = self._take()
                if not batch:
                    return  # what waits shares keys with the statement in flight, whose drain takes it next
                self._busy |= keys
                try:
                    await self._run(batch)
                finally:
                    self._busy -= keys
        finally:
            self._running -= 1

    async def _run(self, batch: list[tuple[Acceptance, asyncio.Future[Accepted]]]) -> None:
        try:
            async with self._engine.connect() as conn:
                pooled = await conn.get_raw_connection()  # the engine pool's: its checks, its JSON codec
                raw = pooled.driver_connection
                assert raw is not None
                try:
                    results = await accept_paper_asyncpg(raw, [a for a, _ in batch])
                except asyncpg.PostgresError:  # the server's answer: the connection is fine
                    raise
                except BaseException:  # dropped, or its protocol state unknown: not back to the pool
                    await conn.invalidate()
                    raise
        except asyncio.CancelledError:  # shutting down: the statement's outcome is unknown to its requests
            for _, future in batch:
                future.cancel()
            raise
        except Exception as exc:  # the statement did not commit: every order of it failed
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        finally:
            self.statements += 1
            ACCEPT_GROUP.observe(len(batch))
        committed = [c for r in results for c in r.committed]
        if committed:
            self._publish(committed)
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)
