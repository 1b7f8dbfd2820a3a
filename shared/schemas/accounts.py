"""Request and response bodies of the account endpoints."""

from __future__ import annotations

import unicodedata
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, field_validator

Mode = Literal["paper", "testnet"]


def _no_control_characters(value: str) -> str:
    """Credentials are text people type: a control character (NUL, ESC, DEL, C1) is a client error here,
    not a 500 from a database that refuses NUL in text or a hash that would differ per driver."""
    if any(unicodedata.category(c) == "Cc" for c in value):
        raise ValueError("must not contain control characters")
    return value


# The same rule, stated in the OpenAPI document (Cc is exactly U+0000-U+001F and U+007F-U+009F).
NO_CONTROL_CHARACTERS = r"^[^\u0000-\u001F\u007F-\u009F]*$"
Printable = Annotated[
    str, AfterValidator(_no_control_characters), Field(json_schema_extra={"pattern": NO_CONTROL_CHARACTERS})
]
# Exchange API keys and secrets: visible ASCII (Binance's are letters and digits). A control character would
# otherwise reach the exchange client's HTTP headers and fail there (a 500).
API_CREDENTIAL = r"^[!-~]+$"


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class RegisterIn(_In):
    email: Annotated[EmailStr, AfterValidator(_no_control_characters)] = Field(
        max_length=320, json_schema_extra={"pattern": NO_CONTROL_CHARACTERS}
    )
    password: Printable = Field(min_length=8, max_length=1024)
    binance_api_key: str | None = Field(default=None, min_length=1, max_length=256, pattern=API_CREDENTIAL)
    binance_api_secret: str | None = Field(default=None, min_length=1, max_length=256, pattern=API_CREDENTIAL)


class LoginIn(_In):
    email: Printable = Field(min_length=1, max_length=320)
    password: Printable = Field(min_length=1, max_length=1024)


class RefreshIn(_In):
    refresh_token: str = Field(min_length=1, max_length=512)


class ModeIn(_In):
    mode: Mode

    @field_validator("mode", mode="before")
    @classmethod
    def _lower(cls, v: object) -> object:
        return v.strip().lower() if isinstance(v, str) else v


class KeysIn(_In):
    api_key: str = Field(min_length=8, max_length=256, pattern=API_CREDENTIAL)
    api_secret: str = Field(min_length=8, max_length=256, pattern=API_CREDENTIAL)


class UserOut(BaseModel):
    id: str
    email: str
    role: str
    mode: Mode


class MeOut(UserOut):
    has_testnet_keys: bool


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class KeyOut(BaseModel):
    exchange: str
    api_key_hint: str
    created_at: datetime
