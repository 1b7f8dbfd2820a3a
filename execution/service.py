"""Assembling the execution workers from the parts their process was given (`ExecutionParts`), as their own
process or inside `tradebridge up`; the composition root (`tradebridge`) decides which and fills the parts.

One worker per paper partition (EXECUTION_PARTITIONS, default one): each matches its partition's symbols while
it holds the partition's lease and stands by otherwise, so whichever process is alive covers every partition.
The first also consumes the testnet commands and follows testnet orders (one stream for every process)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from contextlib import AsyncExitStack
from typing import Any

import structlog
from sqlmodel import col, select

from execution.paper.market_maker import MarketMakerConfig
from execution.parts import ExecutionParts
from execution.testnet.key_changes import follow_key_changes, key_changes_start
from execution.testnet.venue import TestnetVenue, build_testnet_venue
from execution.venues.base import VenueOrder
from execution.venues.paper import PaperVenue
from execution.worker import ExecutionWorker, venue_order
from shared.credentials import TESTNET_EXCHANGE, PlainKeys, load_plain_keys
from shared.db import unit_of_work
from shared.models import ExchangeCredential, Order
from shared.orders import FINAL

log = structlog.get_logger(__name__)

__all__ = ["ExecutionParts", "build_testnet", "build_worker", "start_execution"]


def build_testnet(parts: ExecutionParts, **overrides: Any) -> TestnetVenue:
    """The ccxt venue with keys decrypted on demand from the database (never held by the venue's config)."""

    async def keys(user_id: str) -> PlainKeys | None:
        async with parts.read_sessions() as session:
            return await load_plain_keys(session, parts.keyring, user_id)

    async def users() -> list[str]:
        async with parts.read_sessions() as session:
            rows = await session.execute(
                select(ExchangeCredential.user_id).where(col(ExchangeCredential.exchange) == TESTNET_EXCHANGE)
            )
            return [str(u) for u in rows.scalars()]

    overrides = {**parts.testnet_overrides, **overrides}
    return build_testnet_venue(parts.settings, keys, parts.clock, users_provider=users, **overrides)


def partition_parts(parts: ExecutionParts, partition: int) -> ExecutionParts:
    """The parts of one partition's worker: only its symbols' markets (its books, market maker, sweep)."""
    symbols = parts.settings.command_routing.symbols_of(partition)
    return dataclasses.replace(parts, markets={m: r for m, r in parts.markets.items() if m in symbols})


def market_maker_account(partition: int) -> str:
    """Each partition's market maker is an account of its own: its locks are released when its books are
    rebuilt (by whichever process takes the partition), which must not touch another partition's quotes."""
    base = MarketMakerConfig().account
    return base if partition == 0 else f"{base}-{partition}"


def build_worker(parts: ExecutionParts, partition: int = 0, *, testnet: bool = True) -> ExecutionWorker:
    mine = partition_parts(parts, partition)
    paper = PaperVenue(
        mine.markets,
        mine.fees,
        mine.clock,
        market_maker=(
            MarketMakerConfig(account=market_maker_account(partition))
            if parts.settings.market_maker_enabled
            else None
        ),
    )
    return ExecutionWorker(mine, paper, build_testnet(parts) if testnet else None, partition=partition)


async def start_execution(parts: ExecutionParts, stack: AsyncExitStack) -> list[ExecutionWorker]:
    """Start a worker per partition (the first with the testnet venue and its tracking); all stop when the
    stack closes."""
    workers = [build_worker(parts, k, testnet=k == 0) for k in range(parts.settings.execution_partitions)]
    for w in workers:
        await w.start()
        stack.push_async_callback(w.stop)
    worker = workers[0]
    if isinstance(worker.testnet, TestnetVenue):
        after = await key_changes_start(parts.bus)  # before the venue reads the users with keys
        await worker.testnet.start(
            worker.apply_from_venue,
            lambda: _open_testnet_orders(parts),
            status_store=parts.market_data,  # users' stream state, for every gateway (shared.venue_status)
        )
        stack.push_async_callback(worker.testnet.stop)
        following = asyncio.create_task(
            follow_key_changes(parts.bus, worker.testnet, after), name="testnet-key-changes"
        )
        stack.push_async_callback(_cancel, following)
    return workers


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _open_testnet_orders(parts: ExecutionParts) -> list[VenueOrder]:
    async with unit_of_work(parts.sessions) as session:
        rows = (
            await session.execute(
                select(Order).where(col(Order.mode) == "testnet", col(Order.status).not_in(list(FINAL)))
            )
        ).scalars()
        return [venue_order(o) for o in rows]
