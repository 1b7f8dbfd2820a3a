"""The exchange credential store below the services: the gateway stores keys, the execution worker and
reconciliation decrypt them (``load_plain_keys``), the CLI rotates them. Keys are bound to their owner and
exchange by the AES-GCM associated data, never logged, never returned by the API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from shared.models import ExchangeCredential
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


async def load_plain_keys(
    session: AsyncSession, keyring: KeyRing, user_id: str, exchange: str = TESTNET_EXCHANGE
) -> PlainKeys | None:
    """Decrypt a user's keys for the venue adapter (execution side); never logged, never returned by the API."""
    row = (
        await session.execute(
            select(ExchangeCredential).where(
                col(ExchangeCredential.user_id) == user_id, col(ExchangeCredential.exchange) == exchange
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
