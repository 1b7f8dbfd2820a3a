"""Public market data: markets and their rules, ticker, depth, recent trades, candles."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from gateway.deps import RuntimeDep
from gateway.routes.orders import Orders
from shared.errors import NotFound

router = APIRouter(prefix="/api/markets", tags=["market data"])


@router.get("")
async def markets(rt: RuntimeDep) -> list[dict[str, str]]:
    return [r.public() for r in rt.markets.values()]


@router.get("/{symbol}/ticker")
async def ticker(symbol: str, orders: Orders, rt: RuntimeDep) -> dict[str, Any]:
    rules = orders.rules_for(symbol)
    value = await rt.market_data.get("ticker", rules.symbol)
    if value is None:
        raise NotFound(f"No price for {rules.symbol} yet.")
    return value


@router.get("/{symbol}/depth")
async def depth(
    symbol: str, orders: Orders, rt: RuntimeDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> dict[str, Any]:
    rules = orders.rules_for(symbol)
    value = await rt.market_data.get("depth", rules.symbol) or {
        "symbol": rules.symbol,
        "bids": [],
        "asks": [],
    }
    return {**value, "bids": value.get("bids", [])[:limit], "asks": value.get("asks", [])[:limit]}


@router.get("/{symbol}/trades")
async def trades(
    symbol: str, orders: Orders, rt: RuntimeDep, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[dict[str, Any]]:
    rules = orders.rules_for(symbol)
    return await rt.market_data.recent_trades(rules.symbol, limit)
