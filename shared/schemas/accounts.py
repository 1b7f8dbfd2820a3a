"""Request and response bodies of the account endpoints."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

Mode = Literal["paper", "testnet"]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class RegisterIn(_In):
    email: EmailStr = Field(max_length=320)
    password: str = Field(min_length=8, max_length=1024)
    binance_api_key: str | None = Field(default=None, min_length=1, max_length=256)
    binance_api_secret: str | None = Field(default=None, min_length=1, max_length=256)


class LoginIn(_In):
    email: str = Field(min_length=1, max_length=320)
    password: str = Field(min_length=1, max_length=1024)


class RefreshIn(_In):
    refresh_token: str = Field(min_length=1, max_length=512)


class ModeIn(_In):
    mode: Mode

    @field_validator("mode", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v


class KeysIn(_In):
    api_key: str = Field(min_length=8, max_length=256, pattern=r"^\S+$")
    api_secret: str = Field(min_length=8, max_length=256, pattern=r"^\S+$")


class UserOut(BaseModel):
    id: str
    email: str
    role: str
    mode: Mode


class MeOut(UserOut):
    has_testnet_keys: bool


class AdminUserOut(MeOut):
    created_at: datetime
    is_active: bool


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class KeyOut(BaseModel):
    exchange: str
    api_key_hint: str
    created_at: datetime
