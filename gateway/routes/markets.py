"""Public market data: markets and their rules, ticker, depth, recent trades, candles.

Each venue has its own market: `?venue=paper|testnet`; without it, the venue of the caller's mode when the
request carries an access token, else paper. Every answer names its venue."""

from __future__ import annotations

from datetime import UTC, datetime
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


CandleInterval = Literal["1m", "5m", "15m", "1h", "4h", "1d"]
_TIME_DOC = "ISO 8601 (UTC when no offset is given) or Unix time in seconds or milliseconds"


def _utc(ts: datetime | None) -> datetime | None:
    return None if ts is None else ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


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
    interval: Annotated[CandleInterval, Query()] = "1m",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    start_time: Annotated[
        datetime | None,
        Query(
            description=f"Candles starting at or after this time, the oldest `limit` of them; {_TIME_DOC}."
        ),
    ] = None,
    end_time: Annotated[
        datetime | None,
        Query(
            description="Candles starting before this time (exclusive), the newest `limit` of them unless "
            "start_time is given. To page back through a long range, pass the oldest candle's `start` of "
            f"the previous answer; {_TIME_DOC}."
        ),
    ] = None,
) -> list[CandleOut]:
    """Candles oldest first: the most recent `limit`, or a page of a range (`start_time`/`end_time`, as
    Binance's klines page)."""
    rules = _market(rt, symbol)
    since, until = _utc(start_time), _utc(end_time)
    if since is not None and until is not None and since >= until:
        raise InvalidInput("start_time must be before end_time.")
    if venue != PAPER_VENUE:  # the venue's own candles, kept by its feed (pricefeed.testnet_market)
        stored = await rt.market_data.get("candles", f"{rules.symbol}:{interval}", venue=venue) or {}
        kept = [CandleOut.model_validate(c) for c in (stored.get("candles") or [])]
        kept = [c for c in kept if (since is None or c.start >= since) and (until is None or c.start < until)]
        return kept[:limit] if since is not None else kept[-limit:]
    query = select(CandleRow).where(
        col(CandleRow.symbol) == rules.symbol, col(CandleRow.interval) == interval
    )
    if since is not None:
        query = query.where(col(CandleRow.start) >= since)
    if until is not None:
        query = query.where(col(CandleRow.start) < until)
    if since is not None:
        rows = list((await session.execute(query.order_by(col(CandleRow.start)).limit(limit))).scalars())
    else:
        rows = list(
            (await session.execute(query.order_by(col(CandleRow.start).desc()).limit(limit))).scalars()
        )
        rows.reverse()
    return [CandleOut.model_validate(r, from_attributes=True) for r in rows]
