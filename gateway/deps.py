"""Dependencies: the gateway's parts, the request's transaction, the current user and per-request services.

`GatewayParts` is everything the API uses, declared here and filled in by the composition root
(`tradebridge.bootstrap.gateway_parts`); routes take them as `Annotated` dependencies (`PartsDep`)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Protocol, cast

from asgi_correlation_id import correlation_id
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from gateway.services.acceptance import GroupCommit
from gateway.services.accounts import AccountService
from gateway.services.audit import Auditor
from gateway.services.keys import KeyService
from gateway.services.testnet_markets import TestnetMarkets
from reconciliation import Reconciler
from reconciliation.repair import RepairPort
from shared.bus import Bus
from shared.clock import Clock
from shared.credentials import KeyVerifier
from shared.errors import DomainError, Forbidden, Unauthorized
from shared.exchanges import Reachability
from shared.marketdata import MarketData
from shared.models import User
from shared.outbox import OutboxRelay, publish_after_commit
from shared.paper.ledger import FeeSchedule
from shared.paper.rules import MarketRules
from shared.ratelimit import Admission, LoginThrottle, RateLimiter
from shared.security.crypto import KeyRing
from shared.security.tokens import TokenService
from shared.settings import Settings


class QuoteResult(Protocol):
    """What a depth walk says an order would fill at now (within the market protection band)."""

    @property
    def fillable_quantity(self) -> Decimal: ...

    @property
    def avg_price(self) -> Decimal | None: ...

    @property
    def worst_price(self) -> Decimal | None: ...


# (depth levels best first as (price, quantity), the market's rules, side, quantity) -> the quote: the paper
# exchange's own walk (execution.paper.quote.quote_levels), handed over by the composition root.
Quoter = Callable[[list[tuple[Decimal, Decimal]], MarketRules, str, Decimal], QuoteResult]


class TestnetBalances(Protocol):
    """Reads a user's testnet balances from the exchange (the execution side's testnet venue, read-only)."""

    reachability: Reachability  # when this reader last reached the exchange (GET /api/venue-status)

    async def balances(self, user_id: str, *, fresh: bool = False) -> list[dict[str, Any]]: ...

    @property
    def streams_configured(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class GatewayParts:
    """Everything the API uses, built once per process by the composition root."""

    settings: Settings
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
    testnet_balances: TestnetBalances
    reconciler: Reconciler
    repairs: RepairPort  # the execution engine's port, for reconciliation repairs
    testnet_markets: TestnetMarkets  # the testnet's own rules for its orders, read from the exchange
    quote: Quoter  # walks a depth snapshot as the paper exchange would fill an order
    # PostgreSQL: funded users' paper orders arriving together accepted in one statement (None on SQLite)
    group_commit: GroupCommit | None = None
    # users whose paper account is known funded (committed): their orders skip the funding statement
    paper_funded: set[str] = field(default_factory=set)
    # user id -> (mode, role) as last read: a placement takes its user from here unread when its order can be
    # accepted by the one statement, which checks the user itself (``gateway.routes.orders.placement``)
    trader_hints: dict[str, tuple[str, str]] = field(default_factory=dict)

    async def check_database(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))


async def get_parts(request: Request) -> GatewayParts:
    # Dependencies are all `async def`: a plain `def` one would run in the thread pool on every request.
    return cast(GatewayParts, request.app.state.parts)


PartsDep = Annotated[GatewayParts, Depends(get_parts)]


async def get_settings(rt: PartsDep) -> Settings:
    return rt.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


def _client_address(request: Request, rt: GatewayParts) -> str:
    if rt.settings.trusted_proxies:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.client.host if request.client else "unknown"


async def client_address(request: Request, rt: PartsDep) -> str:
    return _client_address(request, rt)


ClientAddress = Annotated[str, Depends(client_address)]


async def get_auditor(rt: PartsDep, address: ClientAddress) -> Auditor:
    return Auditor(rt.clock, ip=address, request_id=correlation_id.get())


AuditorDep = Annotated[Auditor, Depends(get_auditor)]


@asynccontextmanager
async def request_transaction(
    rt: GatewayParts, *, reads: bool, auditor: Auditor | None = None
) -> AsyncIterator[AsyncSession]:
    """The request's unit of work (``get_session``; the order placement's one dependency enters it itself)."""
    factory = rt.read_sessions if reads else rt.sessions
    kept: DomainError | None = None
    async with factory() as session, session.begin():
        if not reads:
            publish_after_commit(session)
        try:
            yield session
        except DomainError as exc:
            if not exc.commit:
                raise
            kept = exc  # leaving the block normally commits
    if not reads:
        # At once, before anything else commits: the bus sees each user's requests in the order they committed.
        rt.relay.after_commit(session)
    if auditor is not None:
        await auditor.write_after_read(rt.sessions)
    if kept is not None:
        raise kept


async def get_session(request: Request, rt: PartsDep, auditor: AuditorDep) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: committed before the response is sent (scope="function"), or rolled back.

    GET requests read: on SQLite their transaction begins deferred, so a slow GET (one that waits on the
    exchange, say) never holds the single write lock. They write nothing in it (upgrading it to a writer fails
    with "database is locked" while anyone else writes): an audit row a read records is written once its
    transaction has ended, in a short one of its own (see ``gateway.services.audit``).

    A write's outbox rows are published right after its commit (``shared.outbox.publish_after_commit``).

    A ``DomainError`` raised with ``commit=True`` still commits (then renders as usual): a refusal whose record
    must persist is written in this one transaction, never in a second one that would wait on this one's lock."""
    async with request_transaction(rt, reads=request.method in ("GET", "HEAD"), auditor=auditor) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


_bearer = HTTPBearer(auto_error=False, description="Access token from /auth/login")
BearerCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def token_subject(rt: GatewayParts, creds: HTTPAuthorizationCredentials | None) -> str:
    """The user id of a valid bearer access token, else ``Unauthorized``."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise Unauthorized("Send an access token: Authorization: Bearer <token>.")
    return rt.tokens.decode_access(creds.credentials).sub


async def current_user(
    rt: PartsDep,
    session: SessionDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    user = await session.get(User, token_subject(rt, creds))
    if user is None or not user.is_active:
        raise Unauthorized()
    return user


CurrentUser = Annotated[User, Depends(current_user)]


async def current_user_unlocked(
    rt: PartsDep, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> User:
    """``current_user`` read in a short read-only session of its own, so the request's transaction has run no
    statement yet (on SQLite its first takes the write lock): for a write route that does slow work first
    (an exchange call). The user is detached: use its fields, don't write it."""
    async with rt.read_sessions() as reader:
        user = await reader.get(User, token_subject(rt, creds))
    if user is None or not user.is_active:
        raise Unauthorized()
    return user


CurrentUserUnlocked = Annotated[User, Depends(current_user_unlocked)]


@dataclass(frozen=True, slots=True)
class Trader:
    """The authenticated user as the order routes need it: who, and which mode they trade in by default."""

    id: str
    mode: str
    role: str
    # False: taken unread from ``GatewayParts.trader_hints``; whoever uses it checks it (``OrderService.place``)
    verified: bool = True


@functools.cache
def _trader_statement() -> Any:
    t = User.__table__  # type: ignore[attr-defined]
    return select(t.c.id, t.c.mode, t.c.role).where(t.c.id == bindparam("uid"), t.c.is_active.is_(True))


async def current_trader(
    rt: PartsDep,
    session: SessionDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Trader:
    """``current_user`` without the ORM: one Core row read (no identity map, no instance state) on the order
    routes, the busiest of the API; the same checks and the same 401s."""
    return await read_trader(session, rt, creds)


async def read_trader(
    on: AsyncSession | AsyncConnection, rt: GatewayParts, creds: HTTPAuthorizationCredentials | None
) -> Trader:
    """The bearer token's active user as a ``Trader``, read on ``on``; else ``Unauthorized``."""
    row = (await on.execute(_trader_statement(), {"uid": token_subject(rt, creds)})).first()
    if row is None:
        raise Unauthorized()
    return Trader(row.id, row.mode, row.role)


CurrentTrader = Annotated[Trader, Depends(current_trader)]


async def current_admin(user: CurrentUser) -> User:
    if user.role != "admin":
        raise Forbidden("This endpoint is for administrators.")
    return user


CurrentAdmin = Annotated[User, Depends(current_admin)]


async def get_account_service(rt: PartsDep, session: SessionDep, auditor: AuditorDep) -> AccountService:
    return AccountService(
        session=session,
        read_sessions=rt.read_sessions,
        clock=rt.clock,
        tokens=rt.tokens,
        throttle=rt.login_throttle,
        auditor=auditor,
        bcrypt_rounds=rt.settings.bcrypt_rounds,
        refresh_ttl_s=rt.settings.refresh_token_ttl_s,
    )


Accounts = Annotated[AccountService, Depends(get_account_service)]


async def get_key_service(rt: PartsDep, session: SessionDep, auditor: AuditorDep) -> KeyService:
    return KeyService(
        session=session, keyring=rt.keyring, clock=rt.clock, auditor=auditor, verifier=rt.key_verifier
    )


Keys = Annotated[KeyService, Depends(get_key_service)]
