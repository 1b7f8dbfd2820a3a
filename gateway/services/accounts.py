"""Accounts: registration, login with throttling, refresh-token rotation with reuse detection, logout,
mode switch and the admin bootstrap. Services flush; the request (or caller) owns the transaction.

A refusal that must leave a record (a failed login's audit row, a token family revoked on reuse) writes it in
the request's own transaction and raises with ``commit=True``: the request commits, then answers 401. A second
transaction would, on SQLite, wait for the request's own write lock (30 s, then 500)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta
from typing import NoReturn

import structlog
from sqlalchemy import delete, func, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col, select

from gateway.services.audit import Auditor
from shared.clock import Clock
from shared.db import unit_of_work
from shared.errors import Conflict, Unauthorized
from shared.ids import new_id
from shared.metrics import LOGINS
from shared.models import ExchangeCredential, RefreshToken, User
from shared.ratelimit import LoginThrottle
from shared.schemas.accounts import TokenPair
from shared.security.passwords import (
    dummy_verify_async,
    hash_password_async,
    validate_password,
    verify_password_async,
)
from shared.security.tokens import TokenService, hash_refresh_token, new_refresh_token

log = structlog.get_logger(__name__)

BAD_LOGIN = "Incorrect email or password."
BAD_REFRESH = "The refresh token is invalid, expired or revoked; log in again."
TESTNET_EXCHANGE = "binance-testnet"


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def prune_refresh_tokens(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, keep_expired_s: float
) -> int:
    """Delete refresh tokens expired more than `keep_expired_s` ago: every login and refresh adds a row, so
    without this the table grows for ever. An expired token is refused anyway; keeping it a while longer only
    lets the reuse of a recently rotated one still revoke its family."""
    cutoff = clock.now() - timedelta(seconds=keep_expired_s)
    async with unit_of_work(sessions) as session:
        result = await session.execute(delete(RefreshToken).where(col(RefreshToken.expires_at) < cutoff))
    return int(getattr(result, "rowcount", 0) or 0)


async def prune_refresh_tokens_forever(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, ttl_s: float
) -> None:
    """`prune_refresh_tokens` every eighth of the refresh TTL (at most hourly), keeping expired tokens one more
    TTL; errors are logged and tried again at the next run."""
    interval = min(ttl_s / 8, 3600.0)
    while True:
        await asyncio.sleep(interval)
        try:
            await prune_refresh_tokens(sessions, clock, keep_expired_s=ttl_s)
        except Exception:
            log.exception("pruning expired refresh tokens failed; retrying at the next run")


@dataclass
class AccountService:
    session: AsyncSession
    read_sessions: async_sessionmaker[AsyncSession]  # the login's lookup, outside the write transaction
    clock: Clock
    tokens: TokenService
    throttle: LoginThrottle
    auditor: Auditor
    bcrypt_rounds: int
    refresh_ttl_s: int

    async def check_new(self, email: str, password: str) -> None:
        """422 for a weak password, 409 for a taken email; read apart from the request's transaction."""
        validate_password(password)
        async with self.read_sessions() as reader:
            taken = (
                await reader.execute(select(User).where(col(User.email) == normalize_email(email)))
            ).scalar_one_or_none()
        if taken is not None:
            raise Conflict("An account with this email already exists.")

    async def register(self, email: str, password: str) -> User:
        # Checked and hashed before the request's transaction runs a statement: on SQLite its first takes the
        # single write lock, which must not be held through bcrypt. (A concurrent twin: IntegrityError below.)
        await self.check_new(email, password)
        password_hash = await hash_password_async(password, rounds=self.bcrypt_rounds)
        now = self.clock.now()
        user = User(
            id=new_id(),
            email=normalize_email(email),
            password_hash=password_hash,
            role="user",
            mode="paper",
            created_at=now,
            updated_at=now,
        )
        self.session.add(user)
        try:
            await self.session.flush()
        except IntegrityError as exc:
            raise Conflict("An account with this email already exists.") from exc
        await self.auditor.record(self.session, "user.register", actor_id=user.id, target=user.id)
        return user

    async def find_by_email(self, email: str) -> User | None:
        result = await self.session.execute(select(User).where(col(User.email) == normalize_email(email)))
        return result.scalar_one_or_none()

    async def login(self, email: str, password: str, address: str) -> TokenPair:
        email = normalize_email(email)
        # Counted up front (not after failing) so a burst of concurrent guesses cannot slip through.
        await self.throttle.attempt(email, address)
        # Looked up and verified before the request's transaction writes anything: on SQLite its first
        # statement takes the single write lock, which must not be held through bcrypt.
        async with self.read_sessions() as reader:
            user = (await reader.execute(select(User).where(col(User.email) == email))).scalar_one_or_none()
        if user is None:
            await dummy_verify_async()
            ok = False
        else:
            ok = await verify_password_async(password, user.password_hash) and user.is_active
        if not ok or user is None:
            LOGINS.labels("failure").inc()
            await self.auditor.record(
                self.session, "auth.login_failed", actor_id=user.id if user else None, email=email
            )
            raise Unauthorized(BAD_LOGIN, commit=True)
        # The login's first write; conditional, so an account locked since the read above is still refused.
        stamped = await self.session.execute(
            update(User)
            .where(col(User.id) == user.id, col(User.is_active).is_(True))
            .values(last_login_at=self.clock.now())
        )
        if stamped.rowcount != 1:  # type: ignore[attr-defined]
            raise Unauthorized(BAD_LOGIN)
        await self.throttle.succeeded(email, address)
        LOGINS.labels("success").inc()
        pair = await self._issue(user, family_id=new_id())
        await self.auditor.record(self.session, "auth.login", actor_id=user.id)
        return pair

    async def refresh(self, token: str) -> TokenPair:
        now = self.clock.now()
        row = (
            await self.session.execute(
                select(RefreshToken).where(col(RefreshToken.token_hash) == hash_refresh_token(token))
            )
        ).scalar_one_or_none()
        if row is None:
            raise Unauthorized(BAD_REFRESH)
        if row.rotated_at is not None:
            await self._reuse_detected(row)
        if row.revoked_at is not None or row.expires_at <= now:  # logged out (or its family revoked), expired
            raise Unauthorized(BAD_REFRESH)
        # Conditional rotation: of two concurrent uses of one token exactly one wins; the other is reuse.
        won = await self.session.execute(
            update(RefreshToken)
            .where(
                col(RefreshToken.id) == row.id,
                col(RefreshToken.rotated_at).is_(None),
                col(RefreshToken.revoked_at).is_(None),
            )
            .values(rotated_at=now)
        )
        if won.rowcount != 1:  # type: ignore[attr-defined]
            await self._reuse_detected(row)
        user = await self.session.get(User, row.user_id)
        if user is None or not user.is_active:
            raise Unauthorized(BAD_REFRESH)
        return await self._issue(user, family_id=row.family_id)

    async def _reuse_detected(self, row: RefreshToken) -> NoReturn:
        """A rotated token came back: someone holds a copy. The whole family is revoked, in the request's
        transaction, which commits although the answer is 401 (nothing else was written before)."""
        await self.session.execute(
            update(RefreshToken)
            .where(col(RefreshToken.family_id) == row.family_id, col(RefreshToken.revoked_at).is_(None))
            .values(revoked_at=self.clock.now())
        )
        await self.auditor.record(
            self.session, "auth.refresh_reuse", actor_id=row.user_id, family_id=row.family_id
        )
        log.warning("refresh token reuse: family revoked", user_id=row.user_id, family_id=row.family_id)
        raise Unauthorized(BAD_REFRESH, commit=True)

    async def logout(self, token: str) -> None:
        row = (
            await self.session.execute(
                select(RefreshToken).where(col(RefreshToken.token_hash) == hash_refresh_token(token))
            )
        ).scalar_one_or_none()
        if row is None:
            return
        await self.session.execute(
            update(RefreshToken)
            .where(col(RefreshToken.family_id) == row.family_id, col(RefreshToken.revoked_at).is_(None))
            .values(revoked_at=self.clock.now())
        )
        await self.auditor.record(self.session, "auth.logout", actor_id=row.user_id)

    async def _issue(self, user: User, *, family_id: str) -> TokenPair:
        access = self.tokens.issue_access(user.id, user.role)
        refresh, digest = new_refresh_token()
        now = self.clock.now()
        self.session.add(
            RefreshToken(
                id=new_id(),
                user_id=user.id,
                family_id=family_id,
                token_hash=digest,
                issued_at=now,
                expires_at=now + timedelta(seconds=self.refresh_ttl_s),
            )
        )
        await self.session.flush()
        return TokenPair(access_token=access.token, refresh_token=refresh, expires_in=access.expires_in)

    async def set_mode(self, user: User, mode: str) -> User:
        if mode == "testnet" and not await has_testnet_keys(self.session, user.id):
            raise Conflict("Save Binance testnet API keys before switching to testnet mode.")
        if user.mode != mode:
            previous = user.mode
            user.mode = mode
            user.updated_at = self.clock.now()
            self.session.add(user)
            await self.session.flush()
            await self.auditor.record(
                self.session, "user.mode", actor_id=user.id, previous=previous, mode=mode
            )
        return user


async def has_testnet_keys(session: AsyncSession, user_id: str) -> bool:
    count = await session.scalar(
        select(func.count())
        .select_from(ExchangeCredential)
        .where(
            col(ExchangeCredential.user_id) == user_id, col(ExchangeCredential.exchange) == TESTNET_EXCHANGE
        )
    )
    return bool(count)


async def ensure_admin(
    sessions: async_sessionmaker[AsyncSession], clock: Clock, email: str, password: str, *, rounds: int
) -> User:
    """Create the admin, or promote an existing account; idempotent (run at every start-up)."""
    email = normalize_email(email)
    async with unit_of_work(sessions) as session:
        user = (await session.execute(select(User).where(col(User.email) == email))).scalar_one_or_none()
        now = clock.now()
        if user is None:
            user = User(
                id=new_id(),
                email=email,
                password_hash=await hash_password_async(password, rounds=rounds),
                role="admin",
                mode="paper",
                created_at=now,
                updated_at=now,
            )
            session.add(user)
            action = "admin.bootstrap_create"
        elif user.role != "admin":
            user.role = "admin"
            user.updated_at = now
            session.add(user)
            action = "admin.bootstrap_promote"
        else:
            return user
        await session.flush()
        await Auditor(clock, ip=None, request_id=None).record(session, action, actor_id=None, target=user.id)
        return user
