"""Balances, positions and trades per mode (default: the user's current mode); the account's pictures (equity
curve, realized PnL per day), its filtered, paged order and trade history with CSV, and the order ticket's
figures."""

from __future__ import annotations

import contextlib
import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, BeforeValidator
from sqlmodel import col, select

from gateway.deps import CurrentUser, PartsDep, SessionDep, SettingsDep
from gateway.problems import AUTHENTICATED, problem_responses
from gateway.routes.orders import Orders
from gateway.services.orders import OrderService, fill_out
from gateway.services.portfolio import (
    HistoryFilter,
    daily_pnl,
    equity_curve,
    order_history,
    statuses_of,
    to_csv,
    trade_history,
)
from shared import venue_status
from shared.contracts import position_payload
from shared.errors import InvalidInput, Throttled, Unavailable
from shared.ledger_store import SqlLedger
from shared.models import Fill, PaperAccount, Position
from shared.schemas.orders import BalanceOut, OrderOut, PositionOut, TradeOut
from shared.schemas.portfolio import DayPnlOut, EquityOut, OrderHistoryPage, TicketOut, TradeHistoryPage
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
    return await account_balances(user, rt, session, mode or user.mode)


async def account_balances(
    user: CurrentUser, rt: PartsDep, session: SessionDep, mode: str
) -> list[BalanceOut]:
    """One mode's balances: testnet from the exchange, paper from the ledger."""
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
    worker = venue_status.fresh(
        await rt.market_data.get(venue_status.KIND, venue_status.marker_key(user.id)), rt.clock.now()
    )
    seen = worker or {}
    # The worker failed to reach it since it last did: read afresh rather than answer from the reader's cache
    # (then `GET /api/balances` answers 503 too, not balances the exchange can no longer confirm).
    fresh = (seen.get("last_failure_ms") or 0) > (seen.get("last_ok_ms") or 0)
    with contextlib.suppress(Unavailable, Throttled):  # the state is what we report; no keys stays a 409
        await reader.balances(user.id, fresh=fresh)
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
        out.append(PositionOut(**position_payload(row, mark, source="query", updated_at=row.updated_at)))
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


# -- the account's pictures and history (issue #19) ----------------------------------------------------------

_NUMBER = re.compile(r"\s*[-+]?[\d.]+(e[-+]?\d+)?\s*", re.I)


def _iso_only(value: object) -> object:
    """The OpenAPI says ISO 8601 (`date-time`, `date`); pydantic would also take a bare number as a Unix time."""
    if isinstance(value, str) and _NUMBER.fullmatch(value):
        raise ValueError("an ISO 8601 time or day is expected, e.g. 2026-12-03T10:00:00Z or 2026-12-03")
    return value


SinceQuery = Annotated[
    datetime | None,
    BeforeValidator(_iso_only),
    Query(description="from this instant (inclusive), ISO 8601"),
]
UntilQuery = Annotated[
    datetime | None,
    BeforeValidator(_iso_only),
    Query(description="before this instant (exclusive), ISO 8601"),
]
SideQuery = Annotated[Literal["BUY", "SELL", "buy", "sell"] | None, Query()]
FormatQuery = Annotated[
    Literal["json", "csv"], Query(description="csv: the same rows as the JSON page, as text/csv")
]
CSV_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The page: JSON, or with `format=csv` the same rows as CSV (the next page's cursor in "
        "the `X-Next-Cursor` header).",
        "content": {"text/csv": {"schema": {"type": "string"}}},
    }
}


def _aware(ts: datetime | None) -> datetime | None:
    """A time without an offset is UTC (what every time we send carries)."""
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


class HistoryQuery:
    """The history routes' common query: the mode, what to show (symbol, side, times), the page and the format."""

    def __init__(
        self,
        mode: ModeQuery = None,
        symbol: Annotated[str | None, Query(max_length=20)] = None,
        side: SideQuery = None,
        since: SinceQuery = None,
        until: UntilQuery = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 50,
        cursor: Annotated[str | None, Query(max_length=64)] = None,
        format: FormatQuery = "json",
    ) -> None:
        self.mode, self.symbol, self.side = mode, symbol, side
        self.since, self.until = _aware(since), _aware(until)
        self.limit, self.cursor, self.format = limit, cursor, format

    def filter(
        self, user: CurrentUser, orders: OrderService, statuses: frozenset[str] | None = None
    ) -> HistoryFilter:
        return HistoryFilter(
            user_id=user.id,
            mode=self.mode or user.mode,
            symbol=orders.rules_for(self.symbol).symbol if self.symbol else None,
            side=self.side.upper() if self.side else None,
            statuses=statuses,
            since=self.since,
            until=self.until,
        )

    def answer(self, page: OrderHistoryPage | TradeHistoryPage, model: type[BaseModel], name: str) -> Any:
        """The page as JSON, or its rows as CSV (the next cursor in a header)."""
        if self.format != "csv":
            return page
        headers = {"Content-Disposition": f'attachment; filename="{name}.csv"'}
        if page.next_cursor:
            headers["X-Next-Cursor"] = page.next_cursor
        return PlainTextResponse(
            to_csv(page.items, model), media_type="text/csv; charset=utf-8", headers=headers
        )


History = Annotated[HistoryQuery, Depends()]


@router.get(
    "/history/orders",
    response_model=OrderHistoryPage,
    responses={**CSV_RESPONSE, **problem_responses(*AUTHENTICATED)},
)
async def order_history_(
    user: CurrentUser,
    session: SessionDep,
    orders: Orders,
    q: History,
    status: Annotated[
        list[str],
        Query(
            max_length=12,
            description="open, closed or an order status (NEW, FILLED, CANCELED, ...); repeat or comma-separate",
        ),
    ] = [],  # noqa: B006 (FastAPI copies the default)
) -> Any:
    """The user's orders of one mode, newest first, filtered by symbol, side, status and creation time; paged
    with `next_cursor`. `format=csv` answers the same rows as CSV."""
    page = await order_history(
        session, q.filter(user, orders, statuses_of(status)), limit=q.limit, cursor=q.cursor
    )
    return q.answer(page, OrderOut, "orders")


@router.get(
    "/history/trades",
    response_model=TradeHistoryPage,
    responses={**CSV_RESPONSE, **problem_responses(*AUTHENTICATED)},
)
async def trade_history_(user: CurrentUser, session: SessionDep, orders: Orders, q: History) -> Any:
    """The user's fills of one mode, newest first, filtered by symbol, side and time; paged with
    `next_cursor`. `format=csv` answers the same rows as CSV."""
    page = await trade_history(session, q.filter(user, orders), limit=q.limit, cursor=q.cursor)
    return q.answer(page, TradeOut, "trades")


@router.get("/equity", response_model=EquityOut, responses=problem_responses(*AUTHENTICATED))
async def equity(
    user: CurrentUser,
    session: SessionDep,
    settings: SettingsDep,
    mode: ModeQuery = None,
    since: SinceQuery = None,
    until: UntilQuery = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 1000,
) -> EquityOut:
    """The account's value in its quote asset over time: the snapshots the service takes every
    EQUITY_SNAPSHOT_INTERVAL_S and right after each fill (paper accounts; testnet balances live on the
    exchange and are not snapshotted), the latest `limit` in the range, oldest first."""
    until_ = _aware(until)
    since_ = _aware(since)
    HistoryFilter(user.id, mode or user.mode, since=since_, until=until_)  # the range's check
    return await equity_curve(
        session,
        user.id,
        mode or user.mode,
        since=since_,
        until=until_,
        limit=limit,
        interval_s=settings.equity_snapshot_interval_s,
    )


@router.get("/pnl/daily", response_model=list[DayPnlOut], responses=problem_responses(*AUTHENTICATED))
async def pnl_daily(
    user: CurrentUser,
    session: SessionDep,
    mode: ModeQuery = None,
    since: Annotated[
        date | None, BeforeValidator(_iso_only), Query(description="first UTC day (inclusive)")
    ] = None,
    until: Annotated[
        date | None, BeforeValidator(_iso_only), Query(description="last UTC day (inclusive)")
    ] = None,
) -> list[DayPnlOut]:
    """Realized PnL per UTC day (fees deducted), from the user's fills through the positions' own fold: the
    days add up to the positions' realized PnL. Days without fills are left out."""
    if since is not None and until is not None and since > until:
        raise InvalidInput(
            "the date range is empty: 'since' must not be after 'until'",
            errors=[{"field": "until", "message": "must not be before since"}],
        )
    return await daily_pnl(session, user.id, mode or user.mode, since=since, until=until)


@router.get(
    "/ticket",
    response_model=TicketOut,
    # testnet: the balance comes from the exchange (no keys 409, throttled 429, unreachable 503)
    responses=problem_responses(*AUTHENTICATED, 409, 429),
)
async def ticket(
    user: CurrentUser,
    session: SessionDep,
    rt: PartsDep,
    orders: Orders,
    symbol: Annotated[str, Query(max_length=20)],
    side: Annotated[Literal["BUY", "SELL", "buy", "sell"], Query()],
    mode: ModeQuery = None,
) -> TicketOut:
    """What the order ticket shows before sending, from where each lives: the side's free balance (paper:
    the ledger; testnet: the exchange), the market's rules, the venue's fee rates (paper: its fee schedule;
    testnet: null, Binance charges its own) and the best prices of the venue's book (a market buy's estimate)."""
    rules = orders.rules_for(symbol)
    side_ = side.upper()
    mode_ = mode or user.mode
    asset = rules.quote_asset if side_ == "BUY" else rules.base_asset
    balances_ = await account_balances(user, rt, session, mode_)
    available = next((b.free for b in balances_ if b.asset == asset), Decimal(0))
    depth = await rt.market_data.get("depth", rules.symbol, venue=mode_) or {}

    def best(levels: Any) -> Decimal | None:
        return Decimal(str(levels[0][0])) if levels else None

    paper = mode_ == "paper"
    return TicketOut(
        symbol=rules.symbol,
        side=side_,
        mode=mode_,
        base_asset=rules.base_asset,
        quote_asset=rules.quote_asset,
        available_asset=asset,
        available=available,
        tick_size=rules.tick_size,
        step_size=rules.step_size,
        min_qty=rules.min_qty,
        min_notional=rules.min_notional,
        market_protection_pct=rules.market_protection_pct,
        maker_fee_rate=rt.fees.maker_rate if paper else None,
        taker_fee_rate=rt.fees.taker_rate if paper else None,
        reserve_fee_rate=rt.fees.reserve_rate if paper else None,
        best_bid=best(depth.get("bids")),
        best_ask=best(depth.get("asks")),
    )
