"""Assembling the execution worker from the parts its process was given (`ExecutionParts`), as its own
process or inside `tradebridge up`; the composition root (`tradebridge`) decides which and fills the parts."""

from __future__ import annotations

import asyncio
import contextlib
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


def build_worker(parts: ExecutionParts) -> ExecutionWorker:
    paper = PaperVenue(
        parts.markets,
        parts.fees,
        parts.clock,
        market_maker=MarketMakerConfig() if parts.settings.market_maker_enabled else None,
    )
    return ExecutionWorker(parts, paper, build_testnet(parts))


async def start_execution(parts: ExecutionParts, stack: AsyncExitStack) -> ExecutionWorker:
    """Start the worker (and its testnet tracking); both stop when the stack closes."""
    worker = build_worker(parts)
    await worker.start()
    stack.push_async_callback(worker.stop)
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
    return worker


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
