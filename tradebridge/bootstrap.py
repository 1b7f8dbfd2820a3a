"""The composition root: the only place that builds adapters. Each process makes one `SharedParts`, which builds
a part (engine, bus, tokens, relay, ...) the first time a service's parts ask for it, so a process holds only
what its services use (the events service gets a bus and tokens, no database), and fills each service's own
typed parts (`GatewayParts`, `ExecutionParts`, `EventsParts`, `PricefeedParts`, `ReconciliationParts`)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AsyncExitStack
from datetime import timedelta
from functools import cached_property
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from events.app import EventsParts
from events.binance_ws import BinanceWsParts
from execution.engine import EnginePort
from execution.paper.quote import quote_levels
from execution.parts import ExecutionParts
from gateway.deps import GatewayParts, TestnetBalances
from gateway.services.acceptance import GroupCommit
from gateway.services.testnet_markets import TestnetMarkets
from pricefeed.equity import EquityParts
from pricefeed.runner import PricefeedParts
from reconciliation import Reconciler, ReconciliationParts, ReconOptions
from reconciliation.paper import BookView, published_book
from reconciliation.runner import PaperBook
from reconciliation.testnet import ExchangeFactory
from shared.bus import Bus, create_bus
from shared.clock import Clock, SystemClock
from shared.db import create_engine, read_session_factory, session_factory
from shared.exchanges import get_adapter
from shared.exchanges.verify import ExchangeKeyVerifier
from shared.marketdata import MarketData, create_market_data
from shared.outbox import OutboxRelay
from shared.paper.ledger import FeeSchedule
from shared.paper.rules import MarketRules, build_rules
from shared.ratelimit import Admission, LoginThrottle, RateLimiter
from shared.secrets import ConfigError, Secrets, resolve_secrets
from shared.security.crypto import KeyRing
from shared.security.tokens import TokenService
from shared.settings import Settings
from shared.streams import RETENTION

log = structlog.get_logger(__name__)


class SharedParts:
    """The parts services share within one process, each built on first use and closed with `stack`.

    Services' parts are filled (so every part they use is built) before any service starts: what was built
    first is closed last, after the services that use it stopped."""

    def __init__(
        self, settings: Settings, stack: AsyncExitStack, *, clock: Clock | None = None, bus: Bus | None = None
    ) -> None:
        self.settings = settings
        self.clock: Clock = clock or SystemClock()
        self._stack = stack
        if bus is not None:  # given (tests): owned by the caller
            self.__dict__["bus"] = bus

    @cached_property
    def secrets(self) -> Secrets:
        return resolve_secrets(self.settings)

    @cached_property
    def tokens(self) -> TokenService:
        try:
            return TokenService(
                self.secrets.jwt_secret, access_ttl_s=self.settings.access_token_ttl_s, clock=self.clock
            )
        except ValueError as exc:  # the messages name the setting's problem, never its value
            raise ConfigError(f"invalid secret configuration: {exc}") from exc

    @cached_property
    def keyring(self) -> KeyRing:
        try:
            return KeyRing.from_setting(self.secrets.key_encryption_keys)
        except ValueError as exc:
            raise ConfigError(f"invalid secret configuration: {exc}") from exc

    @cached_property
    def engine(self) -> AsyncEngine:
        s = self.settings
        engine = create_engine(
            s.database_url,
            pool_size=s.db_pool_size,
            max_overflow=s.db_max_overflow,
            pool_timeout_s=s.db_pool_timeout_s,
        )
        self._stack.push_async_callback(engine.dispose)
        return engine

    @cached_property
    def sessions(self) -> async_sessionmaker[AsyncSession]:
        return session_factory(self.engine)

    @cached_property
    def read_sessions(self) -> async_sessionmaker[AsyncSession]:
        return read_session_factory(self.engine)

    @cached_property
    def bus(self) -> Bus:
        s = self.settings
        bus = create_bus(
            s.redis_url,
            prefix=s.redis_prefix,
            maxlen=100_000,
            clock=self.clock,
            retention={**RETENTION, **s.stream_retention},
            mirror_idle_s=s.user_stream_idle_s or None,
        )
        self._stack.push_async_callback(bus.close)
        return bus

    @cached_property
    def limiter(self) -> RateLimiter:
        limiter = RateLimiter(self.settings.redis_url, prefix=self.settings.redis_prefix + "rl:")
        self._stack.push_async_callback(limiter.aclose)
        return limiter

    @cached_property
    def market_data(self) -> MarketData:
        md = create_market_data(self.settings.redis_url, self.settings.redis_prefix)
        self._stack.push_async_callback(md.aclose)
        return md

    @cached_property
    def markets(self) -> dict[str, MarketRules]:
        return build_rules(self.settings.symbols, self.settings.market_rules)

    @cached_property
    def fees(self) -> FeeSchedule:
        return FeeSchedule()

    @cached_property
    def relay(self) -> OutboxRelay:
        """The outbox relay of this process, running until the stack closes (before the bus and engine)."""
        relay = OutboxRelay(
            self.sessions,
            self.bus,
            self.clock,
            is_postgres=not self.settings.is_sqlite,
            poll_interval=self.settings.outbox_poll_interval_s,
        )
        task = asyncio.create_task(relay.run(), name="outbox-relay")

        async def stop() -> None:
            relay.stop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

        self._stack.push_async_callback(stop)
        return relay


def execution_parts(
    shared: SharedParts, testnet_overrides: Mapping[str, Any] | None = None
) -> ExecutionParts:
    return ExecutionParts(
        settings=shared.settings,
        clock=shared.clock,
        engine=shared.engine,
        sessions=shared.sessions,
        read_sessions=shared.read_sessions,
        bus=shared.bus,
        relay=shared.relay,
        market_data=shared.market_data,
        markets=shared.markets,
        fees=shared.fees,
        keyring=shared.keyring,
        testnet_overrides=dict(testnet_overrides or {}),
    )


def events_parts(shared: SharedParts) -> EventsParts:
    return EventsParts(
        settings=shared.settings,
        clock=shared.clock,
        bus=shared.bus,
        tokens=shared.tokens,
        binance=binance_ws_parts(shared),
    )


def binance_ws_parts(shared: SharedParts) -> BinanceWsParts:
    """The Binance-compatible WebSocket's key checks (read-only sessions) and depth books (market data)."""
    return BinanceWsParts(
        clock=shared.clock,
        read_sessions=shared.read_sessions,
        keyring=shared.keyring,
        market_data=shared.market_data,
    )


def pricefeed_parts(shared: SharedParts) -> PricefeedParts:
    return PricefeedParts(
        settings=shared.settings,
        clock=shared.clock,
        engine=shared.engine,
        sessions=shared.sessions,
        read_sessions=shared.read_sessions,
        bus=shared.bus,
        market_data=shared.market_data,
    )


def equity_parts(shared: SharedParts) -> EquityParts:
    """The equity snapshots: the database, the bus (fills), the paper tickers, each market's assets."""
    s = shared.settings
    return EquityParts(
        clock=shared.clock,
        sessions=shared.sessions,
        bus=shared.bus,
        market_data=shared.market_data,
        markets={m.symbol: (m.base_asset, m.quote_asset) for m in shared.markets.values()},
        dialect=shared.engine.dialect.name,
        interval_s=s.equity_snapshot_interval_s,
        retention=timedelta(days=s.equity_snapshot_retention_days),
    )


def paper_book(shared: SharedParts) -> PaperBook:
    """Every layout reads the book the same way: the snapshots the workers holding the partitions' paper
    leases publish to the shared market data store (Redis when distributed, memory in `up`), merged."""

    async def read() -> BookView:
        partitions = shared.settings.execution_partitions
        return await published_book(shared.market_data, shared.clock, partitions=partitions)

    return read


def reconciler(
    shared: SharedParts,
    paper_book: PaperBook | None,
    *,
    exchange_factory: ExchangeFactory | None = None,
    options: ReconOptions | None = None,
) -> Reconciler:
    return Reconciler(
        ReconciliationParts(
            settings=shared.settings,
            clock=shared.clock,
            engine=shared.engine,
            sessions=shared.sessions,
            read_sessions=shared.read_sessions,
            keyring=shared.keyring,
            symbols=list(shared.markets),
            paper_book=paper_book,
            exchange_factory=exchange_factory,
            options=options or ReconOptions(),
        )
    )


def gateway_parts(shared: SharedParts, testnet_balances: TestnetBalances, recon: Reconciler) -> GatewayParts:
    s = shared.settings
    return GatewayParts(
        settings=s,
        clock=shared.clock,
        engine=shared.engine,
        sessions=shared.sessions,
        read_sessions=shared.read_sessions,
        bus=shared.bus,
        tokens=shared.tokens,
        keyring=shared.keyring,
        limiter=shared.limiter,
        login_throttle=LoginThrottle(
            shared.limiter,
            per_account=s.login_limit_per_account,
            per_address=s.login_limit_per_address,
            per_account_address=s.login_limit_per_account_address,
        ),
        key_verifier=ExchangeKeyVerifier("binance-testnet", s.binance_testnet_url),
        markets=shared.markets,
        fees=shared.fees,
        market_data=shared.market_data,
        relay=shared.relay,
        order_admission=Admission(s.order_max_inflight),
        testnet_balances=testnet_balances,
        reconciler=recon,
        repairs=EnginePort(shared.clock, s.command_routing),
        testnet_markets=TestnetMarkets(
            get_adapter("binance-testnet", base_url=s.binance_testnet_url),
            shared.markets,
            shared.clock,
            refresh_s=s.testnet_markets_refresh_s,
        ),
        quote=quote_levels,
        group_commit=None if s.is_sqlite else GroupCommit(shared.engine, shared.relay.publish_committed),
    )


# Routes written against the former bag's name (the binance_api package) keep working while they move.
Runtime = GatewayParts


def freeze_startup_heap(stack: AsyncExitStack) -> None:
    """Once a process has started, move every object alive (modules, ccxt's markets, the books and positions it
    loaded) out of the collector's full passes, until the stack closes. Unfrozen, a full collection walked about
    a million start-up objects for 120-290 ms, once or so per process in a 40 s run, and every request and batch
    of the moment waited (the gateway's 350/s stage: p99 179 ms). After, a full pass walks only what was made
    since. (No collection first: a test process starts many apps, and freezing is O(1).)"""
    gc.freeze()
    stack.callback(gc.unfreeze)


async def run_service(
    settings: Settings, *starts: Callable[[SharedParts, AsyncExitStack], Awaitable[object]]
) -> None:
    """A service process: start its parts (each pushes its own clean-up onto the stack), run until
    SIGTERM/SIGINT, then stop them in reverse order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with AsyncExitStack() as stack:
        shared = SharedParts(settings, stack)
        for start in starts:
            await start(shared, stack)
        freeze_startup_heap(stack)
        log.info("service running", parts=[getattr(s, "__name__", str(s)) for s in starts])
        await stop.wait()
