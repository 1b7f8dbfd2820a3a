"""The user's TradeBridge API keys (for the Binance-compatible API under /binance): create, list, revoke."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Response, status
from pydantic import BaseModel, Field

from gateway.binance_api.parts import PartsDep
from gateway.deps import AuditorDep, CurrentUser, SessionDep
from gateway.problems import AUTHENTICATED, WITH_BODY, problem_responses
from gateway.services.apikeys import ApiKeyService
from shared.models import ApiKey

router = APIRouter(prefix="/api/api-keys", tags=["api keys"])


Scope = Literal["read", "trade"]
_ALL_SCOPES: tuple[Scope, ...] = ("read", "trade")


class ApiKeyIn(BaseModel):
    label: str = Field(default="", max_length=64)
    scopes: list[Scope] = Field(default_factory=lambda: list(_ALL_SCOPES), min_length=1)
    ip_allowlist: list[Annotated[str, Field(max_length=64)]] = Field(default_factory=list, max_length=20)


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
