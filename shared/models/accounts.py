"""Accounts: users, refresh token families, encrypted exchange credentials and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from shared.db import UTCDateTime


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: str = Field(primary_key=True, max_length=32)
    email: str = Field(max_length=320, unique=True, index=True)  # stored normalised (lower-case)
    password_hash: str = Field(max_length=128)
    role: str = Field(default="user", max_length=16)
    mode: str = Field(default="paper", max_length=16)
    is_active: bool = Field(default=True)  # false: locked by an admin (every authentication refuses it)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)
    locked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # when an admin locked it
    last_login_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # last password login


class RefreshToken(SQLModel, table=True):
    __tablename__ = "refresh_tokens"
    __table_args__ = (Index("ix_refresh_tokens_family", "family_id"),)

    id: str = Field(primary_key=True, max_length=32)
    user_id: str = Field(foreign_key="users.id", index=True, max_length=32, ondelete="CASCADE")
    family_id: str = Field(max_length=32)
    token_hash: str = Field(max_length=64, unique=True)
    issued_at: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    rotated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class ExchangeCredential(SQLModel, table=True):
    __tablename__ = "exchange_credentials"
    __table_args__ = (UniqueConstraint("user_id", "exchange", name="uq_exchange_credentials_user_exchange"),)

    id: str = Field(primary_key=True, max_length=32)
    user_id: str = Field(foreign_key="users.id", index=True, max_length=32, ondelete="CASCADE")
    exchange: str = Field(max_length=32)
    api_key_ciphertext: str = Field(max_length=1024)
    api_secret_ciphertext: str = Field(max_length=1024)
    api_key_hint: str = Field(max_length=16)
    created_at: datetime = Field(sa_type=UTCDateTime)
    updated_at: datetime = Field(sa_type=UTCDateTime)


class AuditLog(SQLModel, table=True):
    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_ts", "ts"),)

    id: int | None = Field(default=None, primary_key=True)
    ts: datetime = Field(sa_type=UTCDateTime)
    actor_id: str | None = Field(default=None, max_length=32, index=True)
    action: str = Field(max_length=64)
    target: str | None = Field(default=None, max_length=128)
    ip: str | None = Field(default=None, max_length=64)
    request_id: str | None = Field(default=None, max_length=64)
    details: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
