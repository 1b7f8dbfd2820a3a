"""Orders: place, cancel, get, list, quote."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Response, status
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.deps import CurrentTrader, GatewayParts, PartsDep, PlacementLink, PlacingTrader, SessionDep
from gateway.problems import AUTHENTICATED, WITH_BODY, problem_responses
from gateway.routes.markets import OPTIONAL_AUTH, VenueDep
from gateway.services.orders import Autocommit, OrderService, order_out, rules_for
from shared.schemas.orders import OrderDetail, OrderIn, OrderOut, OrderPage, QuoteIn, QuoteOut, ReplaceIn

router = APIRouter(prefix="/api/orders", tags=["orders"])

OrderId = Annotated[str, Path(min_length=1, max_length=36, pattern=r"^[A-Za-z0-9._:/-]+$")]


def order_service(
    rt: GatewayParts, session: AsyncSession, autocommit: Autocommit | None = None
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
    )


async def get_order_service(rt: PartsDep, session: SessionDep) -> OrderService:
    return order_service(rt, session)


Orders = Annotated[OrderService, Depends(get_order_service)]


async def get_placing_service(rt: PartsDep, session: SessionDep, link: PlacementLink) -> OrderService:
    return order_service(rt, session, link)


Placing = Annotated[OrderService, Depends(get_placing_service)]


async def admitted(rt: PartsDep) -> AsyncIterator[None]:
    """Load shedding before any other work (authentication, database): see ``shared.ratelimit.Admission``."""
    rt.order_admission.enter()
    try:
        yield
    finally:
        rt.order_admission.leave()


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=OrderOut,
    dependencies=[Depends(admitted, scope="function")],
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
    user: PlacingTrader,
    orders: Placing,
    response: Response,
) -> OrderOut:
    order, created = await orders.place(user, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return order_out(order)


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
