"""The applications as the composition root assembles them: the gateway with the services this process runs
inside it (`tradebridge up` runs them all; `tradebridge gateway` none), and the standalone events service.
Tests build apps here too, exactly as the CLI does."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI

from events.app import attach_hub, install_events, start_events
from events.app import create_events_app as events_app
from events.hub import EventsHub, HubConfig
from execution.service import build_testnet, start_execution
from execution.worker import ExecutionWorker
from gateway.app import create_app as gateway_app
from gateway.deps import GatewayParts
from gateway.services.accounts import prune_refresh_tokens_forever
from pricefeed.equity import EquitySnapshots, start_equity_snapshots
from pricefeed.runner import PriceFeedRunner, start_pricefeed
from reconciliation import ReconciliationScheduler, ReconOptions, start_reconciliation
from reconciliation.testnet import ExchangeFactory
from shared.bus import Bus
from shared.clock import Clock
from shared.settings import Settings
from tradebridge import bootstrap as b

SERVICES = ("events", "execution", "pricefeed", "equity")


@dataclass
class System:
    """What runs in the app's process besides the API (tests and `up` look at it: `app.state.system`)."""

    worker: ExecutionWorker | None = None  # partition 0's (with the testnet venue): all of paper by default
    workers: list[ExecutionWorker] = field(default_factory=list)  # one per paper partition
    hub: EventsHub | None = None
    pricefeed: PriceFeedRunner | None = None
    scheduler: ReconciliationScheduler | None = None
    equity: EquitySnapshots | None = None


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app(
    settings: Settings,
    *,
    services: Iterable[str] = (),
    clock: Clock | None = None,
    migrate: bool = False,
    testnet_overrides: Mapping[str, Any] | None = None,
    recon_exchange_factory: ExchangeFactory | None = None,
    recon_options: ReconOptions | None = None,
    hooks: Iterable[Callable[[b.SharedParts, AsyncExitStack], Awaitable[object]]] = (),
) -> FastAPI:
    """The gateway, with `services` (any of "events", "execution", "pricefeed", "equity") running in its
    process, and `hooks`: further components the composition root starts with the process's shared parts (after
    them)."""
    wanted = tuple(services)
    unknown = set(wanted) - set(SERVICES)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}; known: {', '.join(SERVICES)}")

    @asynccontextmanager
    async def parts(app: FastAPI) -> AsyncIterator[GatewayParts]:
        if migrate:
            from shared.migrate import upgrade

            await upgrade(settings.database_url)
        async with AsyncExitStack() as stack:
            shared = b.SharedParts(settings, stack, clock=clock)
            system = app.state.system = System()
            execution = b.execution_parts(shared, testnet_overrides)
            events = b.events_parts(shared) if "events" in wanted else None
            pricefeed = b.pricefeed_parts(shared) if "pricefeed" in wanted else None

            recon = b.reconciler(
                shared, b.paper_book(shared), exchange_factory=recon_exchange_factory, options=recon_options
            )
            # Reads only (testnet balances); orders go through the execution worker.
            reader = build_testnet(execution, recover_on_start=False)
            stack.push_async_callback(reader.stop)
            gateway = b.gateway_parts(shared, reader, recon)
            pruning = asyncio.create_task(
                prune_refresh_tokens_forever(shared.sessions, shared.clock, settings.refresh_token_ttl_s),
                name="prune-refresh-tokens",
            )
            stack.push_async_callback(_cancel, pruning)
            gateway.testnet_markets.start()
            stack.push_async_callback(gateway.testnet_markets.stop)
            if events is not None:
                system.hub = await start_events(events, stack)
                attach_hub(app, events, system.hub)
            if "execution" in wanted:
                system.workers = await start_execution(execution, stack)
                system.worker = system.workers[0]
            if pricefeed is not None:
                system.pricefeed = await start_pricefeed(pricefeed, stack)
            if "equity" in wanted:
                system.equity = await start_equity_snapshots(b.equity_parts(shared), stack)
            system.scheduler = await start_reconciliation(recon, stack)
            for hook in hooks:
                await hook(shared, stack)
            b.freeze_startup_heap(stack)
            yield gateway

    app = gateway_app(settings, parts)
    if "events" in wanted:
        install_events(app)
    return app


def create_events_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    hub_config: HubConfig | None = None,
    bus: Bus | None = None,
) -> FastAPI:
    """The standalone events service (`tradebridge events`): a bus and a token service, nothing else."""

    @asynccontextmanager
    async def parts() -> AsyncIterator[Any]:
        async with AsyncExitStack() as stack:
            parts = b.events_parts(b.SharedParts(settings, stack, clock=clock, bus=bus))
            b.freeze_startup_heap(stack)
            yield parts

    return events_app(parts, hub_config=hub_config)
