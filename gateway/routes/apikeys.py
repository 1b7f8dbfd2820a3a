"""The user's TradeBridge API keys (for the Binance-compatible API under /binance): create, list, revoke."""

from __future__ import annotations

import contextlib
import ipaddress
import re
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Response, status
from pydantic import AfterValidator, BaseModel, Field, WithJsonSchema

from gateway.binance_api.parts import PartsDep
from gateway.deps import AuditorDep, CurrentUser, SessionDep
from gateway.problems import AUTHENTICATED, WITH_BODY, problem_responses
from gateway.services.apikeys import ApiKeyService
from shared.models import ApiKey

router = APIRouter(prefix="/api/api-keys", tags=["api keys"])


Scope = Literal["read", "trade"]
_ALL_SCOPES: tuple[Scope, ...] = ("read", "trade")


_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_HEX = "[0-9a-fA-F]{1,4}"
_IPV6 = "|".join(
    (
        f"(?:{_HEX}:){{7}}{_HEX}",
        f"(?:{_HEX}:){{1,7}}:",
        *(f"(?:{_HEX}:){{1,{7 - n}}}(?::{_HEX}){{1,{n}}}" for n in range(1, 7)),
        f":(?:(?::{_HEX}){{1,7}}|:)",
    )
)
_IPV4_NETWORK = rf"^{_OCTET}(?:\.{_OCTET}){{3}}/(?:3[0-2]|[12]?\d)$"
_IPV6_NETWORK = rf"^(?:{_IPV6})/(?:12[0-8]|1[01]\d|[1-9]?\d)$"


def _address_or_network(value: str) -> str:
    """What the document promises, no more: an IPv4 or IPv6 address, or one in CIDR notation."""
    if "/" in value:
        if re.match(_IPV4_NETWORK, value) or re.match(_IPV6_NETWORK, value):
            return value
    elif "%" not in value:  # no IPv6 zone: not the `ipv6` format, and no network
        with contextlib.suppress(ValueError):
            ipaddress.ip_address(value)
            return value
    raise ValueError("not an IP address or network")


# Declared with formats and patterns a client (and Schemathesis) can generate from, and validated to match them.
AllowedAddress = Annotated[
    str,
    AfterValidator(_address_or_network),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "ipv4"},
                {"type": "string", "format": "ipv6"},
                {"type": "string", "pattern": _IPV4_NETWORK},
                {"type": "string", "pattern": _IPV6_NETWORK},
            ],
            "description": "An IP address, or a network in CIDR notation (203.0.113.7, 10.0.0.0/8, 2001:db8::/32).",
        }
    ),
]


class ApiKeyIn(BaseModel):
    label: str = Field(default="", max_length=64)
    scopes: list[Scope] = Field(default_factory=lambda: list(_ALL_SCOPES), min_length=1)
    ip_allowlist: list[AllowedAddress] = Field(default_factory=list, max_length=20)


class ApiKeyOut(BaseModel):
    id: str
    label: str
    api_key_hint: str
    scopes: list[str]
    ip_allowlist: list[str]
    created_at: datetime
    revoked_at: datetime | None = None


class ApiKeyCreated(ApiKeyOut):
    api_key: str = Field(description="Send as the X-MBX-APIKEY header. Shown once.")
    secret: str = Field(description="The HMAC-SHA256 signing secret. Shown once, never again.")


async def get_api_key_service(rt: PartsDep, session: SessionDep, auditor: AuditorDep) -> ApiKeyService:
    return ApiKeyService(session=session, keyring=rt.keyring, clock=rt.clock, auditor=auditor)


ApiKeys = Annotated[ApiKeyService, Depends(get_api_key_service)]


def _out(row: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(**row.public())


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ApiKeyCreated,
    responses=problem_responses(*WITH_BODY, 401),
)
async def create_api_key(body: ApiKeyIn, user: CurrentUser, keys: ApiKeys) -> ApiKeyCreated:
    issued = await keys.create(user.id, label=body.label, scopes=body.scopes, ip_allowlist=body.ip_allowlist)
    return ApiKeyCreated(**issued.row.public(), api_key=issued.api_key, secret=issued.secret)


@router.get("", response_model=list[ApiKeyOut], responses=problem_responses(*AUTHENTICATED))
async def list_api_keys(user: CurrentUser, keys: ApiKeys) -> list[ApiKeyOut]:
    return [_out(r) for r in await keys.list(user.id)]


@router.delete(
    "/{key_id}", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(*AUTHENTICATED, 404)
)
async def revoke_api_key(
    key_id: Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[a-z0-9]+$")],
    user: CurrentUser,
    keys: ApiKeys,
) -> Response:
    await keys.revoke(user.id, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
