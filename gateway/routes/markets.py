"""Public market data: markets and their rules, ticker, depth, recent trades, candles.

Each venue has its own market: `?venue=paper|testnet`; without it, the venue of the caller's mode when the
request carries an access token, else paper. Every answer names its venue."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlmodel import col

from execution.paper.rules import MarketRules
from gateway.deps import PartsDep, SessionDep
from gateway.problems import COMMON, problem_responses
from gateway.services.orders import rules_for
from shared.errors import InvalidInput, NotFound, Unauthorized
from shared.models import CandleRow, User
from shared.schemas.orders import CandleOut
from shared.streams import PAPER_VENUE

router = APIRouter(prefix="/api/markets", tags=["market data"])

Venue = Literal["paper", "testnet"]
_optional_bearer = HTTPBearer(
    auto_error=False, description="Optional: the venue defaults to the caller's mode"
)


async def market_venue(
    rt: PartsDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_optional_bearer)],
    venue: Annotated[
        Venue | None, Query(description="paper or testnet; default: the caller's mode, else paper")
    ] = None,
) -> str:
    """The venue whose market a request means. A token that is sent must be valid (401): answering with the
    paper market instead would show a testnet-mode user the wrong book, which is what this parameter fixes."""
    if venue is not None:
        return venue
    if creds is None:
        return PAPER_VENUE
    if creds.scheme.lower() != "bearer":
        raise Unauthorized("Send an access token: Authorization: Bearer <token>.")
    user_id = rt.tokens.decode_access(creds.credentials).sub
    async with rt.read_sessions() as reader:
        user = await reader.get(User, user_id)
    if user is None or not user.is_active:
        raise Unauthorized()
    return user.mode


VenueDep = Annotated[str, Depends(market_venue)]
# OpenAPI for the routes taking VenueDep: the bearer token is optional there (it only picks the default venue),
# which an empty requirement next to HTTPBearer says; FastAPI alone would declare the token required.
OPTIONAL_AUTH: dict[str, Any] = {"security": [{}]}


def _market(rt: PartsDep, symbol: str) -> MarketRules:
    """A symbol in the path names the resource: an unknown one is not there (404). In a body (orders,
    quotes) it is a field with a bad value and stays a 422."""
    try:
        return rules_for(rt.markets, symbol)
    except InvalidInput:
        raise NotFound(f"Unknown symbol {symbol}; see GET /api/markets.") from None


@router.get("")
async def markets(rt: PartsDep) -> list[dict[str, str]]:
    return [r.public() for r in rt.markets.values()]


@router.get("/{symbol}/ticker", responses=problem_responses(401, 404, 422), openapi_extra=OPTIONAL_AUTH)
async def ticker(symbol: str, rt: PartsDep, venue: VenueDep) -> dict[str, Any]:
    rules = _market(rt, symbol)
    value = await rt.market_data.get("ticker", rules.symbol, venue=venue)
    if value is None:
        raise NotFound(f"No {venue} price for {rules.symbol} yet.")
    return {**value, "venue": venue}


@router.get("/{symbol}/depth", responses=problem_responses(401, 404, 422), openapi_extra=OPTIONAL_AUTH)
async def depth(
    symbol: str, rt: PartsDep, venue: VenueDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> dict[str, Any]:
    rules = _market(rt, symbol)
    value = await rt.market_data.get("depth", rules.symbol, venue=venue) or {
        "symbol": rules.symbol,
        "bids": [],
        "asks": [],
    }
    return {
        **value,
        "bids": value.get("bids", [])[:limit],
        "asks": value.get("asks", [])[:limit],
        "venue": venue,
    }


@router.get("/{symbol}/trades", responses=problem_responses(401, 404, 422), openapi_extra=OPTIONAL_AUTH)
async def trades(
    symbol: str, rt: PartsDep, venue: VenueDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[dict[str, Any]]:
    rules = _market(rt, symbol)
    return [
        {**t, "venue": venue} for t in await rt.market_data.recent_trades(rules.symbol, limit, venue=venue)
    ]


@router.get(
    "/{symbol}/candles",
    response_model=list[CandleOut],
    responses=problem_responses(401, 404, *COMMON),
    openapi_extra=OPTIONAL_AUTH,
)
async def candles(
    symbol: str,
    rt: PartsDep,
    session: SessionDep,
    venue: VenueDep,
    interval: Annotated[Literal["1m", "5m", "1h"], Query()] = "1m",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[CandleOut]:
    rules = _market(rt, symbol)
    if venue != PAPER_VENUE:  # the venue's own candles, kept by its feed (pricefeed.testnet_market)
        stored = await rt.market_data.get("candles", f"{rules.symbol}:{interval}", venue=venue) or {}
        return [CandleOut.model_validate(c) for c in (stored.get("candles") or [])[-limit:]]
    rows = (
        await session.execute(
            select(CandleRow)
            .where(col(CandleRow.symbol) == rules.symbol, col(CandleRow.interval) == interval)
            .order_by(col(CandleRow.start).desc())
            .limit(limit)
        )
    ).scalars()
    return [CandleOut.model_validate(r, from_attributes=True) for r in reversed(list(rows))]
