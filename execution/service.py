"""Assembling and running the execution worker: as its own process, or inside `tradebridge up`."""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack
from typing import Any

import structlog
from sqlalchemy import select

from execution.paper.market_maker import MarketMakerConfig
from execution.testnet.venue import TestnetVenue, build_testnet_venue
from execution.venues.base import VenueOrder
from execution.venues.paper import PaperVenue
from execution.worker import ExecutionWorker, venue_order
from shared.credentials import TESTNET_EXCHANGE, PlainKeys, load_plain_keys
from shared.db import unit_of_work
from shared.models import ExchangeCredential, Order
from shared.orders import FINAL
from shared.settings import Settings
from tradebridge.bootstrap import Runtime, run_service

log = structlog.get_logger(__name__)


def build_testnet(rt: Runtime, **overrides: Any) -> TestnetVenue:
    """The ccxt venue with keys decrypted on demand from the database (never held by the venue's config)."""

    async def keys(user_id: str) -> PlainKeys | None:
        async with rt.read_sessions() as session:
            return await load_plain_keys(session, rt.keyring, user_id)

    async def users() -> list[str]:
        async with rt.read_sessions() as session:
            rows = await session.execute(
                select(ExchangeCredential.user_id).where(ExchangeCredential.exchange == TESTNET_EXCHANGE)
            )
            return [str(u) for u in rows.scalars()]

    overrides = {**rt.extras.get("testnet_overrides", {}), **overrides}
    return build_testnet_venue(rt.settings, keys, rt.clock, users_provider=users, **overrides)


def build_worker(rt: Runtime) -> ExecutionWorker:
    paper = PaperVenue(
        rt.markets,
        rt.fees,
        rt.clock,
        market_maker=MarketMakerConfig() if rt.settings.market_maker_enabled else None,
    )
    return ExecutionWorker(rt, paper, build_testnet(rt))


async def start_execution(rt: Runtime, stack: AsyncExitStack) -> ExecutionWorker:
    """Hook for an app lifespan: the worker and its outbox relay run until the stack closes."""
    worker = build_worker(rt)
    rt.extras["worker"] = worker
    await worker.start()
    stack.push_async_callback(worker.stop)
    if isinstance(worker.testnet, TestnetVenue):
        await worker.testnet.start(worker.apply_from_venue, lambda: _open_testnet_orders(rt))
        stack.push_async_callback(worker.testnet.stop)
    return worker


async def _open_testnet_orders(rt: Runtime) -> list[VenueOrder]:
    async with unit_of_work(rt.sessions) as session:
        rows = (
            await session.execute(
                select(Order).where(Order.mode == "testnet", Order.status.not_in(list(FINAL)))
            )
        ).scalars()
        return [venue_order(o) for o in rows]


async def start_relay(rt: Runtime, stack: AsyncExitStack) -> None:
    task = asyncio.create_task(rt.relay.run(), name="outbox-relay")

    async def stop() -> None:
        rt.relay.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    stack.push_async_callback(stop)


async def run_forever(settings: Settings) -> None:
    """`tradebridge execution`: one worker process (with its outbox relay) until SIGTERM/SIGINT."""
    await run_service(settings, start_relay, start_execution)
