"""Equity snapshots: every paper account's value in its quote asset (``shared.equity``), written every
``interval_s`` (on interval boundaries counted from the epoch) and after its fills (the worker's committed
``TRADE`` events: at once after a quiet spell, then at most once per ``fill_window_s`` for all the accounts
that filled meanwhile, each with its last trade id), and deleted after the retention so the table stays bounded. Assembled and started
by the composition root (`up` and `tradebridge pricefeed`); every write is idempotent (unique per interval or
trade id), so a second process taking the same snapshot changes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from pricefeed.follow import follow, stop_tasks
from shared.bus import Bus
from shared.bus.base import BusMessage
from shared.clock import Clock
from shared.db import unit_of_work, upsert_insert
from shared.equity import asset_prices, interval_start, valuation_quote, value_account
from shared.marketdata import MarketData
from shared.models import Balance, EquitySnapshot, PaperAccount
from shared.streams import PRIVATE_EVENTS

log = structlog.get_logger(__name__)

PAPER = "paper"


@dataclass(frozen=True, slots=True)
class EquityParts:
    """What the snapshots use, filled in by the composition root. ``markets``: symbol -> (base, quote)."""

    clock: Clock
    sessions: async_sessionmaker[AsyncSession]
    bus: Bus
    market_data: MarketData
    markets: Mapping[str, tuple[str, str]]
    dialect: str
    interval_s: float
    retention: timedelta
    # Snapshots after fills: one pass per window for every account that filled in it (a pass per fill was a
    # transaction per order, issue #16).
    fill_window_s: float = 1.0


FOLLOW_COUNT = 500  # private events per read of the fill follower


class EquitySnapshots:
    def __init__(self, parts: EquityParts) -> None:
        self.parts = parts
        self.quote = valuation_quote(parts.markets.values())
        self._tasks: list[asyncio.Task[None]] = []

    async def prices(self) -> dict[str, Decimal]:
        """Each asset's price in the quote asset from the paper venue's last tickers."""
        last = {}
        for symbol in self.parts.markets:
            ticker = await self.parts.market_data.get("ticker", symbol)
            if ticker and ticker.get("price"):
                last[symbol] = Decimal(str(ticker["price"]))
        return asset_prices(self.quote, self.parts.markets, last)

    async def take(self, refs: Mapping[str, str] | None = None, *, reason: str = "interval") -> int:
        """Snapshot the accounts in ``refs`` (user -> trade id, after fills) or, without it, every funded paper
        account (``reason`` interval, ref the interval's start). Returns the accounts valued."""
        now = self.parts.clock.now()
        prices = await self.prices()
        async with unit_of_work(self.parts.sessions) as session:
            stmt = select(Balance)
            if refs is None:
                stmt = stmt.join(PaperAccount, col(PaperAccount.user_id) == col(Balance.account_id))
            else:
                stmt = stmt.where(col(Balance.account_id).in_(list(refs)))
            holdings: dict[str, dict[str, Decimal]] = {}
            for b in (await session.execute(stmt)).scalars():
                held = holdings.setdefault(b.account_id, {})
                held[b.asset] = held.get(b.asset, Decimal(0)) + b.free + b.locked
            if not holdings:
                return 0
            bucket = interval_start(now, self.parts.interval_s).isoformat()
            rows: list[dict[str, Any]] = []
            for user_id, held in sorted(holdings.items()):
                v = value_account(held, prices, self.quote)
                rows.append(
                    {
                        "user_id": user_id,
                        "mode": PAPER,
                        "ts": now,
                        "reason": reason,
                        "ref": bucket if refs is None else refs[user_id],
                        "quote_asset": v.quote,
                        "equity": v.equity,
                        "unpriced": ",".join(v.unpriced) or None,
                    }
                )
            insert = upsert_insert(self.parts.dialect)(EquitySnapshot).on_conflict_do_nothing(
                index_elements=["user_id", "mode", "reason", "ref"]
            )
            await session.execute(insert, rows)
            return len(rows)

    async def prune(self) -> int:
        """Delete the snapshots older than the retention."""
        cutoff: datetime = self.parts.clock.now() - self.parts.retention
        async with unit_of_work(self.parts.sessions) as session:
            result = await session.execute(delete(EquitySnapshot).where(col(EquitySnapshot.ts) < cutoff))
            return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._schedule(), name="equity-schedule"),
            asyncio.create_task(self._follow(), name="equity-fills"),
        ]

    async def stop(self) -> None:
        await stop_tasks(self._tasks)

    async def _schedule(self) -> None:
        """A snapshot of every account at each interval boundary, then the retention's delete."""
        interval = self.parts.interval_s
        while True:
            now = self.parts.clock.now()
            following = interval_start(now, interval) + timedelta(seconds=interval)
            await asyncio.sleep(max((following - now).total_seconds(), 0.0))
            try:
                await self.take()
                await self.prune()
            except Exception:
                log.exception("equity snapshots: the scheduled snapshot failed")

    async def _follow(self) -> None:
        """Snapshots of the accounts that filled (the TRADE events are published after the worker's commit, so
        its balances already hold the fill): the first fill after a quiet window at once, later ones gathered
        until the window since the last pass ends, then one pass for all of them. Within a window nothing read
        is acted on before it ends, so the follower waits for its end and then reads what gathered in a few
        reads: a read per event was ~200 bus round trips a second at 100 orders/s (issue #16)."""
        loop = asyncio.get_running_loop()
        pending: dict[str, str] = {}  # user -> the last trade id since the last pass
        next_pass = float("-inf")  # loop time from which the next pass may run

        def wait_ms() -> int:
            return 1000 if not pending else int(max(next_pass - loop.time(), 0.0) * 1000)

        async def on_batch(msgs: list[BusMessage]) -> None:
            nonlocal pending, next_pass
            for m in msgs:
                data = m.data.get("data") or {}
                if m.data.get("type") == "TRADE" and data.get("mode") == PAPER:
                    pending[str(m.data["user_id"])] = str(data["trade_id"])
            now = loop.time()
            if pending and now >= next_pass:
                refs, pending = pending, {}
                next_pass = now + self.parts.fill_window_s
                try:
                    await self.take(refs, reason="fill")
                except Exception:
                    log.exception("equity snapshots: the snapshot after fills failed")
            if len(msgs) < FOLLOW_COUNT:  # caught up: nothing more to read before the window ends
                rest = next_pass - loop.time()
                if rest > 0:
                    await asyncio.sleep(rest)

        await follow(self.parts.bus, [PRIVATE_EVENTS], on_batch, count=FOLLOW_COUNT, block_ms=wait_ms)


async def start_equity_snapshots(parts: EquityParts, stack: AsyncExitStack) -> EquitySnapshots:
    """Start the schedule and the fill follower; they stop when the stack closes."""
    snapshots = EquitySnapshots(parts)
    await snapshots.start()
    stack.push_async_callback(snapshots.stop)
    return snapshots
