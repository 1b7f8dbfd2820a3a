"""Exchange API keys: checked against the exchange, encrypted at rest bound to their owner, never shown.

The credential store itself (decryption, rotation) is `shared.credentials`: execution reads it too."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from gateway.services.audit import Auditor
from shared.clock import Clock
from shared.credentials import TESTNET_EXCHANGE, KeyVerifier, PlainKeys
from shared.errors import NotFound
from shared.ids import new_id
from shared.models import ExchangeCredential, User
from shared.outbox import add_outbox
from shared.security.crypto import KeyRing, mask_secret
from shared.security.crypto import key_aad as aad
from shared.streams import TESTNET_KEYS


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
        self._announce(user.id, exchange, now)
        return row

    async def list(self, user: User) -> list[ExchangeCredential]:
        result = await self.session.execute(
            select(ExchangeCredential)
            .where(col(ExchangeCredential.user_id) == user.id)
            .order_by(col(ExchangeCredential.exchange))
        )
        return list(result.scalars())

    async def delete(self, user: User, exchange: str = TESTNET_EXCHANGE) -> None:
        result = await self.session.execute(
            delete(ExchangeCredential).where(
                col(ExchangeCredential.user_id) == user.id, col(ExchangeCredential.exchange) == exchange
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
        self._announce(user.id, exchange, self.clock.now())

    def _announce(self, user_id: str, exchange: str, now: datetime) -> None:
        """Tell the execution processes (after the commit, through the outbox) that the user's keys changed, so
        their data stream starts, switches or stops now rather than with their next order."""
        if exchange == TESTNET_EXCHANGE:
            add_outbox(self.session, TESTNET_KEYS, {"user_id": user_id}, now=now)

    async def _get(self, user_id: str, exchange: str) -> ExchangeCredential | None:
        result = await self.session.execute(
            select(ExchangeCredential).where(
                col(ExchangeCredential.user_id) == user_id, col(ExchangeCredential.exchange) == exchange
            )
        )
        return result.scalar_one_or_none()
