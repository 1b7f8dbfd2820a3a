"""The paper ledger in the database: journal entries from the domain (`execution.paper.ledger`) applied to
`balances` under row locks, every posting kept in `ledger_postings`.

Both the gateway (reservations at acceptance, starting deposits) and the execution worker (settlement,
release) write through here, so the same invariants hold whoever writes: entries balance, and no
balance other than the external deposits account ever goes negative."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from execution.paper.ledger import EXTERNAL_ACCOUNT, FREE, InsufficientBalance, JournalEntry, LedgerError
from shared.amounts import plain
from shared.clock import Clock
from shared.db import upsert_insert
from shared.models import Balance, LedgerPosting

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


class SqlLedger:
    def __init__(self, session: AsyncSession, clock: Clock) -> None:
        self.session = session
        self.clock = clock

    async def apply(self, entries: Sequence[JournalEntry], *, check_funds: bool = False) -> list[BalanceView]:
        """Apply entries atomically (within the caller's transaction); returns the touched balances.

        With `check_funds`, a free balance that would go negative is the client's problem (InsufficientBalance,
        422), not an invariant violation."""
        if not entries:
            return []
        deltas: dict[tuple[str, str], list[Decimal]] = {}
        now = self.clock.now()
        postings: list[dict[str, object]] = []
        for entry in entries:
            if not entry.is_balanced():
                raise LedgerError(f"{entry.kind} {entry.ref} does not balance")
            for p in entry.postings:
                d = deltas.setdefault((p.account, p.asset), [ZERO, ZERO])
                d[0 if p.bucket == FREE else 1] += p.amount
            postings += self._posting_rows(entry, now)
        if self.session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]
            out = await self._apply_pg(deltas, now, check_funds=check_funds)
            await self.session.execute(LedgerPosting.__table__.insert(), postings)  # type: ignore[attr-defined]
            return out
        rows = await self._lock_rows(sorted(deltas), now)
        out: list[BalanceView] = []
        for key in sorted(deltas):
            row = rows[key]
            free = row.free + deltas[key][0]
            locked = row.locked + deltas[key][1]
            _check(key, free, locked, deltas[key][0], check_funds=check_funds)
            row.free, row.locked, row.updated_at = free, locked, now
            out.append(BalanceView(key[0], key[1], free, locked))
        await self.session.execute(LedgerPosting.__table__.insert(), postings)  # type: ignore[attr-defined]
        await self.session.flush()
        return out

    async def _apply_pg(
        self, deltas: dict[tuple[str, str], list[Decimal]], now: object, *, check_funds: bool
    ) -> list[BalanceView]:
        """PostgreSQL: every balance moved by one ``INSERT ... ON CONFLICT DO UPDATE SET free = free + delta
        ... RETURNING``, rows taken in key order (as ``_lock_rows`` does, so writers never deadlock), instead of
        creating missing rows, locking them with a SELECT and writing them back. A balance that went negative
        raises the same errors as the general path; the caller's transaction then rolls the statement back."""
        table = Balance.__table__  # type: ignore[attr-defined]
        keys = sorted(deltas)
        stmt = pg_insert(table).values(
            [
                {
                    "account_id": a,
                    "asset": s,
                    "free": deltas[(a, s)][0],
                    "locked": deltas[(a, s)][1],
                    "updated_at": now,
                }
                for a, s in keys
            ]
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["account_id", "asset"],
            set_={
                "free": table.c.free + stmt.excluded.free,
                "locked": table.c.locked + stmt.excluded.locked,
                "updated_at": stmt.excluded.updated_at,
            },
        ).returning(table.c.account_id, table.c.asset, table.c.free, table.c.locked)
        after = {(r.account_id, r.asset): r for r in (await self.session.execute(stmt)).all()}
        out: list[BalanceView] = []
        for key in keys:
            row = after[key]
            free, locked = row.free, row.locked
            _check(key, free, locked, deltas[key][0], check_funds=check_funds)
            out.append(BalanceView(key[0], key[1], free, locked))
        return out

    @staticmethod
    def _posting_rows(entry: JournalEntry, now: object) -> list[dict[str, object]]:
        return [
            {
                "entry_kind": entry.kind,
                "ref": entry.ref[:64],
                "account_id": p.account,
                "asset": p.asset,
                "bucket": p.bucket,
                "amount": p.amount,
                "ts": now,
            }
            for p in entry.postings
        ]

    async def _lock_rows(self, keys: list[tuple[str, str]], now: object) -> dict[tuple[str, str], Balance]:
        insert = upsert_insert(self.session.bind.dialect.name)  # type: ignore[union-attr]
        stmt = insert(Balance).values(
            [{"account_id": a, "asset": s, "free": ZERO, "locked": ZERO, "updated_at": now} for a, s in keys]
        )
        await self.session.execute(stmt.on_conflict_do_nothing(index_elements=["account_id", "asset"]))
        # Rows are locked in key order, so two writers never wait on each other in a cycle.
        result = await self.session.execute(
            select(Balance)
            .where(tuple_(Balance.account_id, Balance.asset).in_(keys))
            .order_by(Balance.account_id, Balance.asset)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return {(b.account_id, b.asset): b for b in result.scalars()}

    async def balances(self, account_id: str) -> list[BalanceView]:
        result = await self.session.execute(
            select(Balance)
            .where(Balance.account_id == account_id)
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


def _check(key: tuple[str, str], free: Decimal, locked: Decimal, free_delta: Decimal, *, check_funds: bool) -> None:
    """No balance but the external account's may go negative: with ``check_funds`` a short free balance is the
    client's problem (InsufficientBalance, 422, naming what was free), otherwise an invariant violation."""
    if (free < 0 or locked < 0) and key[0] != EXTERNAL_ACCOUNT:
        if check_funds and free_delta < 0 and free < 0:
            raise InsufficientBalance(key[0], key[1], -free_delta, free - free_delta)
        raise LedgerError(f"{key[0]} {key[1]} would become {free}/{locked}")


def balance_payload(views: Iterable[BalanceView]) -> list[dict[str, str]]:
    return [
        {"asset": v.asset, "free": plain(v.free), "locked": plain(v.locked), "total": plain(v.total)}
        for v in views
    ]
