"""TradeBridge API keys for the Binance-compatible API: issued, listed and revoked by their owner, audited.
The store and the signing rules are in ``shared.apikeys`` (the WebSocket side uses them too)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from gateway.services.audit import Auditor
from shared.apikeys import SCOPES, IssuedKey, issue_key, list_keys, revoke_key
from shared.clock import Clock
from shared.models import ApiKey
from shared.security.crypto import KeyRing


@dataclass
class ApiKeyService:
    session: AsyncSession
    keyring: KeyRing
    clock: Clock
    auditor: Auditor

    async def create(
        self,
        user_id: str,
        *,
        label: str = "",
        scopes: Iterable[str] = SCOPES,
        ip_allowlist: Iterable[str] = (),
    ) -> IssuedKey:
        issued = await issue_key(
            self.session,
            self.keyring,
            self.clock,
            user_id,
            label=label,
            scopes=scopes,
            ip_allowlist=ip_allowlist,
        )
        row = issued.row
        await self.auditor.record(
            self.session,
            "apikeys.create",
            actor_id=user_id,
            target=row.id,
            hint=row.key_hint,
            scopes=row.scopes,
            ip_allowlist=list(row.ip_allowlist),
        )
        return issued

    async def list(self, user_id: str) -> list[ApiKey]:
        return await list_keys(self.session, user_id)

    async def revoke(self, user_id: str, key_id: str) -> ApiKey:
        row = await revoke_key(self.session, self.clock, user_id, key_id)
        await self.auditor.record(
            self.session, "apikeys.revoke", actor_id=user_id, target=row.id, hint=row.key_hint
        )
        return row
