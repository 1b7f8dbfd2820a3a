"""Assembling and running the execution worker: as its own process, or inside `tradebridge up`."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from contextlib import AsyncExitStack

import structlog

from execution.paper.market_maker import MarketMakerConfig
from execution.venues.paper import PaperVenue
from execution.worker import ExecutionWorker
from shared.settings import Settings
from tradebridge.bootstrap import Runtime, build_runtime

log = structlog.get_logger(__name__)


def build_worker(rt: Runtime) -> ExecutionWorker:
    paper = PaperVenue(
        rt.markets,
        rt.fees,
        rt.clock,
        market_maker=MarketMakerConfig() if rt.settings.market_maker_enabled else None,
    )
    testnet = None
    factory = rt.extras.get("testnet_venue_factory")
    if factory is not None:
        testnet = factory(rt)
    return ExecutionWorker(rt, paper, testnet)


async def start_execution(rt: Runtime, stack: AsyncExitStack) -> ExecutionWorker:
    """Hook for an app lifespan: the worker and its outbox relay run until the stack closes."""
    worker = build_worker(rt)
    rt.extras["worker"] = worker
    await worker.start()
    stack.push_async_callback(worker.stop)
    if worker.testnet is not None and hasattr(worker.testnet, "start"):
        await worker.testnet.start(worker.apply_from_venue, lambda: _open_testnet_orders(rt))  # type: ignore[attr-defined]
        stack.push_async_callback(worker.testnet.stop)  # type: ignore[attr-defined]
    return worker


async def _open_testnet_orders(rt: Runtime) -> list:  # type: ignore[type-arg]
    from sqlalchemy import select

    from execution.worker import venue_order
    from shared.db import unit_of_work
    from shared.models import Order
    from shared.orders import FINAL

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
    """`tradebridge execution`: one worker process until SIGTERM/SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with build_runtime(settings) as rt, AsyncExitStack() as stack:
        await start_relay(rt, stack)
        await start_execution(rt, stack)
        log.info("execution worker running", bus=type(rt.bus).__name__)
        await stop.wait()
