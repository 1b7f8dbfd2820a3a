"""Wiring the price feed to the rest of the system: ticks, candles and marks onto the bus and the market
data store, candles into the database, positions loaded from the database and kept current from the fill-
driven POSITION_UPDATE events the execution worker commits. Runs as `tradebridge pricefeed` or inside `up`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import TextClause, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlmodel import col, select

from pricefeed.domain.candles import Candle, CandleAggregator, Interval
from pricefeed.domain.marking import MarkingEngine, PositionUpdate
from pricefeed.domain.staleness import PriceBook
from pricefeed.domain.ticks import Tick
from pricefeed.follow import CatchUp, stop_tasks
from pricefeed.service import PriceFeedService
from pricefeed.sources import build_source
from pricefeed.testnet_market import start_testnet_market
from shared.amounts import plain
from shared.bus import Bus
from shared.bus.base import BusMessage
from shared.clock import Clock
from shared.db import pg_json, unit_of_work, upsert_insert
from shared.marketdata import MarketData
from shared.models import CandleRow, Position
from shared.positions import PositionSnapshot
from shared.settings import Settings
from shared.streams import (
    MARKET_CANDLES,
    MARKET_TICKER,
    MARKET_TRADES,
    PRIVATE_EVENTS,
    position_marks,
    public_event,
)

log = structlog.get_logger(__name__)

STALE_AFTER = timedelta(seconds=10)
HISTORY_CANDLES = 500  # backfilled at start per symbol and interval (the chart's first screen and some more)


@dataclass(frozen=True, slots=True)
class PricefeedParts:
    """All the price feed uses, filled in by the composition root."""

    settings: Settings
    clock: Clock
    engine: AsyncEngine  # its dialect picks the candle upsert
    sessions: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]
    bus: Bus
    market_data: MarketData


class BusSink:
    """Publishes the feed's outputs. Marks are superseded by the next one, so they go straight to the
    bus (no outbox, no per-user mirror); fill-driven updates were already committed by the worker."""

    def __init__(self, rt: PricefeedParts) -> None:
        self.rt = rt

    async def publish_ticks(self, ticks: Sequence[Tick]) -> None:
        items = []
        for t in ticks:
            data = {
                "symbol": t.symbol,
                "price": plain(t.price),
                "ts": t.ts.isoformat(),
                "source": t.source,
                "stale": False,
            }
            await self.rt.market_data.put("ticker", t.symbol, data)
            items.append((MARKET_TICKER, public_event("TICKER", t.symbol, t.ts, data)))
        await self.rt.bus.publish_many(items)

    async def publish_stale(self, symbol: str, price: Decimal, ts: Any, source: str) -> None:
        data = {
            "symbol": symbol,
            "price": plain(price),
            "ts": ts.isoformat(),
            "source": source,
            "stale": True,
        }
        await self.rt.market_data.put("ticker", symbol, data)
        await self.rt.bus.publish(MARKET_TICKER, public_event("TICKER", symbol, self.rt.clock.now(), data))

    async def publish_candles(self, candles: Sequence[Candle]) -> None:
        await self.rt.bus.publish_many(
            [
                (
                    MARKET_CANDLES,
                    public_event("CANDLE", c.symbol, c.start, candle_payload(c), interval=str(c.interval)),
                )
                for c in candles
            ]
        )

    async def publish_positions(self, updates: Sequence[PositionUpdate]) -> None:
        """One bus entry for the whole chunk (``shared.streams.position_marks``), not one per position."""
        if not updates:
            return
        marks = position_marks(
            self.rt.clock.now(), ((u.user_id, u.updated_at, mark_payload(u)) for u in updates)
        )
        await self.rt.bus.publish(PRIVATE_EVENTS, marks)


def candle_payload(c: Candle) -> dict[str, Any]:
    return {
        "symbol": c.symbol,
        "interval": str(c.interval),
        "start": c.start.isoformat(),
        "open": plain(c.open),
        "high": plain(c.high),
        "low": plain(c.low),
        "close": plain(c.close),
        "volume": plain(c.volume),
        "trade_count": c.trade_count,
        "closed": c.closed,
    }


def mark_payload(u: PositionUpdate) -> dict[str, Any]:
    return {
        "symbol": u.symbol,
        "mode": u.mode,
        "quantity": plain(u.quantity),
        "avg_entry_price": plain(u.avg_entry_price),
        "mark_price": plain(u.mark_price),
        "unrealized_pnl": plain(u.unrealized_pnl),
        "realized_pnl": plain(u.realized_pnl),
        "updated_at": u.updated_at.isoformat(),
        "source": "mark",
    }


class SqlCandleStore:
    """Candles in the database. The open candles change on every tick and trade; they are kept here and
    written together, at most once per `min_interval_s` (and whenever one closes), in one transaction with the
    latest state of every candle changed since the last write. Per candle, throttled updates were dropped, and
    each symbol's tick was its own transaction (issue #16: three transactions a second on an idle system)."""

    def __init__(self, rt: PricefeedParts, *, min_interval_s: float = 1.0) -> None:
        self.rt = rt
        self.min_interval_s = min_interval_s
        self._dirty: dict[tuple[str, str, object], Candle] = {}  # changed since the last write
        self._written_at = float("-inf")

    async def upsert(self, candle: Candle) -> None:
        await self.upsert_many([candle])

    async def upsert_many(self, candles: Sequence[Candle]) -> None:
        """Note what a tick or trade changed; write everything noted once the interval passed or one closed."""
        for candle in candles:
            self._dirty[(candle.symbol, str(candle.interval), candle.start)] = candle
        now = self.rt.clock.monotonic()
        if not self._dirty or (
            now - self._written_at < self.min_interval_s and not any(c.closed for c in candles)
        ):
            return
        due, self._dirty = self._dirty, {}
        self._written_at = now
        try:
            async with unit_of_work(self.rt.sessions) as session:
                await _write_candles(session, list(due.values()), update=True)
        except BaseException:
            for key, candle in due.items():  # not written: the next write takes them, unless superseded
                self._dirty.setdefault(key, candle)
            raise

    async def insert_missing(self, candles: Sequence[Candle]) -> None:
        if not candles:
            return
        async with unit_of_work(self.rt.sessions) as session:
            await _write_candles(session, candles, update=False)

    async def recent(self, symbol: str, interval: Interval, limit: int) -> list[Candle]:
        async with self.rt.read_sessions() as session:
            rows = (
                await session.execute(
                    select(CandleRow)
                    .where(col(CandleRow.symbol) == symbol, col(CandleRow.interval) == str(interval))
                    .order_by(col(CandleRow.start).desc())
                    .limit(limit)
                )
            ).scalars()
            return [
                Candle(
                    r.symbol,
                    Interval(r.interval),
                    r.start,
                    r.open,
                    r.high,
                    r.low,
                    r.close,
                    r.volume,
                    r.trade_count,
                    r.closed,
                )
                for r in reversed(list(rows))
            ]


_CANDLE_KEY = ("symbol", "interval", "start")
_CANDLE_VALUES = ("open", "high", "low", "close", "volume", "trade_count", "closed")


@functools.cache
def _write_candles_pg(update: bool) -> TextClause:
    """The candles as one statement with one JSON parameter: ``executemany`` (a pipelined bind per row) did not
    always end when cancelled (MagicStack/asyncpg#873, #1265): the start-up backfill's 9,000 rows held an app's
    shutdown past 20 s in CI, twice."""
    cols = ", ".join(f'"{c}"' for c in (*_CANDLE_KEY, *_CANDLE_VALUES))
    key = ", ".join(f'"{c}"' for c in _CANDLE_KEY)
    then = (
        "DO UPDATE SET " + ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in _CANDLE_VALUES)
        if update
        else "DO NOTHING"
    )
    table = CandleRow.__tablename__
    return text(
        f"INSERT INTO {table} ({cols}) SELECT {cols}"  # noqa: S608 (names from the model; values bound)
        f" FROM json_populate_recordset(NULL::{table}, CAST(:rows AS JSON)) ON CONFLICT ({key}) {then}"
    )


async def _write_candles(session: AsyncSession, candles: Sequence[Candle], *, update: bool) -> None:
    """Candles inserted, and those stored already updated (``update``) or kept."""
    rows = [_row(c) for c in candles]
    if session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]
        await session.execute(_write_candles_pg(update), {"rows": pg_json(rows)})
        return
    stmt = upsert_insert(session.bind.dialect.name)(CandleRow)  # type: ignore[union-attr]
    if update:
        stmt = stmt.on_conflict_do_update(
            index_elements=list(_CANDLE_KEY), set_={k: stmt.excluded[k] for k in _CANDLE_VALUES}
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=list(_CANDLE_KEY))
    await session.execute(stmt, rows)


def _row(candle: Candle) -> dict[str, Any]:
    return {
        "symbol": candle.symbol,
        "interval": str(candle.interval),
        "start": candle.start,
        "open": candle.open,
        "high": candle.high,
        "low": candle.low,
        "close": candle.close,
        "volume": candle.volume,
        "trade_count": candle.trade_count,
        "closed": candle.closed,
    }


def snapshot_from(user_id: str, data: dict[str, Any]) -> PositionSnapshot:
    return PositionSnapshot(
        user_id,
        str(data["mode"]),
        str(data["symbol"]),
        Decimal(data["quantity"]),
        Decimal(data["avg_entry_price"]),
        Decimal(data["cost_basis"]),
        Decimal(data["realized_pnl"]),
        Decimal(data["fees_paid"]),
    )


class PriceFeedRunner:
    def __init__(self, rt: PricefeedParts) -> None:
        self.rt = rt
        s = rt.settings
        self.sink = BusSink(rt)
        self.book = PriceBook(rt.clock, stale_after=STALE_AFTER)
        self.engine = MarkingEngine(rt.clock)
        # Fill-driven position changes (committed by the worker) and paper trades (candle volume), read when the
        # feed uses them: before each tick and flush.
        self.inputs = CatchUp(rt.bus, [PRIVATE_EVENTS, MARKET_TRADES], self._apply)
        self.service = PriceFeedService(
            build_source(
                s.pricefeed_source,
                symbols=s.symbols,
                clock=rt.clock,
                binance_testnet_url=s.binance_testnet_url,
                replay_retime=True,
            ),
            rt.clock,
            self.sink,
            book=self.book,
            candles=CandleAggregator(),
            engine=self.engine,
            candle_store=SqlCandleStore(rt),
            inputs=self.inputs.catch_up,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._stale: set[str] = set()

    async def start(self) -> None:
        # The streams' ends before the positions are loaded: a fill committed in between is applied again.
        await self.inputs.start()
        await self._load_positions()  # frozen with the rest of start-up by the composition root
        self._tasks = [
            asyncio.create_task(self.service.run(history=HISTORY_CANDLES), name="pricefeed"),
            asyncio.create_task(self._watch_staleness(), name="pricefeed-stale"),
        ]

    async def stop(self) -> None:
        self.service.stop()
        await stop_tasks(self._tasks)

    async def _load_positions(self) -> None:
        async with self.rt.read_sessions() as session:
            rows = (await session.execute(select(Position))).scalars().all()
        self.engine.load(
            PositionSnapshot(
                r.user_id,
                r.mode,
                r.symbol,
                r.quantity,
                r.avg_entry_price,
                r.cost_basis,
                r.realized_pnl,
                r.fees_paid,
            )
            for r in rows
        )

    async def _apply(self, msgs: list[BusMessage]) -> None:
        for m in msgs:
            try:
                if m.stream == MARKET_TRADES:
                    d = m.data.get("data") or {}
                    ts = d.get("ts")  # read up to a tick later: its own time puts it in its candle
                    await self.service.on_market_trade(
                        str(m.data["symbol"]),
                        Decimal(d["price"]),
                        Decimal(d["quantity"]),
                        datetime.fromisoformat(ts) if ts else self.rt.clock.now(),
                    )
                elif (
                    m.data.get("type") == "POSITION_UPDATE"
                    and (m.data.get("data") or {}).get("source") == "fill"
                ):
                    self.engine.load([snapshot_from(str(m.data["user_id"]), dict(m.data["data"]))])
            except Exception:
                log.exception("pricefeed: could not apply an event", stream=m.stream, id=m.id)

    async def _watch_staleness(self) -> None:
        """A price older than STALE_AFTER is published as stale (the market maker pulls its quotes and the
        gateway refuses it as a market-order reference) until a fresh tick arrives."""
        while True:
            await asyncio.sleep(1.0)
            for symbol in self.rt.settings.symbols:
                mark = self.book.mark(symbol)
                if mark is None:
                    continue
                if mark.stale and symbol not in self._stale:
                    self._stale.add(symbol)
                    log.warning("price is stale", symbol=symbol, age_s=mark.age.total_seconds())
                    with contextlib.suppress(Exception):
                        await self.sink.publish_stale(symbol, mark.price, mark.ts, mark.source)
                elif not mark.stale:
                    self._stale.discard(symbol)


async def start_pricefeed(parts: PricefeedParts, stack: AsyncExitStack) -> PriceFeedRunner:
    """Start the feed; it stops when the stack closes."""
    runner = PriceFeedRunner(parts)
    await runner.start()
    stack.push_async_callback(runner.stop)
    await start_testnet_market(parts, stack)  # the testnet venue's own market, beside the paper feed
    return runner
