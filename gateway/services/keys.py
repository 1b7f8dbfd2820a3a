"""Exchange API keys: checked against the exchange, encrypted at rest bound to their owner, never shown."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.services.audit import Auditor
from shared.clock import Clock
from shared.errors import NotFound
from shared.ids import new_id
from shared.models import ExchangeCredential, User
from shared.security.crypto import KeyRing, mask_secret
from shared.security.crypto import key_aad as aad

TESTNET_EXCHANGE = "binance-testnet"


class KeyVerifier(Protocol):
    async def verify(self, api_key: str, api_secret: str) -> None:
        """Raise InvalidInput if the exchange rejects the keys, Unavailable if it can't be reached."""
        ...


@dataclass(frozen=True, slots=True)
class PlainKeys:
    api_key: str
    api_secret: str

    def __repr__(self) -> str:
        return f"PlainKeys(api_key={mask_secret(self.api_key)!r}, api_secret='***')"


@dataclass(frozen=True, slots=True, repr=False)  # repr=False: keep PlainKeys' masked one
class VerifiedKeys(PlainKeys):
    """Keys the exchange accepted; only ``KeyService.verify`` makes them, and only they are stored."""


@dataclass
class KeyService:
    session: AsyncSession
    keyring: KeyRing
    clock: Clock
    auditor: Auditor
    verifier: KeyVerifier

    async def verify(self, api_key: str, api_secret: str) -> VerifiedKeys:
        """Ask the exchange (a network call, seconds when it is slow). Call it before the request's transaction
        runs its first statement: on SQLite that statement takes the single write lock (BEGIN IMMEDIATE), which
        every other writer would wait for meanwhile."""
        await self.verifier.verify(api_key, api_secret)
        return VerifiedKeys(api_key, api_secret)

    async def store(
        self, user: User, keys: VerifiedKeys, *, exchange: str = TESTNET_EXCHANGE
    ) -> ExchangeCredential:
        api_key, api_secret = keys.api_key, keys.api_secret
        now = self.clock.now()
        row = await self._get(user.id, exchange)
        created = row is None
        if row is None:
            row = ExchangeCredential(
                id=new_id(),
                user_id=user.id,
                exchange=exchange,
                api_key_ciphertext="",
                api_secret_ciphertext="",
                api_key_hint="",
                created_at=now,
                updated_at=now,
            )
        row.api_key_ciphertext = self.keyring.encrypt(api_key, aad(user.id, exchange, "api_key"))
        row.api_secret_ciphertext = self.keyring.encrypt(api_secret, aad(user.id, exchange, "api_secret"))
        row.api_key_hint = mask_secret(api_key)
        row.updated_at = now
        self.session.add(row)
        await self.session.flush()
        await self.auditor.record(
            self.session,
            "keys.set",
            actor_id=user.id,
            target=exchange,
            created=created,
            hint=row.api_key_hint,
        )
        return row

    async def list(self, user: User) -> list[ExchangeCredential]:
        result = await self.session.execute(
            select(ExchangeCredential)
            .where(ExchangeCredential.user_id == user.id)
            .order_by(ExchangeCredential.exchange)
        )
        return list(result.scalars())

    async def delete(self, user: User, exchange: str = TESTNET_EXCHANGE) -> None:
        result = await self.session.execute(
            delete(ExchangeCredential).where(
                ExchangeCredential.user_id == user.id, ExchangeCredential.exchange == exchange
            )
        )
        if not result.rowcount:  # type: ignore[attr-defined]
            raise NotFound(f"No {exchange} keys are stored.")
        if user.mode == "testnet" and exchange == TESTNET_EXCHANGE:
            user.mode = "paper"
            user.updated_at = self.clock.now()
            self.session.add(user)
        await self.session.flush()
        await self.auditor.record(self.session, "keys.delete", actor_id=user.id, target=exchange)

    async def _get(self, user_id: str, exchange: str) -> ExchangeCredential | None:
        result = await self.session.execute(
            select(ExchangeCredential).where(
                ExchangeCredential.user_id == user_id, ExchangeCredential.exchange == exchange
            )
        )
        return result.scalar_one_or_none()


async def load_plain_keys(
    session: AsyncSession, keyring: KeyRing, user_id: str, exchange: str = TESTNET_EXCHANGE
) -> PlainKeys | None:
    """Decrypt a user's keys for the venue adapter (execution side); never logged, never returned by the API."""
    row = (
        await session.execute(
            select(ExchangeCredential).where(
                ExchangeCredential.user_id == user_id, ExchangeCredential.exchange == exchange
            )
        )
    ).scalar_one_or_none()
    if row is None:
        return None
    return PlainKeys(
        keyring.decrypt(row.api_key_ciphertext, aad(user_id, exchange, "api_key")),
        keyring.decrypt(row.api_secret_ciphertext, aad(user_id, exchange, "api_secret")),
    )


async def rotate_all(session: AsyncSession, keyring: KeyRing) -> tuple[int, int]:
    """Re-encrypt every row under the primary key; returns (rotated, total)."""
    rows = list((await session.execute(select(ExchangeCredential))).scalars())
    rotated = 0
    for row in rows:
        if keyring.needs_rotation(row.api_key_ciphertext) or keyring.needs_rotation(
            row.api_secret_ciphertext
        ):
            for field in ("api_key", "api_secret"):
                attr = f"{field}_ciphertext"
                plain = keyring.decrypt(getattr(row, attr), aad(row.user_id, row.exchange, field))
                setattr(row, attr, keyring.encrypt(plain, aad(row.user_id, row.exchange, field)))
            session.add(row)
            rotated += 1
    await session.flush()
    return rotated, len(rows)
