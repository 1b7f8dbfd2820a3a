"""Public market data: markets and their rules, ticker, depth, recent trades, candles.

Each venue has its own market: `?venue=paper|testnet`; without it, the venue of the caller's mode when the
request carries an access token, else paper. Every answer names its venue."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BeforeValidator, WithJsonSchema
from sqlalchemy import select
from sqlmodel import col

from gateway.deps import PartsDep, SessionDep
from gateway.problems import COMMON, problem_responses
from gateway.services.orders import rules_for
from shared.errors import InvalidInput, NotFound, Unauthorized
from shared.models import CandleRow, User
from shared.paper.rules import MarketRules
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
_LAST_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant a datetime holds
_SECONDS_UP_TO = 20_000_000_000  # a larger Unix time is in milliseconds (as Binance's are)
_NUMBER = re.compile(r"^\d+(\.\d+)?$")


def _instant(value: object) -> datetime:
    """An ISO 8601 time (UTC when it has no offset) or a Unix time in seconds or milliseconds, as a UTC datetime.
    Parsed here rather than by pydantic's datetime, which also takes negative and out-of-range numbers that the
    declared schema (below) does not."""
    text = str(value).strip()
    if _NUMBER.match(text):
        number = float(text)
        ms = number if number > _SECONDS_UP_TO else number * 1000
        if ms > _LAST_MS:
            raise ValueError("a Unix time past 9999-12-31")
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    iso = re.sub(
        r"(T\d\d:\d\d):60", r"\1:59", text.upper().replace("Z", "+00:00")
    )  # a leap second: its minute's last
    try:
        ts = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError("not an ISO 8601 time or a Unix time in seconds or milliseconds") from None
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    try:
        return ts.astimezone(UTC)
    except OverflowError:  # within a day of year 1 or 9999: as early or late as a datetime goes
        return datetime.min.replace(tzinfo=UTC) if ts.year == 1 else datetime.max.replace(tzinfo=UTC)


Instant = Annotated[
    datetime,
    BeforeValidator(_instant),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "number", "minimum": 0, "maximum": _LAST_MS},
            ]
        }
    ),
]
_TIME_DOC = "ISO 8601 (UTC when no offset is given) or Unix time in seconds or milliseconds"


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
        Instant | None,
        Query(
            description=f"Candles starting at or after this time, the oldest `limit` of them; {_TIME_DOC}."
        ),
    ] = None,
    end_time: Annotated[
        Instant | None,
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
    since, until = start_time, end_time
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
