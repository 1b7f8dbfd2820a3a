"""Public market data: markets and their rules, ticker, depth, recent trades, candles."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from sqlalchemy import select
from sqlmodel import col

from execution.paper.rules import MarketRules
from gateway.deps import PartsDep, SessionDep
from gateway.problems import COMMON, problem_responses
from gateway.services.orders import rules_for
from shared.errors import InvalidInput, NotFound
from shared.models import CandleRow
from shared.schemas.orders import CandleOut

router = APIRouter(prefix="/api/markets", tags=["market data"])


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


@router.get("/{symbol}/ticker", responses=problem_responses(404))
async def ticker(symbol: str, rt: PartsDep) -> dict[str, Any]:
    rules = _market(rt, symbol)
    value = await rt.market_data.get("ticker", rules.symbol)
    if value is None:
        raise NotFound(f"No price for {rules.symbol} yet.")
    return value


@router.get("/{symbol}/depth", responses=problem_responses(404, 422))
async def depth(
    symbol: str, rt: PartsDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> dict[str, Any]:
    rules = _market(rt, symbol)
    value = await rt.market_data.get("depth", rules.symbol) or {
        "symbol": rules.symbol,
        "bids": [],
        "asks": [],
    }
    return {**value, "bids": value.get("bids", [])[:limit], "asks": value.get("asks", [])[:limit]}


@router.get("/{symbol}/trades", responses=problem_responses(404, 422))
async def trades(
    symbol: str, rt: PartsDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[dict[str, Any]]:
    rules = _market(rt, symbol)
    return await rt.market_data.recent_trades(rules.symbol, limit)


@router.get("/{symbol}/candles", response_model=list[CandleOut], responses=problem_responses(404, *COMMON))
async def candles(
    symbol: str,
    rt: PartsDep,
    session: SessionDep,
    interval: Annotated[Literal["1m", "5m", "1h"], Query()] = "1m",
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[CandleOut]:
    rules = _market(rt, symbol)
    rows = (
        await session.execute(
            select(CandleRow)
            .where(col(CandleRow.symbol) == rules.symbol, col(CandleRow.interval) == interval)
            .order_by(col(CandleRow.start).desc())
            .limit(limit)
        )
    ).scalars()
    return [CandleOut.model_validate(r, from_attributes=True) for r in reversed(list(rows))]
