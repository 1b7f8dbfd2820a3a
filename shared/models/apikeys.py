"""API keys that TradeBridge issues for its Binance-compatible API (not the exchange keys users store)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column
from sqlmodel import Field, SQLModel

from shared.db import UTCDateTime


class ApiKey(SQLModel, table=True):
    """One issued key. The API key itself is stored only as its SHA-256 (it is looked up, never shown again);
    the HMAC secret must be readable to verify signatures, so it is encrypted with the key ring, bound to its
    owner and row. Revoked keys stay (revoked_at set) for the audit trail."""

    __tablename__ = "api_keys"

    id: str = Field(primary_key=True, max_length=32)
    user_id: str = Field(foreign_key="users.id", index=True, max_length=32, ondelete="CASCADE")
    label: str = Field(default="", max_length=64)
    key_hash: str = Field(max_length=64, unique=True, index=True)
    key_hint: str = Field(max_length=16)
    secret_ciphertext: str = Field(max_length=1024)
    scopes: str = Field(max_length=32)  # comma-separated: read,trade
    ip_allowlist: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)

    def scope_set(self) -> frozenset[str]:
        return frozenset(s for s in self.scopes.split(",") if s)

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "api_key_hint": self.key_hint,
            "scopes": sorted(self.scope_set()),
            "ip_allowlist": list(self.ip_allowlist),
            "created_at": self.created_at,
            "revoked_at": self.revoked_at,
        }
