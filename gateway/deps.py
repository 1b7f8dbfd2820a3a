"""Dependencies: the runtime, the request's transaction, the current user and per-request services."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

from asgi_correlation_id import correlation_id
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.services.accounts import AccountService
from gateway.services.audit import Auditor
from gateway.services.keys import KeyService
from shared.errors import DomainError, Forbidden, Unauthorized
from shared.models import User
from shared.settings import Settings
from tradebridge.bootstrap import Runtime


async def get_runtime(request: Request) -> Runtime:
    # Dependencies are all `async def`: a plain `def` one would run in the thread pool on every request.
    return request.app.state.runtime  # type: ignore[no-any-return]


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


async def get_settings(rt: RuntimeDep) -> Settings:
    return rt.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def client_address(request: Request, rt: RuntimeDep) -> str:
    if rt.settings.trusted_proxies:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(client_address)]


async def get_auditor(rt: RuntimeDep, address: ClientAddress) -> Auditor:
    return Auditor(rt.clock, ip=address, request_id=correlation_id.get())


AuditorDep = Annotated[Auditor, Depends(get_auditor)]


async def get_session(request: Request, rt: RuntimeDep, auditor: AuditorDep) -> AsyncIterator[AsyncSession]:
    """The request's unit of work: committed before the response is sent (scope="function"), or rolled back.

    GET requests read: on SQLite their transaction begins deferred, so a slow GET (one that waits on the
    exchange, say) never holds the single write lock. They write nothing in it (upgrading it to a writer fails
    with "database is locked" while anyone else writes): an audit row a read records is written once its
    transaction has ended, in a short one of its own (see ``gateway.services.audit``).

    A ``DomainError`` raised with ``commit=True`` still commits (then renders as usual): a refusal whose record
    must persist is written in this one transaction, never in a second one that would wait on this one's lock."""
    factory = rt.read_sessions if request.method in ("GET", "HEAD") else rt.sessions
    kept: DomainError | None = None
    async with factory() as session, session.begin():
        try:
            yield session
        except DomainError as exc:
            if not exc.commit:
                raise
            kept = exc  # leaving the block normally commits
    await auditor.write_after_read(rt.sessions)
    if kept is not None:
        raise kept


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


_bearer = HTTPBearer(auto_error=False, description="Access token from /auth/login")


def _token_subject(rt: Runtime, creds: HTTPAuthorizationCredentials | None) -> str:
    """The user id of a valid bearer access token, else ``Unauthorized``."""
    if creds is None or creds.scheme.lower() != "bearer":
        raise Unauthorized("Send an access token: Authorization: Bearer <token>.")
    return rt.tokens.decode_access(creds.credentials).sub


async def current_user(
    rt: RuntimeDep,
    session: SessionDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> User:
    user = await session.get(User, _token_subject(rt, creds))
    if user is None or not user.is_active:
        raise Unauthorized()
    return user


CurrentUser = Annotated[User, Depends(current_user)]


async def current_user_unlocked(
    rt: RuntimeDep, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> User:
    """``current_user`` read in a short read-only session of its own, so the request's transaction has run no
    statement yet (on SQLite its first takes the write lock): for a write route that does slow work first
    (an exchange call). The user is detached: use its fields, don't write it."""
    async with rt.read_sessions() as reader:
        user = await reader.get(User, _token_subject(rt, creds))
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


@functools.cache
def _trader_statement() -> Any:
    t = User.__table__  # type: ignore[attr-defined]
    return select(t.c.id, t.c.mode, t.c.role).where(t.c.id == bindparam("uid"), t.c.is_active.is_(True))


async def current_trader(
    rt: RuntimeDep,
    session: SessionDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Trader:
    """``current_user`` without the ORM: one Core row read (no identity map, no instance state) on the order
    routes, the busiest of the API; the same checks and the same 401s."""
    row = (await session.execute(_trader_statement(), {"uid": _token_subject(rt, creds)})).first()
    if row is None:
        raise Unauthorized()
    return Trader(row.id, row.mode, row.role)


CurrentTrader = Annotated[Trader, Depends(current_trader)]


async def current_admin(user: CurrentUser) -> User:
    if user.role != "admin":
        raise Forbidden("This endpoint is for administrators.")
    return user


CurrentAdmin = Annotated[User, Depends(current_admin)]


async def get_account_service(rt: RuntimeDep, session: SessionDep, auditor: AuditorDep) -> AccountService:
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


async def get_key_service(rt: RuntimeDep, session: SessionDep, auditor: AuditorDep) -> KeyService:
    return KeyService(
        session=session, keyring=rt.keyring, clock=rt.clock, auditor=auditor, verifier=rt.key_verifier
    )


Keys = Annotated[KeyService, Depends(get_key_service)]
