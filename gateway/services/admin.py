"""The admin console: the user list (search and filters), locking and unlocking users, the audit log's filters.

Locking sets ``users.is_active`` false, which every way in already refuses (password login, refresh, bearer
tokens, Binance-compatible API keys), keeps the time in ``locked_at``, and revokes the user's refresh tokens so
unlocking does not bring old sessions back, and announces the lock on the bus (``USER_EVENTS``, through the
outbox, so only once committed): every events process closes the user's open sockets then, instead of when
their access token expires. The service flushes; the request owns the transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, false, func, or_, true, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from gateway.services.audit import Auditor
from shared.clock import Clock
from shared.credentials import TESTNET_EXCHANGE
from shared.errors import Conflict, InvalidInput, NotFound, Unauthorized
from shared.models import AuditLog, ExchangeCredential, RefreshToken, User
from shared.outbox import add_outbox
from shared.schemas.admin import AdminUserOut, AuditEntryOut
from shared.streams import USER_EVENTS, USER_LOCKED


@dataclass(frozen=True, slots=True)
class UserQuery:
    search: str | None = None  # part of the email, or a whole user id
    role: str | None = None
    mode: str | None = None
    status: str | None = None  # active | locked
    limit: int = 50
    offset: int = 0


@dataclass(frozen=True, slots=True)
class AuditQuery:
    actor: str | None = None  # a user id, or an email
    action: str | None = None  # an action ("auth.login") or its dotted prefix ("auth")
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive
    limit: int = 50
    offset: int = 0


def _has_testnet_keys() -> Any:
    return (
        exists()
        .where(
            col(ExchangeCredential.user_id) == col(User.id),
            col(ExchangeCredential.exchange) == TESTNET_EXCHANGE,
        )
        .label("has_testnet_keys")
    )


def _user_out(user: User, has_keys: bool) -> AdminUserOut:
    return AdminUserOut(
        id=user.id,
        email=user.email,
        role=user.role,
        mode=user.mode,
        has_testnet_keys=has_keys,
        created_at=user.created_at,
        is_active=user.is_active,
        status="active" if user.is_active else "locked",
        locked_at=user.locked_at,
        last_login_at=user.last_login_at,
    )


class AdminService:
    def __init__(self, session: AsyncSession, clock: Clock, auditor: Auditor) -> None:
        self.session = session
        self.clock = clock
        self.auditor = auditor

    async def users(self, q: UserQuery) -> tuple[list[AdminUserOut], int]:
        """One page of users (oldest first) and how many match in all."""
        where: list[ColumnElement[bool]] = []
        if q.search:
            term = q.search.strip().lower()
            where.append(
                or_(col(User.email).contains(term, autoescape=True), col(User.id) == q.search.strip())
            )
        if q.role:
            where.append(col(User.role) == q.role)
        if q.mode:
            where.append(col(User.mode) == q.mode)
        if q.status:
            where.append(col(User.is_active).is_(true() if q.status == "active" else false()))
        total = await self.session.scalar(select(func.count()).select_from(User).where(*where))
        rows = await self.session.execute(
            select(User, _has_testnet_keys())
            .where(*where)
            .order_by(col(User.created_at), col(User.id))
            .limit(q.limit)
            .offset(q.offset)
        )
        return [_user_out(user, bool(keys)) for user, keys in rows.all()], int(total or 0)

    async def set_locked(self, admin: User, user_id: str, locked: bool) -> AdminUserOut:
        """Lock or unlock ``user_id``; audited when it changes anything. Refused (409) for the admin's own
        account and for the last active admin, so the console can never lock every admin out."""
        if locked and user_id == admin.id:
            raise Conflict("You cannot lock your own account.")
        if locked:
            # The active admins' rows first, in id order (two admins locking each other wait in line, never
            # deadlock): the second of them finds itself the last admin standing, or itself locked.
            admins = set(
                (
                    await self.session.execute(
                        select(col(User.id))
                        .where(col(User.role) == "admin", col(User.is_active).is_(True))
                        .order_by(col(User.id))
                        .with_for_update()
                    )
                ).scalars()
            )
            if admin.id not in admins:
                raise Unauthorized()
            if admins <= {user_id}:
                raise Conflict("This is the last active admin account; it cannot be locked.")
        user = (
            await self.session.execute(select(User).where(col(User.id) == user_id).with_for_update())
        ).scalar_one_or_none()
        if user is None:
            raise NotFound(f"No user {user_id}.")
        if user.is_active == (not locked):
            return await self._out(user)
        now = self.clock.now()
        user.is_active = not locked
        user.locked_at = now if locked else None
        user.updated_at = now
        self.session.add(user)
        await self.session.flush()
        revoked = 0
        if locked:
            result = await self.session.execute(
                update(RefreshToken)
                .where(col(RefreshToken.user_id) == user_id, col(RefreshToken.revoked_at).is_(None))
                .values(revoked_at=now)
            )
            revoked = int(result.rowcount)  # type: ignore[attr-defined]
            add_outbox(
                self.session,
                USER_EVENTS,
                {"type": USER_LOCKED, "user_id": user.id, "ts": now.isoformat()},
                now=now,
            )
        await self.auditor.record(
            self.session,
            "admin.user_lock" if locked else "admin.user_unlock",
            actor_id=admin.id,
            target=user.id,
            email=user.email,
            **({"refresh_tokens_revoked": revoked} if locked else {}),
        )
        return await self._out(user)

    async def _out(self, user: User) -> AdminUserOut:
        keys = await self.session.scalar(select(_has_testnet_keys()).where(col(User.id) == user.id))
        return _user_out(user, bool(keys))

    async def audit_log(self, q: AuditQuery) -> tuple[list[AuditEntryOut], int]:
        """One page of the audit log, newest first, and how many entries match in all."""
        if q.since is not None and q.until is not None and q.since >= q.until:
            raise InvalidInput(
                "since must be before until.", errors=[{"field": "since", "message": "must be before until"}]
            )
        where: list[ColumnElement[bool]] = []
        if q.actor:
            actor = q.actor.strip()
            if "@" in actor:
                ids = select(col(User.id)).where(col(User.email) == actor.lower())
                where.append(col(AuditLog.actor_id).in_(ids))
            else:
                where.append(col(AuditLog.actor_id) == actor)
        if q.action:
            action = q.action.strip().rstrip(".")
            where.append(
                or_(
                    col(AuditLog.action) == action,
                    col(AuditLog.action).startswith(action + ".", autoescape=True),
                )
            )
        if q.since is not None:
            where.append(col(AuditLog.ts) >= q.since)
        if q.until is not None:
            where.append(col(AuditLog.ts) < q.until)
        condition = and_(true(), *where)
        total = await self.session.scalar(select(func.count()).select_from(AuditLog).where(condition))
        rows = await self.session.execute(
            select(AuditLog, col(User.email))
            .outerjoin(User, col(User.id) == col(AuditLog.actor_id))
            .where(condition)
            .order_by(col(AuditLog.ts).desc(), col(AuditLog.id).desc())
            .limit(q.limit)
            .offset(q.offset)
        )
        out = [
            AuditEntryOut(
                id=int(entry.id or 0),
                ts=entry.ts,
                actor_id=entry.actor_id,
                actor_email=email,
                action=entry.action,
                target=entry.target,
                ip=entry.ip,
                request_id=entry.request_id,
                details=entry.details or {},
            )
            for entry, email in rows.all()
        ]
        return out, int(total or 0)
