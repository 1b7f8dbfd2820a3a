"""Orders: place, cancel, get, list, quote."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Literal, cast

from fastapi import APIRouter, Depends, Path, Query, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.deps import (
    BearerCredentials,
    CurrentTrader,
    GatewayParts,
    PartsDep,
    SessionDep,
    Trader,
    read_trader,
    request_transaction,
    token_subject,
)
from gateway.problems import AUTHENTICATED, WITH_BODY, problem_responses
from gateway.routes.markets import OPTIONAL_AUTH, VenueDep
from gateway.services.orders import Autocommit, OrderService, order_out, rules_for
from shared.errors import Unauthorized
from shared.schemas.orders import OrderDetail, OrderIn, OrderOut, OrderPage, QuoteIn, QuoteOut, ReplaceIn

router = APIRouter(prefix="/api/orders", tags=["orders"])

OrderId = Annotated[str, Path(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9._:/-]+$")]


def order_service(
    rt: GatewayParts,
    session: AsyncSession,
    autocommit: Autocommit | None = None,
    recheck: Callable[[], Awaitable[Trader]] | None = None,
) -> OrderService:
    return OrderService(
        session=session,
        clock=rt.clock,
        markets=rt.markets,
        fees=rt.fees,
        market_data=rt.market_data,
        limiter=rt.limiter,
        order_rate_limit=rt.settings.order_rate_limit,
        starting_balances=rt.settings.paper_starting_balances,
        routing=rt.settings.command_routing,
        funded=rt.paper_funded,
        testnet_markets=rt.testnet_markets.rules,
        autocommit=autocommit,
        recheck=recheck,
    )


async def get_order_service(rt: PartsDep, session: SessionDep) -> OrderService:
    return order_service(rt, session)


Orders = Annotated[OrderService, Depends(get_order_service)]


async def admitted(rt: PartsDep) -> AsyncIterator[None]:
    """Load shedding before any other work (authentication, database): see ``shared.ratelimit.Admission``."""
    rt.order_admission.enter()
    try:
        yield
    finally:
        rt.order_admission.leave()


@dataclass(frozen=True, slots=True)
class Placement:
    """What placing an order needs: who places it, and the order service on the request's unit of work."""

    trader: Trader
    orders: OrderService


async def placement(request: Request, creds: BearerCredentials) -> AsyncIterator[Placement]:
    """Everything a placement needs, as ONE dependency where there were eight (admission, parts, address,
    auditor, session, autocommit link, user, service): FastAPI's resolution costs ~0.1 ms of CPU per dependency
    per request, on the API's busiest route. In this order, as before: load shedding before any other work
    (``shared.ratelimit.Admission``); the request's unit of work (``gateway.deps.request_transaction``,
    committed and its outbox rows published before the response: scope="function"); on PostgreSQL the
    placement's autocommit connection (``gateway.services.orders.Autocommit``) for the user read, and a funded
    user's paper order accepted by the group commit (``gateway.services.acceptance``). On PostgreSQL the unit of work is opened only when the
    placement needs it (``OrderService.open_session``): a funded user's paper order never does (its statement
    commits by itself and its rows go to the relay at once), and an empty session's creation, begin and commit
    were ~0.15-0.3 ms of CPU per order. A placement audits nothing, so it has no auditor."""
    rt = cast(GatewayParts, request.app.state.parts)
    rt.order_admission.enter()
    try:
        if rt.settings.is_sqlite:
            async with request_transaction(rt, reads=False) as session:
                trader = await read_trader(session, rt, creds)
                yield Placement(trader, order_service(rt, session))
            return
        async with AsyncExitStack() as stack:
            link = Autocommit(rt.engine)
            stack.push_async_callback(link.release)  # after the unit of work, if one was opened

            async def open_session() -> AsyncSession:
                return await stack.enter_async_context(request_transaction(rt, reads=False))

            trader, recheck = await _trader(rt, link, creds)
            orders = order_service(rt, cast(AsyncSession, None), link, recheck)
            orders.open_session, orders.group = open_session, rt.group_commit
            yield Placement(trader, orders)
    finally:
        rt.order_admission.leave()


_HINTS_MAX = 10_000


async def _trader(
    rt: GatewayParts, link: Autocommit, creds: HTTPAuthorizationCredentials | None
) -> tuple[Trader, Callable[[], Awaitable[Trader]]]:
    """The placing user, and how to read it afresh. On PostgreSQL a funded user seen before is taken unread
    from ``rt.trader_hints``: a paper order is then accepted by its one statement, which checks the user
    itself (active, and of the mode assumed), so the user read (a round trip and ~0.3 ms of CPU) is saved;
    anything else reads the user first (``OrderService.place``)."""
    sub = token_subject(rt, creds)

    async def recheck() -> Trader:
        try:
            fresh = await read_trader(await link.connection(), rt, creds)
        except Unauthorized:
            rt.trader_hints.pop(sub, None)
            raise
        if len(rt.trader_hints) >= _HINTS_MAX:
            rt.trader_hints.clear()
        rt.trader_hints[sub] = (fresh.mode, fresh.role)
        return fresh

    hint = rt.trader_hints.get(sub) if sub in rt.paper_funded else None
    if hint is None:
        return await recheck(), recheck
    return Trader(sub, hint[0], hint[1], verified=False), recheck


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderOut,
    responses={
        200: {
            "model": OrderOut,
            "description": "The same client_order_id with the same body: the existing order.",
        },
        **problem_responses(*WITH_BODY, 401, 409, 429),
    },
)
async def place_order(
    body: OrderIn,
    placing: Annotated[Placement, Depends(placement, scope="function")],
    response: Response,
) -> OrderOut:
    order, created = await placing.orders.place(placing.trader, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return order


@router.get("", response_model=OrderPage, responses=problem_responses(*AUTHENTICATED))
async def list_orders(
    user: CurrentTrader,
    orders: Orders,
    status_: Annotated[Literal["open", "closed", "all"], Query(alias="status")] = "all",
    symbol: Annotated[str | None, Query(max_length=20)] = None,
    mode: Annotated[Literal["paper", "testnet"] | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> OrderPage:
    return await orders.list(user, status=status_, symbol=symbol, mode=mode, limit=limit, cursor=cursor)


@router.post(
    "/quote",
    response_model=QuoteOut,
    responses=problem_responses(400, 401, 413, 422),
    openapi_extra=OPTIONAL_AUTH,
)
async def quote(body: QuoteIn, rt: PartsDep, venue: VenueDep) -> QuoteOut:
    """Walks the book of the venue the order would go to: `?venue=`, else the caller's mode, else paper."""
    rules = rules_for(rt.markets, body.symbol)
    rules.qty_to_lots(body.quantity)
    depth = await rt.market_data.get("depth", rules.symbol, venue=venue) or {}
    levels = depth.get("asks" if body.side == "BUY" else "bids") or []
    q = rt.quote([(Decimal(str(p)), Decimal(str(s))) for p, s in levels], rules, body.side, body.quantity)
    return QuoteOut(
        symbol=rules.symbol,
        side=body.side,
        quantity=body.quantity,
        fillable_quantity=q.fillable_quantity,
        avg_price=q.avg_price,
        worst_price=q.worst_price,
        venue=venue,
    )


@router.get("/{order_id}", response_model=OrderDetail, responses=problem_responses(*AUTHENTICATED, 404))
async def get_order(order_id: OrderId, user: CurrentTrader, orders: Orders) -> OrderDetail:
    return await orders.detail(user, order_id)


@router.delete(
    "/{order_id}",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderOut,
    responses=problem_responses(*AUTHENTICATED, 404, 409),
)
async def cancel_order(order_id: OrderId, user: CurrentTrader, orders: Orders) -> OrderOut:
    return order_out(await orders.cancel(user, order_id))


@router.post(
    "/{order_id}/replace",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderOut,
    dependencies=[Depends(admitted, scope="function")],
    responses=problem_responses(*WITH_BODY, 401, 404, 409),
)
async def replace_order(
    order_id: OrderId,
    body: ReplaceIn,
    user: CurrentTrader,
    orders: Orders,
) -> OrderOut:
    """Cancel-replace (amend): the open order canceled and a new one (new id, `replaces` = this one) placed
    with the given quantity, price or stop price as one operation; exactly one of them is live afterwards.
    Paper: atomic (if the new order is refused, e.g. it would trigger at once, the old one stays). Testnet:
    Binance's cancelReplace with STOP_ON_FAILURE. The answer is the new order (PENDING)."""
    return order_out(await orders.replace(user, order_id, body))
