"""The execution worker: consumes order commands, routes them by mode to the paper or testnet venue,
persists what happened (orders, fills, ledger, outbox events) and acknowledges only after commit.

Guarantees:
- at-least-once delivery + idempotent handling (`processed_commands`, fills unique per order and trade)
  = every accepted order is executed exactly once;
- the paper books are partitioned by symbol (EXECUTION_PARTITIONS, `shared.streams.CommandRouting`): a
  worker is one partition's, and its books have one writer: its paper task, only while it holds the
  partition's lease (`execution.lease`: advisory locks; SQLite's embedded system has one process anyway);
  a process runs a worker per partition, standing by for those another process holds;
- on start, and after any failed batch, the paper books are rebuilt from the open orders in the database
  before anything else is matched (a rebuild that fails is tried again first), so memory never drifts from
  what was committed;
- recovery does not change outcomes: after a rebuild the market maker quotes again at a fresh price before
  any recovered or new command is matched (on start it waits up to `price_wait_s` for a price), and the
  worker publishes per-symbol liquidity markers (shared.liquidity) that `/readyz` of every gateway reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import socket
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import structlog
from sqlalchemy import ColumnElement, Row, delete, func, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlmodel import col, select

from execution.book_snapshot import BookPublisher
from execution.engine import apply_result, load_orders, mark_and_load
from execution.lease import LeaseConfig, PaperLease
from execution.paper.exchange import Side
from execution.parts import ExecutionParts
from execution.venues.base import EMPTY, OrderChange, Venue, VenueOrder, VenueResult
from execution.venues.paper import SYSTEM_PREFIX, PaperVenue
from shared import liquidity
from shared.amounts import plain
from shared.bus.base import BusMessage, BusUnavailable
from shared.bus.consumer import GroupConsumer
from shared.db import unit_of_work
from shared.ledger import EXTERNAL_ACCOUNT
from shared.ledger_store import SqlLedger
from shared.models import Balance, Fill, Order, ProcessedCommand
from shared.orders import FINAL, Status
from shared.outbox import publish_after_commit
from shared.paper.ledger import JournalEntry, deposit_entry, release_entry
from shared.retry import Backoff, reraise_if_cancelled, retry
from shared.streams import (
    EXECUTION_GROUP,
    MARKET_DEPTH,
    MARKET_TICKER,
    MARKET_TRADES,
    PAPER_VENUE,
    TESTNET_COMMANDS,
    order_command,
    public_event,
)

log = structlog.get_logger(__name__)

# How often the paper task checks its lease between batches (and whether to hand the partition back).
LEASE_CHECK_S = 1.0
# What the market maker is funded with when an asset is not in PAPER_MARKET_MAKER_FUNDING.
MM_FUNDING_DEFAULT = Decimal("100000")
# A stored ticker younger than this is fresh enough to quote around (the price feed's own staleness limit).
FRESH_TICKER = timedelta(seconds=10)
# Public depth and trades go out on the bus at most this often: under load a publication per batch was three
# more Redis round trips per batch (issue #16); the first after a quiet spell goes at once.
MARKET_PUBLISH_S = 0.05
# Waiting for the bus at start: 0.1 s doubling to 5 s, until it answers.
BUS_BACKOFF = Backoff(base=0.1, factor=2.0, cap=5.0)


class DatabaseUnavailable(Exception):
    """A command failed because the database did not answer: it is not a poison command."""


def _connection_error(exc: BaseException) -> bool:
    """Whether `exc` (or what caused it) is a lost or refused database connection."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, OSError):  # ConnectionRefusedError, ConnectionResetError, socket errors
            return True
        e = e.__cause__ or e.__context__
    return False


def _market_maker_only(result: VenueResult) -> bool:
    """A re-quote's result that moved only the market maker's own locks (no user order, fill or trade)."""
    return not (
        result.changes or result.fills or result.public_trades or result.external_orders or result.balances
    )


def consumer_name() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def venue_order(o: Order) -> VenueOrder:
    return VenueOrder(
        order_id=o.id,
        user_id=o.user_id,
        symbol=o.symbol,
        side=o.side,
        type=o.type,
        time_in_force=o.time_in_force,
        quantity=o.quantity,
        price=o.price,
        status=o.status,
        filled_quantity=o.filled_quantity,
        reserved_asset=o.reserved_asset,
        reserved_amount=o.reserved_amount,
        reserved_price_cap=o.reserved_price_cap,
        venue_order_id=o.venue_order_id,
        stop_price=o.stop_price,
        triggered=o.triggered_at is not None,
        replaces=o.replaces,
    )


class ExecutionWorker:
    def __init__(
        self,
        rt: ExecutionParts,
        paper: PaperVenue,
        testnet: Venue | None = None,
        *,
        partition: int = 0,
        consumer: str | None = None,
        batch: int = 200,
        claim_idle_ms: int = 30_000,
        testnet_concurrency: int = 32,
        sweep_interval_s: float = 2.0,
        max_deliveries: int = 5,
        sweep_after_s: float = 5.0,
        testnet_sweep_after_s: float = 30.0,
        price_wait_s: float = 30.0,
    ) -> None:
        self.price_wait_s = price_wait_s
        self.sweep_interval_s = sweep_interval_s
        self.max_deliveries = max_deliveries
        self.sweep_after_s = sweep_after_s
        self.testnet_sweep_after_s = testnet_sweep_after_s
        self._testnet_busy: Counter[str] = Counter()  # orders whose testnet command this worker is handling
        self.rt = rt
        self.paper = paper
        self.testnet = testnet
        self.consumer = consumer or consumer_name()
        self.batch = batch
        self.claim_idle_ms = claim_idle_ms
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._latest_prices: dict[str, Decimal | None] = {}  # to re-quote at; None: the price went stale
        self._prices: dict[str, Decimal | None] = {}  # the last price seen per symbol (kept across rebuilds)
        self._quoted: dict[str, bool] = {}  # the liquidity state last published per symbol
        self._books_stale = True  # the books may differ from the database: rebuilt before anything is matched
        # The market maker's own ledger entries (its quotes' reserves and releases) applied in memory and not
        # written yet: they go with the next batch's transaction, or at the latest before the next book
        # snapshot (`_book_tick`), instead of a transaction per re-quote (issue #16).
        self._mm_held: list[JournalEntry] = []
        # Public market data waiting for its publication (`_publish_market`): the depth of each symbol whose book
        # changed, as last stored, and the trades, in trade order.
        self._market_depths: dict[str, dict[str, Any]] = {}
        self._market_trades: list[dict[str, Any]] = []
        self._market_last = float("-inf")
        self._next_heartbeat = 0.0
        self._price_event = asyncio.Event()
        self._testnet_sem = asyncio.Semaphore(testnet_concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        routing = rt.settings.command_routing
        self.partition = partition
        self.stream = routing.paper_stream(partition)  # this partition's paper commands
        self.lease = PaperLease(
            LeaseConfig(
                partition,
                routing.partitions,
                routing.symbols_of(partition),
                self.consumer,
                own=partition in rt.settings.execution_partition,
            ),
            rt.engine,
            rt.market_data,
            rt.clock,
            sqlite=rt.settings.is_sqlite,
        )
        self.pruned_runs = 0  # runs of the processed-marks pruning (tests wait for one)
        self.ready = asyncio.Event()  # the books are rebuilt (the market maker's quotes may still be coming)
        self._book = BookPublisher(  # for reconciliation
            rt.market_data, rt.clock, self.consumer, partition=partition, partitions=routing.partitions
        )

    @property
    def has_paper_lease(self) -> bool:
        return self.lease.held

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        for stream in (self.stream, TESTNET_COMMANDS):
            await retry(
                functools.partial(self.rt.bus.ensure_group, stream, EXECUTION_GROUP),
                what="creating the command group",
                backoff=BUS_BACKOFF,
                on=BusUnavailable,
                expected=BusUnavailable,
            )
        self._tasks.append(asyncio.create_task(self._paper_loop(), name="paper-loop"))
        self._tasks.append(asyncio.create_task(self._prune_loop(), name="prune-processed-commands"))
        if self.testnet is not None:
            self._tasks.append(asyncio.create_task(self._testnet_loop(), name="testnet-loop"))
        if self.paper.market_maker is not None:
            self._tasks.append(asyncio.create_task(self._ticker_loop(), name="ticker-loop"))

    async def stop(self) -> None:
        self._stopping.set()
        self._price_event.set()
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._tasks.clear()
        if self.has_paper_lease and self.paper.market_maker is not None:
            # Its quotes leave with this process: gateways stop reporting ready at once, not after expiry.
            with contextlib.suppress(Exception):
                now = self.rt.clock.now()
                for symbol in self.rt.markets:
                    await self.rt.market_data.put(
                        liquidity.KIND, symbol, liquidity.marker(symbol, 0, 0, now, self.consumer)
                    )
        await self.lease.release()

    # -- paper ---------------------------------------------------------------------------------------------

    async def _paper_loop(self) -> None:
        if not await self.lease.acquire(self._stopping):
            return
        # The books are rebuilt at the top of the loop's first turn; on start it waits for a price to quote at.
        self._books_stale = True
        rebuild_wait_s = self.price_wait_s
        commands = GroupConsumer(
            self.rt.bus,
            self.stream,
            EXECUTION_GROUP,
            # One name per partition, whoever holds it: a new holder reads what the last one left pending
            # first (in order), at once rather than after `claim_idle_ms`.
            f"paper-{self.lease.name}",
            count=self.batch,
            block_ms=50,
            claim_idle_ms=self.claim_idle_ms,
            claim_every_s=5.0,
        )
        try:
            await self._paper_turns(commands, rebuild_wait_s)
        finally:
            # What was handled is acked on the way out too: a restart would read it again (and find it done).
            with contextlib.suppress(Exception):
                await commands.flush()

    async def _paper_turns(self, commands: GroupConsumer, rebuild_wait_s: float) -> None:
        last_lease_check = last_sweep = asyncio.get_running_loop().time()
        while not self._stopping.is_set():
            try:
                if self._books_stale:
                    # Nothing is matched on books that may hold what the database does not (a batch whose
                    # commit failed or whose outcome is unknown) or miss what it holds (a rebuild that failed
                    # half way, e.g. while the database was still down): rebuilt first, or this turn fails.
                    await self._rebuild_books(wait_s=rebuild_wait_s)
                    rebuild_wait_s = 0.0
                if not commands.draining:
                    now = asyncio.get_running_loop().time()
                    if now - last_lease_check > LEASE_CHECK_S:
                        last_lease_check = now
                        if not await self.lease.keep():
                            if not await self.lease.acquire(self._stopping):
                                return
                            await self._rebuild_books(wait_s=self.price_wait_s)
                            commands.rewind()  # what the last holder left pending comes first
                    if now - last_sweep > self.sweep_interval_s:
                        last_sweep = now
                        await self.sweep_paper()
                msgs = await commands.next_batch()
                if msgs:
                    if any(m.deliveries > self.max_deliveries for m in msgs):
                        await self._isolate(msgs)
                    else:
                        await self.handle_paper(msgs)
                    commands.handled([m.id for m in msgs])  # acked with the next read
                if self._latest_prices:
                    await self._requote()
                await self._publish_market(EMPTY)  # what the last batches left waiting
                await self._heartbeat()
                if self.has_paper_lease:
                    await self._book_tick(changed=bool(msgs))
            except asyncio.CancelledError:
                raise
            except BusUnavailable as exc:
                log.warning("bus unavailable in paper loop", error=str(exc))
                commands.rewind()
                await asyncio.sleep(0.5)
            except Exception as exc:
                # A cancellation that the database layer turned into its own error (a statement cancelled by
                # stop() leaves an invalidated connection: PendingRollbackError) ends the loop too; rebuilding
                # the books first held shutdown up for seconds.
                reraise_if_cancelled(exc)
                waiting = isinstance(exc, DatabaseUnavailable) or self._books_stale
                if isinstance(exc, DatabaseUnavailable):
                    log.warning("database unavailable in paper loop; retrying the batch", error=str(exc))
                elif self._books_stale:
                    log.warning("rebuilding the paper books failed; matching waits for it", error=str(exc))
                else:
                    log.exception("paper batch failed; rebuilding the books from the database")
                # Whatever failed may have changed the books in memory and not in the database: the next turn
                # rebuilds them before it matches anything (issue #20; a rebuild here, on failure, left them
                # empty or half built when the database was still down, and the next batch matched on them).
                self._books_stale = True
                commands.rewind()
                await asyncio.sleep(1.0 if waiting else 0.2)

    async def _rebuild_books(self, *, wait_s: float = 0.0) -> None:
        """Rebuild the books from the database and quote the market maker again. They stay marked stale
        until both succeed, so a failure half way (the database down again) cannot leave them to be matched."""
        self._books_stale = True
        await self.recover_paper()
        self.ready.set()
        await self.restore_liquidity(wait_s=wait_s)
        self._books_stale = False

    async def _isolate(self, msgs: Sequence[BusMessage]) -> None:
        """A batch keeps failing: run its commands one at a time so one poison command cannot block the
        book forever. A command that fails alone is tried once more on rebuilt books, then parked (its order
        settled by `_park`, the error logged for an operator), but only while the database answers: a
        failure that is the database's (seed 22) raises `DatabaseUnavailable`, so the batch stays
        unacknowledged and is handled again once it is back."""
        for m in msgs:
            for last_try in (False, True):
                try:
                    await self.handle_paper([m])
                    break
                except Exception as exc:
                    reraise_if_cancelled(exc)
                    await self._unless_database_down(exc, m)
                    if last_try:
                        log.exception("parking a paper command that fails on its own", command=dict(m.data))
                    else:
                        log.warning("paper command failed alone; trying it once more", error=str(exc))
                # What the failed attempt did to the books in memory is undone before anything runs again.
                await self._rebuild_books()
            else:
                await self._park(m)

    async def _unless_database_down(self, exc: Exception, m: BusMessage) -> None:
        """Raise `DatabaseUnavailable` when `exc` is the database's: a lost or refused connection, or any
        error while a `SELECT 1` on a new session fails too."""
        if not _connection_error(exc) and await self._database_answers():
            return
        log.warning(
            "the database is unavailable; leaving the paper command for redelivery",
            command=dict(m.data),
            error=str(exc),
        )
        raise DatabaseUnavailable(str(exc)) from exc

    async def _database_answers(self) -> bool:
        try:
            async with self.rt.sessions() as session:
                await session.execute(text("SELECT 1"))
            return True
        except Exception as exc:
            reraise_if_cancelled(exc)
            return False

    async def _park(self, m: BusMessage) -> None:
        """Mark a poison command processed and settle its order: a PENDING one is REJECTED (its lock stays
        for the reconciliation report to flag); a PENDING_CANCEL one never stays so: back to its open status
        if it rests in the book (the cancel refused, the user may cancel again), else CANCELED (never placed,
        nothing filled; its lock stays for the report too)."""
        now = self.rt.clock.now()
        reason = "internal error: the order could not be executed"
        async with unit_of_work(self.rt.sessions) as session:
            session.add(ProcessedCommand(command_id=str(m.data.get("command_id")), processed_at=now))
            order = await session.get(Order, str(m.data.get("order_id")), with_for_update=True)
            change: OrderChange | None = None
            reopened: frozenset[str] = frozenset()
            if order is not None and order.status == Status.PENDING:
                change = OrderChange(
                    order.id,
                    Status.REJECTED,
                    order.filled_quantity,
                    order.cumulative_quote,
                    order.avg_price,
                    reason=reason,
                )
            elif order is not None and order.status == Status.PENDING_CANCEL:
                if self.paper.in_book(order.id):
                    status = Status.PARTIALLY_FILLED if order.filled_quantity > 0 else Status.NEW
                    reason = "cancel failed: internal error; the order is still open"
                    reopened = frozenset({order.id})
                else:
                    status = Status.CANCELED
                change = OrderChange(
                    order.id,
                    status,
                    order.filled_quantity,
                    order.cumulative_quote,
                    order.avg_price,
                    reason=reason,
                )
            if order is not None and change is not None:
                await apply_result(
                    session,
                    self.rt.clock,
                    VenueResult(changes=(change,)),
                    orders={order.id: order},
                    reopened=reopened,
                )
        self.rt.relay.notify()

    async def _prune_loop(self) -> None:
        """Delete processed marks older than the retention, every eighth of it (at most every 10 minutes):
        without this `processed_commands` grows by a row per command for ever."""
        retention = self.rt.settings.processed_commands_retention_s
        interval = min(max(retention / 8, 0.5), 600.0)
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=interval)
            if self._stopping.is_set():
                return
            try:
                await self.prune_processed(retention)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("pruning processed command marks failed; retrying at the next run")

    async def prune_processed(self, retention_s: float) -> int:
        """Delete the marks of commands processed more than `retention_s` ago. A mark only has to outlive
        the command's redeliveries (claimed after `claim_idle_ms`, republished by the outbox relay within
        seconds); a command arriving later still finds its order past PENDING and does nothing."""
        cutoff = self.rt.clock.now() - timedelta(seconds=retention_s)
        table = ProcessedCommand.__table__  # type: ignore[attr-defined]
        async with unit_of_work(self.rt.sessions) as session:
            result = await session.execute(delete(table).where(table.c.processed_at < cutoff))
        self.pruned_runs += 1
        return int(getattr(result, "rowcount", 0) or 0)

    async def _unsent(self, mode: str, after_s: float, scope: ColumnElement[bool]) -> Sequence[Row[str, str]]:
        """(id, status) of up to a batch of `mode` orders in `scope` still waiting for a place or cancel
        command `after_s` after their last change: the sweeps' candidates, oldest id first."""
        cutoff = self.rt.clock.now() - timedelta(seconds=after_s)
        async with self.rt.sessions() as session:
            return (
                await session.execute(
                    select(col(Order.id), col(Order.status))
                    .where(
                        col(Order.mode) == mode,
                        col(Order.status).in_([Status.PENDING, Status.PENDING_CANCEL]),
                        scope,
                    )
                    .where(col(Order.updated_at) < cutoff)
                    .order_by(col(Order.id))
                    .limit(self.batch)
                )
            ).all()

    async def sweep_paper(self) -> int:
        """Handle paper orders whose command never arrived (lost with a Redis that restarted empty, say).
        The database is the source of truth and the bus the fast path: handling is idempotent by command id,
        so an order handled here and again from the stream still executes once."""
        rows = await self._unsent(
            "paper",
            self.sweep_after_s,
            col(Order.symbol).in_(list(self.rt.markets)),  # this partition's
        )
        if not rows:
            return 0
        # A PENDING_CANCEL order may never have been placed: its place command comes first.
        commands = [order_command("place", oid, "paper") for oid, st in rows if st != Status.PENDING] + [
            order_command("place" if st == Status.PENDING else "cancel", oid, "paper") for oid, st in rows
        ]
        msgs = [BusMessage(self.stream, "0-0", c) for c in commands]
        await self.handle_paper(msgs)
        log.warning("swept paper orders whose commands had not arrived", count=len(rows))
        return len(rows)

    async def recover_paper(self) -> None:
        """Rebuild the books from the open paper orders, in their book priority; reset the market maker
        (its quotes are gone until `restore_liquidity`)."""
        rt = self.rt
        self.paper.reset(rt.markets, rt.fees)
        self._mm_held = []  # the quotes they reserved for are gone with the reset; the rebuild releases the rest
        async with unit_of_work(rt.sessions) as session:
            rows = (
                (
                    await session.execute(
                        select(Order)
                        .where(
                            col(Order.mode) == "paper",
                            col(Order.status).in_(
                                [Status.NEW, Status.PARTIALLY_FILLED, Status.PENDING_CANCEL]
                            ),
                            col(Order.symbol).in_(list(rt.markets)),  # this partition's books
                        )
                        .where(col(Order.venue_seq).is_not(None))
                        .order_by(col(Order.venue_seq))
                    )
                )
                .scalars()
                .all()
            )
            self.paper.restore(
                (venue_order(o), o.quantity - o.filled_quantity, o.cumulative_quote) for o in rows
            )
            max_seq = await session.scalar(
                select(func.max(col(Order.venue_seq))).where(col(Order.mode) == "paper")
            )
            self.paper.next_seq = int(max_seq or 0)
            # Trade ids ("SYMBOL-n") continue where the last run stopped: every paper trade has a user side.
            for symbol in rt.markets:
                ids = (
                    await session.execute(
                        select(col(Fill.trade_id))
                        .where(col(Fill.mode) == "paper", col(Fill.symbol) == symbol)
                        .order_by(col(Fill.id).desc())
                        .limit(200)
                    )
                ).scalars()
                last = max(
                    (int(t.rsplit("-", 1)[1]) for t in ids if t.rsplit("-", 1)[-1].isdigit()), default=0
                )
                self.paper.exchange.book(symbol).next_trade_id = last + 1
                # stop orders compare new ones with the last trade price (one that would trigger is refused)
                last_price = await session.scalar(
                    select(col(Fill.price))
                    .where(col(Fill.mode) == "paper", col(Fill.symbol) == symbol)
                    .order_by(col(Fill.id).desc())
                    .limit(1)
                )
                if last_price is not None:
                    self.paper.exchange.set_last_price(symbol, last_price)
            if self.paper.market_maker is not None:
                await self._reset_market_maker(session)
        log.info("paper books rebuilt", resting=len(rows))
        await self._publish_liquidity(force=True)

    async def restore_liquidity(self, *, wait_s: float = 0.0) -> None:
        """Quote the market maker's ladder again before matching anything after a rebuild, so a market order
        recovered or placed across a restart fills as it would have without one.

        The price is the last one this worker saw, else the price feed's stored ticker when fresh, else the
        next one on the ticker stream, awaited up to `wait_s` (a restart has none in memory). A symbol with
        no fresh price by then is left unquoted with a warning: matching resumes rather than holding every
        order while the feed is down (as when its price goes stale, which pulls the quotes anyway)."""
        if self.paper.market_maker is None or not self.has_paper_lease:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while True:
            missing = [s for s in self.rt.markets if s not in self._prices]
            for symbol in missing:
                price = await self._stored_price(symbol)
                if price is not None:
                    self._prices.setdefault(symbol, price)
            missing = [s for s in self.rt.markets if s not in self._prices]
            left = deadline - loop.time()
            if not missing or left <= 0 or self._stopping.is_set():
                break
            await self._heartbeat()  # "no quotes" rather than "no worker" while waiting
            self._price_event.clear()
            # asyncio.timeout, not wait_for: Python 3.11's wait_for returns normally when a cancellation comes as
            # a price arrives, and this wait went on until its deadline (then the paper loop, for ever).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(left, 0.5)):
                    await self._price_event.wait()
        if missing:
            log.warning("no fresh price; resuming without market-maker quotes", symbols=missing)
        self._latest_prices = {**self._prices, **self._latest_prices}
        await self._requote()
        await self._publish_liquidity(force=True)

    async def _stored_price(self, symbol: str) -> Decimal | None:
        """The price feed's latest ticker for `symbol` if it is fresh (not stale, recent), else None."""
        try:
            ticker = await self.rt.market_data.get("ticker", symbol)
            if not ticker or ticker.get("stale") or not ticker.get("price") or not ticker.get("ts"):
                return None
            age = self.rt.clock.now() - datetime.fromisoformat(str(ticker["ts"]))
            return Decimal(str(ticker["price"])) if age <= FRESH_TICKER else None
        except Exception as exc:
            log.warning("could not read the stored ticker", symbol=symbol, error=str(exc))
            return None

    async def _publish_liquidity(self, *, force: bool = False) -> None:
        """Record per symbol whether the market maker quotes both sides (for `/readyz` everywhere): on a
        change, and every heartbeat so a marker whose worker died ages out."""
        mm = self.paper.market_maker
        if mm is None or not self.has_paper_lease:
            return
        levels = {s: self._quoted_levels(mm.config.account, s) for s in self.rt.markets}
        state = {s: bids > 0 and asks > 0 for s, (bids, asks) in levels.items()}
        if not force and state == self._quoted:
            return
        self._quoted = state
        self._next_heartbeat = asyncio.get_running_loop().time() + liquidity.HEARTBEAT_S
        now = self.rt.clock.now()
        try:
            for symbol, (bids, asks) in levels.items():
                await self.rt.market_data.put(
                    liquidity.KIND, symbol, liquidity.marker(symbol, bids, asks, now, self.consumer)
                )
        except Exception as exc:
            log.warning("liquidity marker publication failed", error=str(exc))

    def _quoted_levels(self, account: str, symbol: str) -> tuple[int, int]:
        """How many market-maker orders rest on the (bid, ask) side: what readiness means by liquidity."""
        resting = self.paper.exchange.open_orders(account, symbol)
        bids = sum(1 for o in resting if o.side is Side.BUY)
        return (bids, len(resting) - bids)

    async def _heartbeat(self) -> None:
        if self.paper.market_maker is None:
            return
        if asyncio.get_running_loop().time() >= self._next_heartbeat:
            await self._publish_liquidity(force=True)

    async def _reset_market_maker(self, session: Any) -> None:
        """The market maker's resting orders lived only in memory: release their locks, fund it once, load it."""
        mm = self.paper.market_maker
        assert mm is not None
        account = mm.config.account
        ledger = SqlLedger(session, self.rt.clock)
        rows = (
            (await session.execute(select(Balance).where(col(Balance.account_id) == account))).scalars().all()
        )
        entries = [release_entry(account, b.asset, b.locked, "mm-restart") for b in rows if b.locked > 0]
        have = {b.asset for b in rows}
        assets = {r.base_asset for r in self.rt.markets.values()} | {
            r.quote_asset for r in self.rt.markets.values()
        }
        for asset in sorted(assets - have):
            amount = self.rt.settings.paper_market_maker_funding.get(asset, MM_FUNDING_DEFAULT)
            entries.append(deposit_entry(account, asset, amount, f"mm-funding-{asset}"))
        if entries:
            await ledger.apply(entries)
        views = await ledger.balances(account)
        self.paper.ledger.load({(account, v.asset): v.free for v in views})

    async def handle_paper(self, msgs: Sequence[BusMessage]) -> None:
        rt = self.rt
        cmds = [m.data for m in msgs if m.data.get("command_id")]
        if not cmds:
            return
        result = EMPTY
        async with unit_of_work(rt.sessions) as session:
            publish_after_commit(session)  # this batch's events go out right after its commit
            now = rt.clock.now()
            # Marking the commands processed tells, in the round trip that loads their orders, which are new.
            ids = list(dict.fromkeys(str(c["command_id"]) for c in cmds))
            marked = await mark_and_load(session, ids, {str(c["order_id"]) for c in cmds}, now)
            fresh, orders = marked.fresh, marked.orders
            replaced = {o.replaces for o in orders.values() if o.replaces} - orders.keys()
            if replaced:
                orders.update(await load_orders(session, replaced))
            status = {oid: o.status for oid, o in orders.items()}
            spent: dict[tuple[str, str], Decimal] = {}  # what this batch's replacements locked, per balance
            for cmd in cmds:
                cid = str(cmd["command_id"])
                if cid not in fresh:
                    continue
                fresh.discard(cid)  # a command twice in one batch runs once
                order = orders.get(str(cmd["order_id"]))
                if order is None:
                    log.error("command for an unknown order", command_id=cid)
                    continue
                kind = str(cmd["kind"])
                if order.replaces is not None and kind != "cancel":
                    r = await self._paper_replace(session, order, orders, status, spent)
                else:
                    r = self._paper_command(kind, order, status[order.id])
                for c in r.changes:
                    status[c.order_id] = (
                        c.status if c.order_id in status else status.get(c.order_id, c.status)
                    )
                result = result + r
            # What the market maker's re-quotes held back comes first, in the order it happened in memory.
            held, self._mm_held = self._mm_held, []
            try:
                await apply_result(
                    session,
                    rt.clock,
                    VenueResult(journal=tuple(held)) + result,
                    orders=orders,
                    positions=marked.positions,
                )
            except BaseException:
                self._mm_held[:0] = held
                raise
        rt.relay.after_commit(session)
        await self._publish_market(result)

    async def _paper_replace(
        self,
        session: Any,
        new: Order,
        orders: dict[str, Order],
        status: dict[str, str],
        spent: dict[tuple[str, str], Decimal],
    ) -> VenueResult:
        """Cancel-replace on paper, atomically: the old order canceled and the new one placed, the lock moving
        from one to the other in the same journal, or (the old order no longer open, the new one refused or
        not affordable with what the old frees) only the new order REJECTED. Nothing was locked for the new
        order at acceptance, so a refusal releases nothing."""
        current = status.get(new.id)
        if current == Status.PENDING_CANCEL and new.venue_seq is None:  # canceled before it ran
            return VenueResult(changes=(OrderChange(new.id, Status.CANCELED, Decimal(0), Decimal(0), None),))
        if current != Status.PENDING:
            return EMPTY
        old = orders.get(str(new.replaces))
        if (
            old is None
            or status.get(old.id) not in (Status.NEW, Status.PARTIALLY_FILLED)
            or not self.paper.in_book(old.id)
        ):
            reason = f"REPLACE_TARGET_NOT_OPEN: order {new.replaces} is no longer open"
            return VenueResult(
                changes=(OrderChange(new.id, Status.REJECTED, Decimal(0), Decimal(0), None, reason=reason),)
            )
        asset, amount = str(new.reserved_asset), new.reserved_amount or Decimal(0)
        key = (new.user_id, asset)
        free = await session.scalar(
            select(col(Balance.free)).where(
                col(Balance.account_id) == new.user_id, col(Balance.asset) == asset
            )
        )
        free = (free or Decimal(0)) - spent.get(key, Decimal(0))
        freed = self.paper.locked_for(old.id) if old.reserved_asset == asset else Decimal(0)
        if free + freed < amount:
            reason = f"insufficient {asset} balance: needs {plain(amount)}, available {plain(free + freed)}"
            return VenueResult(
                changes=(OrderChange(new.id, Status.REJECTED, Decimal(0), Decimal(0), None, reason=reason),)
            )
        result = self.paper.replace_now(venue_order(old), venue_order(new))
        if any(e.kind == "RESERVE" and e.ref == new.id for e in result.journal):
            spent[key] = spent.get(key, Decimal(0)) + amount - freed
        return result

    def _paper_command(self, kind: str, order: Order, current: str) -> VenueResult:
        vo = venue_order(order)
        if kind == "place":
            if current == Status.PENDING:
                return self.paper.place_now(vo)
            if (
                current == Status.PENDING_CANCEL
                and not self.paper.in_book(order.id)
                and order.venue_seq is None
            ):
                return self.paper.cancel_unplaced(vo)
            return EMPTY
        if kind == "cancel":
            if current in FINAL:
                return EMPTY
            if self.paper.in_book(order.id):
                return self.paper.cancel_now(vo)
            if order.replaces is not None and order.venue_seq is None:
                # a replacement canceled before its replace ran: nothing was locked for it yet
                if current in (Status.PENDING, Status.PENDING_CANCEL):
                    change = OrderChange(order.id, Status.CANCELED, Decimal(0), Decimal(0), None)
                    return VenueResult(changes=(change,))
                return EMPTY
            if current in (Status.PENDING, Status.PENDING_CANCEL) and order.venue_seq is None:
                return self.paper.cancel_unplaced(vo)
            return EMPTY
        log.error("unknown command kind", kind=kind, order_id=order.id)
        return EMPTY

    async def _publish_market(self, result: VenueResult) -> None:
        """Public market data is lossy by nature: published directly, never through the outbox. At most once
        per `MARKET_PUBLISH_S`: what comes sooner waits for the next call (the paper loop makes one per turn,
        at least every `block_ms`), then each changed symbol's latest depth and every trade, in order, in one
        bus call. The stored depth, which the gateway prices and reserves market orders against, is written at
        once: a resting order the user already sees as NEW must be takeable (a market buy against it was
        refused "no market price" for up to one interval)."""
        rt = self.rt
        try:
            for symbol in sorted(result.touched_symbols):
                depth = self._market_depths[symbol] = self.paper.depth(symbol)
                await rt.market_data.put("depth", symbol, depth)
        except Exception as exc:
            log.warning("market depth not stored", error=str(exc))
        self._market_trades += result.public_trades
        if not self._market_depths and not self._market_trades:
            return
        clock = asyncio.get_running_loop().time()
        if clock - self._market_last < MARKET_PUBLISH_S:
            return
        self._market_last = clock
        depths, self._market_depths = self._market_depths, {}
        trades, self._market_trades = self._market_trades, []
        now = rt.clock.now()
        try:
            events = [
                (MARKET_DEPTH, public_event("DEPTH", symbol, now, depth))
                for symbol, depth in sorted(depths.items())
            ]
            by_symbol: dict[str, list[dict[str, Any]]] = {}
            for t in trades:
                by_symbol.setdefault(str(t["symbol"]), []).append(dict(t))
            for symbol, rows in by_symbol.items():
                await rt.market_data.push_trades(symbol, rows)
                events += [(MARKET_TRADES, public_event("MARKET_TRADE", symbol, now, t)) for t in rows]
            await rt.bus.publish_many(events)
        except Exception as exc:
            log.warning("market data publication failed", error=str(exc))

    # -- market maker --------------------------------------------------------------------------------------

    async def _ticker_loop(self) -> None:
        last = "$"
        while not self._stopping.is_set():
            try:
                msgs = await self.rt.bus.read({MARKET_TICKER: last}, count=500, block_ms=1000)
            except BusUnavailable:
                await asyncio.sleep(1.0)
                continue
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("ticker loop failed")
                await asyncio.sleep(1.0)
                continue
            for m in msgs:
                last = m.id
                if m.data.get("venue", PAPER_VENUE) != PAPER_VENUE:
                    continue  # the testnet's own ticker (pricefeed.testnet_market): never a paper price
                symbol = m.data.get("symbol")
                price = (m.data.get("data") or {}).get("price")
                stale = (m.data.get("data") or {}).get("stale")
                if symbol in self.rt.markets and price:
                    # A stale price is never quoted around: the market maker pulls its quotes until fresh.
                    value = None if stale else Decimal(str(price))
                    self._latest_prices[str(symbol)] = self._prices[str(symbol)] = value
                    self._price_event.set()

    async def _requote(self) -> None:
        prices, self._latest_prices = self._latest_prices, {}
        if not self.has_paper_lease:
            return
        result = EMPTY
        for symbol, price in prices.items():
            result = result + self.paper.requote(symbol, price)
        if not result:
            return
        if _market_maker_only(result):
            # Only the market maker's own locks moved (about 4 times a second per symbol round): held back
            # for the next transaction. Nothing is lost with them on a crash: the rebuild releases whatever
            # its account has locked in the database, and no user's balance or order depends on them.
            self._mm_held.extend(result.journal)
        else:  # it filled or triggered a user's order: written now, with what was held back
            await self._write_held(result)
        await self._publish_market(result)
        await self._publish_liquidity()

    async def _write_held(self, result: VenueResult = EMPTY) -> None:
        held, self._mm_held = self._mm_held, []
        try:
            async with unit_of_work(self.rt.sessions) as session:
                await apply_result(session, self.rt.clock, VenueResult(journal=tuple(held)) + result)
        except BaseException:
            self._mm_held[:0] = held
            raise
        # Wakes the relay only if the write made outbox rows (a user's order filled): the market maker's locks
        # make none, and a wake-up per tick was a relay transaction per tick (issue #16).
        self.rt.relay.after_commit(session)

    async def _book_tick(self, *, changed: bool) -> None:
        """Publish the book snapshot for reconciliation, which compares it with the market maker's locks in
        the database: so nothing may be held back when it is taken. While entries are held, the snapshot waits
        for the next batch to write them (a coalesced publication, after a batch), at most until the
        unconditional one (`paper_book.PUBLISH_EVERY_S`), which writes them first."""
        if self._mm_held:
            if not self._book.due(changed=False):
                return
            await self._write_held()
        await self._book.tick(self.paper.exchange, changed=changed)

    # -- testnet -------------------------------------------------------------------------------------------

    async def _testnet_loop(self) -> None:
        commands = GroupConsumer(
            self.rt.bus,
            TESTNET_COMMANDS,
            EXECUTION_GROUP,
            self.consumer,
            count=50,
            block_ms=200,
            claim_idle_ms=self.claim_idle_ms,
        )
        last_sweep = asyncio.get_running_loop().time()
        while not self._stopping.is_set():
            try:
                now = asyncio.get_running_loop().time()
                if now - last_sweep > self.sweep_interval_s and self.has_paper_lease:
                    last_sweep = now
                    await self.sweep_testnet()
                for m in await commands.next_batch():
                    self._testnet_busy[str(m.data.get("order_id"))] += 1
                    await self._testnet_sem.acquire()
                    task = asyncio.create_task(self._testnet_one(m))
                    self._inflight.add(task)
                    task.add_done_callback(self._inflight.discard)
            except asyncio.CancelledError:
                raise
            except BusUnavailable:
                commands.rewind()
                await asyncio.sleep(0.5)
            except Exception:
                log.exception("testnet loop failed")
                await asyncio.sleep(0.5)

    async def _testnet_one(self, msg: BusMessage) -> None:
        try:
            await self.handle_testnet(msg)
            await self.rt.bus.ack(TESTNET_COMMANDS, EXECUTION_GROUP, [msg.id])
        except Exception:
            log.exception("testnet command failed; it stays pending", command=dict(msg.data))
        finally:
            self._testnet_sem.release()
            self._done_with(str(msg.data.get("order_id")))

    def _done_with(self, order_id: str) -> None:
        self._testnet_busy[order_id] -= 1
        if self._testnet_busy[order_id] <= 0:
            del self._testnet_busy[order_id]

    async def sweep_testnet(self) -> int:
        """The paper sweep's twin for testnet orders whose command never arrived (lost with a Redis that
        restarted empty): without it such an order stayed PENDING until the worker restarted (found by
        benchmarks/chaos.py). Only the holder of the paper lease sweeps (one worker in the deployment), after a
        longer wait than paper's (a testnet command may queue behind slow exchange calls), and never an order
        this worker is handling already. Safe beside a late command: handling is idempotent by command id, and
        the venue looks an order up by its client order id before it sends it."""
        rows = await self._unsent("testnet", self.testnet_sweep_after_s, col(Order.external).is_(False))
        todo = [(str(oid), str(st)) for oid, st in rows if oid not in self._testnet_busy]
        for oid, st in todo:
            # A PENDING_CANCEL order may never have been placed: its place command comes first.
            kinds = ["place"] if st == Status.PENDING else ["place", "cancel"]
            self._testnet_busy[oid] += 1
            await self._testnet_sem.acquire()
            task = asyncio.create_task(self._testnet_swept(oid, kinds))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
        if todo:
            log.warning("swept testnet orders whose commands had not arrived", count=len(todo))
        return len(todo)

    async def _testnet_swept(self, order_id: str, kinds: list[str]) -> None:
        try:
            for kind in kinds:
                await self.handle_testnet(
                    BusMessage(TESTNET_COMMANDS, "0-0", order_command(kind, order_id, "testnet"))
                )
        except Exception:
            log.exception("swept testnet order failed; the next sweep retries it", order_id=order_id)
        finally:
            self._testnet_sem.release()
            self._done_with(order_id)

    async def handle_testnet(self, msg: BusMessage) -> None:
        assert self.testnet is not None
        rt = self.rt
        cid = str(msg.data["command_id"])
        kind = str(msg.data["kind"])
        async with unit_of_work(rt.sessions) as session:
            if await session.get(ProcessedCommand, cid) is not None:
                return
            order = (await load_orders(session, [str(msg.data["order_id"])], lock=False)).get(
                str(msg.data["order_id"])
            )
            if order is None:
                return
            vo = venue_order(order)
        result = EMPTY
        if vo.replaces is not None and kind != "cancel" and vo.status == Status.PENDING:
            result = await self._testnet_replace(vo)
        elif kind == "place" and vo.status == Status.PENDING:
            result = await self.testnet.place(vo)
        elif kind == "place" and vo.status == Status.PENDING_CANCEL and vo.venue_order_id is None:
            result = await self.testnet.place(vo)
            result = result + await self.testnet.cancel(vo)
        elif kind == "cancel" and vo.status not in FINAL:
            result = await self.testnet.cancel(vo)
        try:
            async with unit_of_work(rt.sessions) as session:
                session.add(ProcessedCommand(command_id=cid, processed_at=rt.clock.now()))
                await apply_result(session, rt.clock, result)
        except IntegrityError:
            # The same command, handled at once by another task (published twice, redelivered or swept while this
            # one waited on the exchange), was recorded first. This answer may be the later one (the fill), and the
            # venue no longer follows an order it reported final: apply it (idempotent) without the mark.
            async with unit_of_work(rt.sessions) as session:
                if await session.get(ProcessedCommand, cid) is None:
                    raise
                await apply_result(session, rt.clock, result)
        rt.relay.notify()

    async def _testnet_replace(self, new: VenueOrder) -> VenueResult:
        """Cancel-replace on the testnet: one cancelReplace call, so Binance keeps exactly one of the two live;
        a replacement of an order no longer open here is refused without asking the exchange."""
        assert self.testnet is not None
        async with unit_of_work(self.rt.sessions) as session:
            old = (await load_orders(session, [str(new.replaces)], lock=False)).get(str(new.replaces))
        if old is None or old.status not in (Status.NEW, Status.PARTIALLY_FILLED):
            reason = f"REPLACE_TARGET_NOT_OPEN: order {new.replaces} is no longer open"
            return VenueResult(
                changes=(
                    OrderChange(new.order_id, Status.REJECTED, Decimal(0), Decimal(0), None, reason=reason),
                )
            )
        return await self.testnet.replace(venue_order(old), new)

    async def apply_from_venue(self, result: VenueResult) -> None:
        """The sink given to venues for what happens later (tracking, late discoveries)."""
        if not result:
            return
        async with unit_of_work(self.rt.sessions) as session:
            await apply_result(session, self.rt.clock, result)
        self.rt.relay.notify()


__all__ = ["EXTERNAL_ACCOUNT", "SYSTEM_PREFIX", "ExecutionWorker", "venue_order"]
