"""Paper liquidity readiness, shared between the execution worker and every gateway.

The worker that holds the paper books records per symbol whether its market maker is quoting both sides,
in the market data store (Redis when configured, memory in the embedded process), and refreshes that marker
every few seconds. `/readyz` of any gateway reads it, so a gateway that does not run the worker still tells
whether a market order placed now would meet liquidity: a missing marker (no worker has quoted yet), an empty
side, or a marker not refreshed within `MARKER_MAX_AGE` (its worker died) all mean "not ready".
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from shared.marketdata import MarketData

KIND = "liquidity"  # the market data kind the markers are stored under
HEARTBEAT_S = 2.0  # how often the worker refreshes its markers
MARKER_MAX_AGE = timedelta(seconds=10)  # a marker older than this was left by a worker that is gone


def marker(symbol: str, bids: int, asks: int, now: datetime, writer: str) -> dict[str, Any]:
    """What the worker stores: how many market-maker quotes rest on each side, when, and who said so."""
    return {"symbol": symbol, "bids": bids, "asks": asks, "ts": now.isoformat(), "writer": writer}


def marker_problem(value: dict[str, Any] | None, now: datetime) -> str | None:
    """Why a symbol's books cannot take a market order now, or None when both sides are quoted."""
    if value is None:
        return "not quoted yet"
    try:
        age = now - datetime.fromisoformat(str(value["ts"]))
    except (KeyError, ValueError, TypeError):
        return "unreadable marker"
    if age > MARKER_MAX_AGE:
        return "marker expired (no execution worker)"
    if not value.get("bids") or not value.get("asks"):
        return "no quotes"
    return None


async def liquidity_problems(store: MarketData, symbols: Iterable[str], now: datetime) -> dict[str, str]:
    """The symbols whose paper books are not ready, with the reason; empty when all are."""
    problems: dict[str, str] = {}
    for symbol in symbols:
        problem = marker_problem(await store.get(KIND, symbol), now)
        if problem is not None:
            problems[symbol] = problem
    return problems
