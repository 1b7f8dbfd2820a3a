"""The current user's profile, mode switch and exchange keys."""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.deps import Accounts, CurrentUser, CurrentUserUnlocked, Keys, SessionDep
from gateway.problems import WITH_BODY, problem_responses
from gateway.services.accounts import has_testnet_keys
from shared.credentials import TESTNET_EXCHANGE
from shared.models import User
from shared.schemas.accounts import KeyOut, KeysIn, MeOut, ModeIn

router = APIRouter(prefix="/api", tags=["account"])


async def _me(session: AsyncSession, user: User) -> MeOut:
    return MeOut(
        id=user.id,
        email=user.email,
        role=user.role,
        mode=user.mode,
        has_testnet_keys=await has_testnet_keys(session, user.id),
    )


@router.get("/me", response_model=MeOut, responses=problem_responses(401, 503))
async def me(user: CurrentUser, session: SessionDep) -> MeOut:
    return await _me(session, user)


@router.put("/me/mode", response_model=MeOut, responses=problem_responses(*WITH_BODY, 401, 409))
async def set_mode(body: ModeIn, user: CurrentUser, accounts: Accounts, session: SessionDep) -> MeOut:
    await accounts.set_mode(user, body.mode)
    return await _me(session, user)


@router.put("/keys/binance-testnet", response_model=KeyOut, responses=problem_responses(*WITH_BODY, 401))
async def put_testnet_keys(body: KeysIn, user: CurrentUserUnlocked, keys: Keys) -> KeyOut:
    # The exchange is asked before this request's transaction runs a statement (and takes a lock).
    verified = await keys.verify(body.api_key, body.api_secret)
    row = await keys.store(user, verified, exchange=TESTNET_EXCHANGE)
    return KeyOut(exchange=row.exchange, api_key_hint=row.api_key_hint, created_at=row.created_at)


@router.get("/keys", response_model=list[KeyOut], responses=problem_responses(401, 503))
async def list_keys(user: CurrentUser, keys: Keys) -> list[KeyOut]:
    return [
        KeyOut(exchange=r.exchange, api_key_hint=r.api_key_hint, created_at=r.created_at)
        for r in await keys.list(user)
    ]


@router.delete(
    "/keys/binance-testnet",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 404, 503),
)
async def delete_testnet_keys(user: CurrentUser, keys: Keys) -> Response:
    await keys.delete(user, TESTNET_EXCHANGE)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
