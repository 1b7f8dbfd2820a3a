"""Registration, login, token refresh and logout."""

from __future__ import annotations

from fastapi import APIRouter, Response, status

from gateway.deps import Accounts, ClientAddress, Keys
from gateway.problems import WITH_BODY, problem_responses
from shared.errors import InvalidInput
from shared.schemas.accounts import LoginIn, RefreshIn, RegisterIn, TokenPair, UserOut

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    response_model=UserOut,
    responses=problem_responses(*WITH_BODY, 409),
)
async def register(body: RegisterIn, accounts: Accounts, keys: Keys) -> UserOut:
    if (body.binance_api_key is None) != (body.binance_api_secret is None):
        raise InvalidInput(
            "Give both binance_api_key and binance_api_secret, or neither.",
            errors=[{"field": "binance_api_secret", "message": "required together with binance_api_key"}],
        )
    verified = None
    if body.binance_api_key and body.binance_api_secret:
        # Refusals that need no exchange first; then the exchange, before this request's transaction runs a
        # statement (and, on SQLite, takes the write lock).
        await accounts.check_new(body.email, body.password)
        verified = await keys.verify(body.binance_api_key, body.binance_api_secret)
    user = await accounts.register(body.email, body.password)
    if verified is not None:
        await keys.store(user, verified)
    return UserOut(id=user.id, email=user.email, role=user.role, mode=user.mode)


@router.post("/login", response_model=TokenPair, responses=problem_responses(*WITH_BODY, 401, 429))
async def login(body: LoginIn, accounts: Accounts, address: ClientAddress) -> TokenPair:
    return await accounts.login(body.email, body.password, address)


@router.post("/refresh", response_model=TokenPair, responses=problem_responses(*WITH_BODY, 401))
async def refresh(body: RefreshIn, accounts: Accounts) -> TokenPair:
    return await accounts.refresh(body.refresh_token)


@router.post("/logout", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(*WITH_BODY))
async def logout(body: RefreshIn, accounts: Accounts) -> Response:
    await accounts.logout(body.refresh_token)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
