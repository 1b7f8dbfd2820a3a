"""Balances, positions and trades per mode (default: the user's current mode)."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from sqlmodel import col, select

from execution.store.ledger import SqlLedger
from gateway.deps import CurrentUser, PartsDep, SessionDep
from gateway.problems import AUTHENTICATED, problem_responses
from gateway.routes.orders import Orders
from gateway.services.orders import fill_out
from shared import venue_status
from shared.contracts import position_payload
from shared.errors import Throttled, Unavailable
from shared.models import Fill, PaperAccount, Position
from shared.schemas.orders import BalanceOut, PositionOut, TradeOut
from shared.schemas.venue import VenueStatusOut

router = APIRouter(prefix="/api", tags=["portfolio"])

ModeQuery = Annotated[Literal["paper", "testnet"] | None, Query()]


@router.get(
    "/balances",
    response_model=list[BalanceOut],
    # testnet balances come from the exchange: no keys stored (409), its rate limit (429), unreachable (503)
    responses=problem_responses(*AUTHENTICATED, 409, 429),
)
async def balances(
    user: CurrentUser, rt: PartsDep, session: SessionDep, mode: ModeQuery = None
) -> list[BalanceOut]:
    mode = mode or user.mode  # type: ignore[assignment]
    if mode == "testnet":
        rows = await rt.testnet_balances.balances(user.id)
        return [
            BalanceOut(asset=b["asset"], free=b["free"], locked=b["locked"], total=b["total"]) for b in rows
        ]
    # A GET writes nothing (a write here would be a second transaction, waiting for any writer's lock): an
    # account not funded yet shows the starting deposit that its first order makes.
    if await session.get(PaperAccount, user.id) is None:
        starting = sorted((a, q) for a, q in rt.settings.paper_starting_balances.items() if q > 0)
        return [BalanceOut(asset=a, free=q, locked=Decimal(0), total=q) for a, q in starting]
    views = await SqlLedger(session, rt.clock).balances(user.id)
    return [BalanceOut(asset=v.asset, free=v.free, locked=v.locked, total=v.total) for v in views]


@router.get(
    "/venue-status",
    response_model=VenueStatusOut,
    # testnet: no keys stored (409); an unreachable exchange is a state here (200, reachable false), not a 503
    responses=problem_responses(*AUTHENTICATED, 409),
)
async def venue_status_(user: CurrentUser, rt: PartsDep, mode: ModeQuery = None) -> VenueStatusOut:
    """Whether the user's venue can be reached and when it last was: the web page shows this instead of stale
    numbers. Reachability is what this gateway's testnet reader (the one `GET /api/balances` uses) and the
    execution worker (its marker in the market data store) last saw; asking refreshes the reader's view (the
    balances read, cached for a few seconds)."""
    mode = mode or user.mode  # type: ignore[assignment]
    if mode != "testnet":
        return VenueStatusOut(mode="paper", reachable=True, last_reached_at=None, stream=None)
    reader = rt.testnet_balances
    with contextlib.suppress(Unavailable, Throttled):  # the state is what we report; no keys stays a 409
        await reader.balances(user.id)
    worker = venue_status.fresh(
        await rt.market_data.get(venue_status.KIND, venue_status.marker_key(user.id)), rt.clock.now()
    )
    seen = worker or {}
    ok = venue_status.latest(reader.reachability.last_ok_ms, seen.get("last_ok_ms"))
    failed = venue_status.latest(reader.reachability.last_failure_ms, seen.get("last_failure_ms"))
    return VenueStatusOut(
        mode="testnet",
        reachable=None if ok is None and failed is None else (ok or 0) >= (failed or 0),
        last_reached_at=None if ok is None else datetime.fromtimestamp(ok / 1000, tz=UTC),
        stream=venue_status.stream_state(worker, streams_configured=reader.streams_configured),
    )


@router.get("/positions", response_model=list[PositionOut], responses=problem_responses(*AUTHENTICATED))
async def positions(
    user: CurrentUser, session: SessionDep, rt: PartsDep, mode: ModeQuery = None
) -> list[PositionOut]:
    rows = (
        await session.execute(
            select(Position)
            .where(col(Position.user_id) == user.id, col(Position.mode) == (mode or user.mode))
            .order_by(col(Position.symbol))
        )
    ).scalars()
    out = []
    for row in rows:
        if not row.quantity and not row.realized_pnl:
            continue
        ticker = await rt.market_data.get("ticker", row.symbol)
        mark = Decimal(str(ticker["price"])) if ticker and ticker.get("price") else None
        out.append(PositionOut(**position_payload(row, mark, source="query")))
    return out


@router.get("/trades", response_model=list[TradeOut], responses=problem_responses(*AUTHENTICATED))
async def trades(
    user: CurrentUser,
    session: SessionDep,
    orders: Orders,
    mode: ModeQuery = None,
    symbol: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[TradeOut]:
    stmt = select(Fill).where(col(Fill.user_id) == user.id, col(Fill.mode) == (mode or user.mode))
    if symbol:
        stmt = stmt.where(col(Fill.symbol) == orders.rules_for(symbol).symbol)
    rows = (
        await session.execute(stmt.order_by(col(Fill.ts).desc(), col(Fill.id).desc()).limit(limit))
    ).scalars()
    return [TradeOut(**fill_out(f).model_dump()) for f in rows]
