"""The paper ledger in the database: journal entries from the domain (`shared.paper.ledger`) applied to
`balances` under row locks, every posting kept in `ledger_postings`.

Both the gateway (reservations at acceptance, starting deposits) and the execution worker (settlement,
release) write through here, so the same invariants hold whoever writes: entries balance, and no
balance other than the external deposits account ever goes negative."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy import Insert, Select, TextClause, Update, bindparam, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from shared.amounts import plain
from shared.clock import Clock
from shared.db import upsert_insert
from shared.ledger import EXTERNAL_ACCOUNT
from shared.models import Balance, LedgerPosting
from shared.paper.ledger import FREE, InsufficientBalance, JournalEntry, LedgerError

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class BalanceView:
    account_id: str
    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


class Movement:
    """What journal entries do to the database, made from their postings: per (account, asset) the change of
    free and locked (``deltas``, in key order) and the ``ledger_postings`` rows. Every path that writes entries
    applies exactly these: ``SqlLedger.apply`` on either database, and the gateway's one-statement acceptance
    of a paper order on PostgreSQL (``pg_apply_ctes``, fed by ``pg_params``); ``checked`` then holds the
    balances it leaves to the ledger's rule."""

    __slots__ = ("deltas", "postings")

    def __init__(self, entries: Sequence[JournalEntry]) -> None:
        deltas: dict[tuple[str, str], list[Decimal]] = {}
        postings: list[dict[str, object]] = []
        for entry in entries:
            if not entry.is_balanced():
                raise LedgerError(f"{entry.kind} {entry.ref} does not balance")
            ref = entry.ref[:64]
            for p in entry.postings:
                d = deltas.setdefault((p.account, p.asset), [ZERO, ZERO])
                d[0 if p.bucket == FREE else 1] += p.amount
                postings.append(
                    {
                        "entry_kind": entry.kind,
                        "ref": ref,
                        "account_id": p.account,
                        "asset": p.asset,
                        "bucket": p.bucket,
                        "amount": p.amount,
                    }
                )
        self.deltas = {k: (deltas[k][0], deltas[k][1]) for k in sorted(deltas)}
        self.postings = postings

    def pg_rows(self) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
        """The deltas and the postings as rows for PostgreSQL's ``json_to_recordset`` (amounts as plain digits)."""
        deltas: list[dict[str, object]] = [
            {"account_id": a, "asset": s, "free": _digits(f), "locked": _digits(lk)}
            for (a, s), (f, lk) in self.deltas.items()
        ]
        return deltas, [{**p, "amount": _digits(p["amount"])} for p in self.postings]

    def pg_params(self) -> dict[str, str]:
        """The ``:deltas`` and ``:postings`` parameters of ``pg_apply_ctes`` (JSON)."""
        deltas, postings = self.pg_rows()
        return {"deltas": orjson.dumps(deltas).decode(), "postings": orjson.dumps(postings).decode()}

    def checked(
        self, after: Mapping[tuple[str, str], tuple[Decimal, Decimal]], *, check_funds: bool
    ) -> list[BalanceView]:
        """The balances the movement left (``after``: (free, locked) per key), in key order, once ``_check``
        passed each: with ``check_funds`` a short free balance is ``InsufficientBalance``, else ``LedgerError``;
        the caller's transaction then rolls the writes back."""
        out: list[BalanceView] = []
        for key, (free_delta, _) in self.deltas.items():
            free, locked = after[key]
            _check(key, free, locked, free_delta, check_funds=check_funds)
            out.append(BalanceView(key[0], key[1], free, locked))
        return out


def _digits(amount: object) -> str:
    assert isinstance(amount, Decimal)
    return format(amount, "f")


PG_DELTA_COLUMNS = "account_id VARCHAR, asset VARCHAR, free NUMERIC, locked NUMERIC"
PG_POSTING_COLUMNS = (
    "entry_kind VARCHAR, ref VARCHAR, account_id VARCHAR, asset VARCHAR, bucket VARCHAR, amount NUMERIC"
)


def pg_apply_ctes(deltas: str | None = None, postings: str | None = None) -> str:
    """Data-modifying CTEs (PostgreSQL) that apply ``Movement``s: ``moved`` moves every balance with one upsert
    (rows taken in key order, so writers never deadlock; a missing row is created), returning the balances
    after; ``posted`` adds the postings. ``deltas`` and ``postings``: FROM items with the ``pg_rows`` columns
    and ``ts``, by default one movement's parameters (``:deltas``, ``:postings``: ``pg_params``; ``:now``); a
    statement applying several movements passes its own (no two deltas of one balance). Nothing is checked
    here: ``Movement.checked`` holds what ``moved`` returns to the ledger's rule and raises, so the caller's
    transaction rolls the statement back."""
    now = "CAST(:now AS TIMESTAMPTZ) AS ts"
    # interpolated: FROM items and column lists written in code; every value is a bound parameter
    param_deltas = f"(SELECT *, {now} FROM json_to_recordset(CAST(:deltas AS JSON)) AS j({PG_DELTA_COLUMNS}))"  # noqa: S608
    param_postings = (
        f"(SELECT *, {now} FROM json_to_recordset(CAST(:postings AS JSON)) AS j({PG_POSTING_COLUMNS}))"  # noqa: S608
    )
    deltas, postings = deltas or param_deltas, postings or param_postings
    return f"""moved AS (
  INSERT INTO balances AS b (account_id, asset, free, locked, updated_at)
  SELECT d.account_id, d.asset, d.free, d.locked, d.ts FROM {deltas} AS d
   ORDER BY d.account_id, d.asset
  ON CONFLICT (account_id, asset) DO UPDATE
     SET free = b.free + excluded.free, locked = b.locked + excluded.locked, updated_at = excluded.updated_at
  RETURNING b.account_id, b.asset, b.free, b.locked
), posted AS (
  INSERT INTO ledger_postings (entry_kind, ref, account_id, asset, bucket, amount, ts)
  SELECT p.entry_kind, p.ref, p.account_id, p.asset, p.bucket, p.amount, p.ts FROM {postings} AS p
)"""  # noqa: S608


def pg_balance_payload(rows: str) -> str:
    """``balance_payload`` in PostgreSQL (a JSONB array), over ``rows`` (account_id, asset, free, locked), for
    a statement that writes its own BALANCE_UPDATE: ``trim_scale(x)::text`` is ``plain(x)``."""
    fields = ", ".join(f"'{name}', trim_scale({expr})::text" for name, expr in BALANCE_AMOUNTS)
    agg = f"jsonb_agg(jsonb_build_object('asset', r.asset, {fields}) ORDER BY r.account_id, r.asset)"
    return f"SELECT coalesce({agg}, '[]'::jsonb) FROM {rows} AS r"  # noqa: S608


@functools.cache
def _apply_pg() -> TextClause:
    """``SqlLedger.apply`` on PostgreSQL: one statement, built once (untyped: the amounts come back as exact
    Decimals from the driver, and typed result columns would cost a cache-key walk per execution)."""
    return text(f"WITH {pg_apply_ctes()} SELECT account_id, asset, free, locked FROM moved")  # noqa: S608


_BALANCES = Balance.__table__  # type: ignore[attr-defined]


@functools.cache
def _sqlite_ensure() -> Insert:
    """The balance rows an apply moves, created at zero where missing."""
    return upsert_insert("sqlite")(_BALANCES).on_conflict_do_nothing(index_elements=["account_id", "asset"])


@functools.cache
def _sqlite_read() -> Select[Any]:
    t = _BALANCES
    return select(t.c.account_id, t.c.asset, t.c.free, t.c.locked).where(
        tuple_(t.c.account_id, t.c.asset).in_(bindparam("keys", expanding=True))
    )


@functools.cache
def _sqlite_write() -> Update:
    t = _BALANCES
    return (
        update(t)
        .where(t.c.account_id == bindparam("k_account"), t.c.asset == bindparam("k_asset"))
        .values(free=bindparam("free"), locked=bindparam("locked"), updated_at=bindparam("now"))
    )


class SqlLedger:
    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.clock = clock

    async def apply(self, entries: Sequence[JournalEntry], *, check_funds: bool = False) -> list[BalanceView]:
        """Apply entries atomically (within the caller's transaction); returns the touched balances.

        With `check_funds`, a free balance that would go negative is the client's problem (InsufficientBalance,
        422), not an invariant violation. On PostgreSQL one statement moves the balances and adds the postings
        (``pg_apply_ctes``), then the balances are checked (an error leaves the rollback to the caller); on
        SQLite the rows are locked, checked, then written."""
        if not entries:
            return []
        movement = Movement(entries)
        now = self.clock.now()
        if self.session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]
            rows = (await self.session.execute(_apply_pg(), {**movement.pg_params(), "now": now})).all()
            return movement.checked(
                {(r.account_id, r.asset): (r.free, r.locked) for r in rows}, check_funds=check_funds
            )
        # SQLite: the unit of work holds the database's one write lock (BEGIN IMMEDIATE), so read, check and
        # write need no row locks. Core statements built once, like PostgreSQL's: the ORM's row objects, flush
        # and per-call cache keys cost more than the SQL (issue #16). Like PostgreSQL's path, this leaves Balance
        # objects already in the session as they were (``balances`` reads with populate_existing).
        keys = list(movement.deltas)
        await self.session.execute(
            _sqlite_ensure(),
            [{"account_id": a, "asset": s, "free": ZERO, "locked": ZERO, "updated_at": now} for a, s in keys],
        )
        current = {
            (r.account_id, r.asset): (r.free, r.locked)
            for r in await self.session.execute(_sqlite_read(), {"keys": keys})
        }
        after = {k: (current[k][0] + f, current[k][1] + lk) for k, (f, lk) in movement.deltas.items()}
        out = movement.checked(after, check_funds=check_funds)
        await self.session.execute(
            _sqlite_write(),
            [
                {
                    "k_account": v.account_id,
                    "k_asset": v.asset,
                    "free": v.free,
                    "locked": v.locked,
                    "now": now,
                }
                for v in out
            ],
        )
        await self.session.execute(
            LedgerPosting.__table__.insert(),  # type: ignore[attr-defined]
            [{**p, "ts": now} for p in movement.postings],
        )
        return out

    async def balances(self, account_id: str) -> list[BalanceView]:
        result = await self.session.execute(
            select(Balance)
            .where(col(Balance.account_id) == account_id)
            .order_by(Balance.asset)
            .execution_options(
                populate_existing=True
            )  # rows may have changed under the identity map (_apply_pg)
        )
        return [BalanceView(b.account_id, b.asset, b.free, b.locked) for b in result.scalars()]

    async def totals(self) -> dict[str, Decimal]:
        """Per asset, the sum over every account except the external one (equals net deposits)."""
        out: dict[str, Decimal] = {}
        for b in (
            await self.session.execute(select(Balance).execution_options(populate_existing=True))
        ).scalars():
            if b.account_id != EXTERNAL_ACCOUNT:
                out[b.asset] = out.get(b.asset, ZERO) + b.free + b.locked
        return out


def _check(
    key: tuple[str, str], free: Decimal, locked: Decimal, free_delta: Decimal, *, check_funds: bool
) -> None:
    """No balance but the external account's may go negative: with ``check_funds`` a short free balance is the
    client's problem (InsufficientBalance, 422, naming what was free), otherwise an invariant violation."""
    if (free < 0 or locked < 0) and key[0] != EXTERNAL_ACCOUNT:
        if check_funds and free_delta < 0 and free < 0:
            raise InsufficientBalance(key[0], key[1], -free_delta, free - free_delta)
        raise LedgerError(f"{key[0]} {key[1]} would become {free}/{locked}")


# A balance as events show it: its asset, then these amounts, in plain digits. One list for both renderings:
# ``balance_payload`` (Python, from a ``BalanceView``'s attributes) and ``pg_balance_payload`` (PostgreSQL, from
# the SQL expression over rows ``r`` of (account_id, asset, free, locked)).
BALANCE_AMOUNTS = (("free", "r.free"), ("locked", "r.locked"), ("total", "r.free + r.locked"))


def balance_payload(views: Iterable[BalanceView]) -> list[dict[str, str]]:
    return [
        {"asset": v.asset, **{name: plain(getattr(v, name)) for name, _ in BALANCE_AMOUNTS}} for v in views
    ]
