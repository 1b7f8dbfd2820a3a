"""The composition root: every service process (and `tradebridge up`) assembles its parts here, at start-up."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from execution.paper.ledger import FeeSchedule
from execution.paper.rules import MarketRules, build_rules
from shared.bus import Bus, create_bus
from shared.clock import Clock, SystemClock
from shared.credentials import KeyVerifier
from shared.db import create_engine, read_session_factory, session_factory
from shared.exchanges.verify import ExchangeKeyVerifier
from shared.marketdata import MarketData, create_market_data
from shared.outbox import OutboxRelay
from shared.ratelimit import Admission, LoginThrottle, RateLimiter
from shared.secrets import ConfigError, Secrets, resolve_secrets
from shared.security.crypto import KeyRing
from shared.security.tokens import TokenService
from shared.settings import Settings
from shared.streams import RETENTION

log = structlog.get_logger(__name__)


@dataclass
class Runtime:
    """Everything a service needs, built once per process and injected (never imported as a global)."""

    settings: Settings
    secrets: Secrets
    clock: Clock
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    read_sessions: async_sessionmaker[AsyncSession]  # never write through these
    bus: Bus
    tokens: TokenService
    keyring: KeyRing
    limiter: RateLimiter
    login_throttle: LoginThrottle
    key_verifier: KeyVerifier
    markets: dict[str, MarketRules]
    fees: FeeSchedule
    market_data: MarketData
    relay: OutboxRelay
    order_admission: Admission  # load shedding of order placements (ORDER_MAX_INFLIGHT)
    # users whose paper account is known funded (committed): their orders skip the funding statement
    paper_funded: set[str] = field(default_factory=set)
    extras: dict[str, Any] = field(default_factory=dict)

    async def check_database(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))


@asynccontextmanager
async def build_runtime(settings: Settings, *, clock: Clock | None = None) -> AsyncIterator[Runtime]:
    clock = clock or SystemClock()
    secrets = resolve_secrets(settings)
    try:
        tokens = TokenService(secrets.jwt_secret, access_ttl_s=settings.access_token_ttl_s, clock=clock)
        keyring = KeyRing.from_setting(secrets.key_encryption_keys)
    except ValueError as exc:  # the messages name the setting's problem, never its value
        raise ConfigError(f"invalid secret configuration: {exc}") from exc
    engine = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout_s=settings.db_pool_timeout_s,
    )
    bus = create_bus(
        settings.redis_url, prefix=settings.redis_prefix, maxlen=100_000, clock=clock, retention=RETENTION
    )
    limiter = RateLimiter(settings.redis_url, prefix=settings.redis_prefix + "rl:")
    sessions = session_factory(engine)
    rt = Runtime(
        settings=settings,
        secrets=secrets,
        clock=clock,
        engine=engine,
        sessions=sessions,
        read_sessions=read_session_factory(engine),
        bus=bus,
        tokens=tokens,
        keyring=keyring,
        limiter=limiter,
        order_admission=Admission(settings.order_max_inflight),
        login_throttle=LoginThrottle(
            limiter,
            per_account=settings.login_limit_per_account,
            per_address=settings.login_limit_per_address,
            per_account_address=settings.login_limit_per_account_address,
        ),
        key_verifier=ExchangeKeyVerifier("binance-testnet", settings.binance_testnet_url),
        markets=build_rules(settings.symbols, settings.market_rules),
        fees=FeeSchedule(),
        market_data=create_market_data(settings.redis_url, settings.redis_prefix),
        relay=OutboxRelay(
            sessions,
            bus,
            clock,
            is_postgres=not settings.is_sqlite,
            poll_interval=settings.outbox_poll_interval_s,
        ),
    )
    try:
        yield rt
    finally:
        rt.relay.stop()
        await rt.market_data.aclose()
        await bus.close()
        await limiter.aclose()
        await engine.dispose()


async def run_service(
    settings: Settings, *hooks: Callable[[Runtime, AsyncExitStack], Awaitable[object]]
) -> None:
    """A service process: build the runtime, start its parts (each pushes its own clean-up onto the stack),
    run until SIGTERM/SIGINT, then stop them in reverse order."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    async with build_runtime(settings) as rt, AsyncExitStack() as stack:
        for hook in hooks:
            await hook(rt, stack)
        log.info(
            "service running",
            parts=[getattr(h, "__name__", str(h)) for h in hooks],
            bus=type(rt.bus).__name__,
        )
        await stop.wait()
