"""The Binance spot REST subset under /binance/api/v3: a thin adapter over the order service, the ledger and the
market data of the one paper book (see docs/binance-api.md). Errors here are Binance's ``{code, msg}``."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

import structlog
from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from gateway.binance_api import render
from gateway.binance_api.auth import WEIGHT_STATE, Call, public_call, signed_call
from gateway.binance_api.errors import (
    INSUFFICIENT,
    INVALID_SYMBOL,
    NO_SUCH_ORDER,
    UNKNOWN_ORDER,
    BinanceError,
    error_responses,
    from_domain,
    illegal,
    mandatory,
    not_required,
)
from gateway.binance_api.orders import (
    binance_id_of,
    binance_ids,
    by_binance_id,
    by_client_id,
    by_order_id,
    order_from_update,
    with_binance_ids,
)
from gateway.binance_api.parts import Parts, PartsDep
from gateway.binance_api.render import ORDER_TYPES
from gateway.binance_api.watch import OrderWatch
from gateway.deps import Trader
from gateway.services.orders import OrderService, check_order_rules
from shared.binance_compat import depth_update_id
from shared.candles import CANDLE_INTERVAL_MS
from shared.errors import DomainError
from shared.ledger_store import SqlLedger
from shared.models import CandleRow, Fill, Order, PaperAccount
from shared.orders import FINAL, OPEN
from shared.outbox import publish_after_commit
from shared.paper.rules import MarketRules, RuleViolation
from shared.schemas.orders import STOP_TYPES, OrderIn

log = structlog.get_logger(__name__)

MODE = "paper"  # keys TradeBridge issues trade the user's paper account
SETTLE_TIMEOUT_S = 2.0
INTERVALS = CANDLE_INTERVAL_MS  # every interval the price feed stores
_PENDING = frozenset({"PENDING"})
_CANCELING = frozenset({"PENDING", "PENDING_CANCEL"})
_AT_MARKET = frozenset({"MARKET", "STOP_LOSS", "TAKE_PROFIT"})  # no price: run at the market


class BinanceRoute(APIRoute):
    """Renders every error of its routes as Binance's ``{code, msg}`` (never problem+json) and adds the
    request-weight header Binance sends on every response."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                response = await handler(request)
            except BinanceError as exc:
                response = exc.response()
            except DomainError as exc:
                response = from_domain(exc).response()
            except (RequestValidationError, ValidationError):
                response = BinanceError(-1100, "Illegal characters found in a parameter.").response()
            used = getattr(request.state, WEIGHT_STATE, None)
            if used is not None:
                response.headers["X-MBX-USED-WEIGHT-1M"] = str(used)
                response.headers["X-MBX-USED-WEIGHT"] = str(used)
            return response

        return route


router = APIRouter(
    prefix="/binance/api/v3",
    tags=["binance-compatible"],
    route_class=BinanceRoute,
    default_response_class=JSONResponse,
    responses=error_responses(400, 401, 429, 503),
)


# -- parameters -------------------------------------------------------------------------------------------


def _decimal(call: Call, name: str, *, required: bool = False) -> Decimal | None:
    raw = call.get(name)
    if raw is None:
        if required:
            raise mandatory(name)
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise illegal(name) from None
    if not value.is_finite() or value <= 0:
        raise BinanceError(-1013, f"Invalid {name}.")
    return value


def _int(
    call: Call, name: str, *, default: int | None = None, low: int = 0, high: int | None = None
) -> int | None:
    raw = call.get(name)
    if raw is None:
        return default
    if not raw.lstrip("-").isdigit() or len(raw) > 20:
        raise illegal(name)
    value = int(raw)
    if value < low or (high is not None and value > high):
        raise BinanceError(-1100 if value < low else -1130, f"Invalid value for parameter '{name}'.")
    return value


# The last millisecond a datetime can hold (9999-12-31T23:59:59.999Z): a later startTime/endTime is a 400.
_MAX_MS = 253_402_300_799_999


def _time(call: Call, name: str) -> int | None:
    """A millisecond timestamp parameter, within what a datetime holds."""
    return _int(call, name, high=_MAX_MS)


def _market(rt: Parts, call: Call, *, required: bool = True) -> MarketRules | None:
    symbol = call.get("symbol")
    if symbol is None:
        if required:
            raise mandatory("symbol")
        return None
    if not symbol.isalnum():
        raise illegal("symbol")
    rules = rt.markets.get(symbol.upper())
    if rules is None:
        raise INVALID_SYMBOL
    return rules


def _markets(rt: Parts, call: Call) -> list[MarketRules]:
    """``symbol=X`` or ``symbols=["X","Y"]`` (Binance's JSON array in a parameter) or every market."""
    one = _market(rt, call, required=False)
    if one is not None:
        return [one]
    many = call.get("symbols")
    if many is None:
        return list(rt.markets.values())
    names = [n.strip().strip('"') for n in many.strip().removeprefix("[").removesuffix("]").split(",")]
    out = []
    for name in names:
        rules = rt.markets.get(name.upper())
        if rules is None:
            raise INVALID_SYMBOL
        out.append(rules)
    return out


def order_service(rt: Parts, session: AsyncSession) -> OrderService:
    """The order service of our own API (``gateway.routes.orders``), on the adapter's session."""
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
    )


def _owner(call: Call) -> Trader:
    """The key's owner as the order service sees a trader, always in paper mode."""
    assert call.key is not None
    return Trader(call.key.user_id, MODE, "user")


def _now_ms(rt: Parts) -> int:
    return int(rt.clock.now().timestamp() * 1000)


# -- public endpoints -------------------------------------------------------------------------------------


@router.get("/ping")
async def ping(request: Request, rt: PartsDep) -> dict[str, Any]:
    await public_call(request, rt, 1)
    return {}


@router.get("/time")
async def server_time(request: Request, rt: PartsDep) -> dict[str, Any]:
    await public_call(request, rt, 1)
    return {"serverTime": _now_ms(rt)}


@router.get("/exchangeInfo")
async def exchange_info(request: Request, rt: PartsDep) -> dict[str, Any]:
    call = await public_call(request, rt, 20)
    limit = rt.settings.binance_api_weight_limit
    return {
        "timezone": "UTC",
        "serverTime": _now_ms(rt),
        "rateLimits": [
            {
                "rateLimitType": "REQUEST_WEIGHT",
                "interval": "MINUTE",
                "intervalNum": 1,
                "limit": _amount_of(limit),
            },
        ],
        "exchangeFilters": [],
        "symbols": [render.symbol_info(r) for r in _markets(rt, call)],
    }


def _amount_of(rule: str) -> int:
    from shared.ratelimit import parse_rule

    return int(parse_rule(rule).amount)


async def _depth(rt: Parts, symbol: str) -> dict[str, Any]:
    return await rt.market_data.get("depth", symbol) or {"bids": [], "asks": []}


def _levels(levels: list[Any], limit: int) -> list[list[str]]:
    return [[render.amount(Decimal(str(p))), render.amount(Decimal(str(q)))] for p, q in levels[:limit]]


def _query(*params: tuple[str, dict[str, Any], bool]) -> dict[str, Any]:
    """OpenAPI ``parameters`` of a route that reads its query itself (Binance's raw parameters, not FastAPI's):
    so the document says which are required and what they take."""
    return {
        "parameters": [
            {"name": name, "in": "query", "required": required, "schema": schema}
            for name, schema, required in params
        ]
    }


_SYMBOL = ("symbol", {"type": "string"}, True)


def _limit(high: int) -> tuple[str, dict[str, Any], bool]:
    return ("limit", {"type": "integer", "minimum": 1, "maximum": high}, False)


@router.get("/depth", openapi_extra=_query(_SYMBOL, _limit(5000)))
async def depth(request: Request, rt: PartsDep) -> dict[str, Any]:
    call = await public_call(request, rt, 5)
    rules = _market(rt, call)
    assert rules is not None
    limit = _int(call, "limit", default=100, low=1, high=5000) or 100
    book = await _depth(rt, rules.symbol)
    return {
        "lastUpdateId": depth_update_id(book),  # the diff depth stream's U/u continue from it
        "bids": _levels(book.get("bids") or [], limit),
        "asks": _levels(book.get("asks") or [], limit),
    }


def _trade_id(raw: Any, fallback: int) -> int:
    digits = "".join(c for c in str(raw) if c.isdigit())
    return int(digits) if digits else fallback


@router.get("/trades", openapi_extra=_query(_SYMBOL, _limit(1000)))
async def trades(request: Request, rt: PartsDep) -> list[dict[str, Any]]:
    call = await public_call(request, rt, 25)
    rules = _market(rt, call)
    assert rules is not None
    limit = _int(call, "limit", default=500, low=1, high=1000) or 500
    return await _recent_trades(rt, rules.symbol, limit)


@router.get(
    "/aggTrades",
    openapi_extra=_query(
        _SYMBOL,
        _limit(1000),
        ("fromId", {"type": "integer", "minimum": 0}, False),
        ("startTime", {"type": "integer", "minimum": 0, "maximum": _MAX_MS}, False),
        ("endTime", {"type": "integer", "minimum": 0, "maximum": _MAX_MS}, False),
    ),
)
async def agg_trades(request: Request, rt: PartsDep) -> list[dict[str, Any]]:
    """The recent trades, one per aggregate (what ccxt's ``fetch_trades`` calls by default), from the same
    last 200 trades as ``trades``."""
    call = await public_call(request, rt, 4)
    rules = _market(rt, call)
    assert rules is not None
    limit = _int(call, "limit", default=500, low=1, high=1000) or 500
    from_id, start, end = _int(call, "fromId"), _time(call, "startTime"), _time(call, "endTime")
    out = [
        {
            "a": t["id"],
            "p": t["price"],
            "q": t["qty"],
            "f": t["id"],
            "l": t["id"],
            "T": t["time"],
            "m": t["isBuyerMaker"],
            "M": True,
        }
        for t in await _recent_trades(rt, rules.symbol, 1000)
        if (from_id is None or t["id"] >= from_id)
        and (start is None or t["time"] >= start)
        and (end is None or t["time"] <= end)
    ]
    return out[:limit] if from_id is not None or start is not None else out[-limit:]


async def _recent_trades(rt: Parts, symbol: str, limit: int) -> list[dict[str, Any]]:
    """The market's last trades (at most 200 kept), oldest first, in the shape of Binance's ``trades``."""
    recent = await rt.market_data.recent_trades(symbol, min(limit, 200))
    out = []
    for i, t in enumerate(recent):
        price, qty = Decimal(str(t["price"])), Decimal(str(t["quantity"]))
        ts = datetime.fromisoformat(t["ts"]) if isinstance(t.get("ts"), str) else None
        out.append(
            {
                "id": _trade_id(t.get("trade_id"), i),
                "price": render.amount(price),
                "qty": render.amount(qty),
                "quoteQty": render.amount(price * qty),
                "time": render.millis(ts),
                "isBuyerMaker": t.get("side") == "SELL",
                "isBestMatch": True,
            }
        )
    return sorted(out, key=lambda t: (t["time"], t["id"]))


@router.get(
    "/klines",
    openapi_extra=_query(
        _SYMBOL,
        ("interval", {"type": "string", "enum": list(INTERVALS)}, True),
        _limit(1000),
        ("startTime", {"type": "integer", "minimum": 0, "maximum": _MAX_MS}, False),
        ("endTime", {"type": "integer", "minimum": 0, "maximum": _MAX_MS}, False),
    ),
)
async def klines(request: Request, rt: PartsDep) -> list[list[Any]]:
    call = await public_call(request, rt, 2)
    rules = _market(rt, call)
    assert rules is not None
    interval = call.get("interval")
    if interval is None:
        raise mandatory("interval")
    if interval not in INTERVALS:
        raise BinanceError(-1120, "Invalid interval.")
    limit = _int(call, "limit", default=500, low=1, high=1000) or 500
    start, end = _time(call, "startTime"), _time(call, "endTime")
    stmt = select(CandleRow).where(col(CandleRow.symbol) == rules.symbol, col(CandleRow.interval) == interval)
    if start is not None:
        stmt = stmt.where(col(CandleRow.start) >= datetime.fromtimestamp(start / 1000, UTC))
    if end is not None:
        stmt = stmt.where(col(CandleRow.start) <= datetime.fromtimestamp(end / 1000, UTC))
    order = col(CandleRow.start).asc() if start is not None else col(CandleRow.start).desc()
    async with rt.read_sessions() as reader:
        rows = list((await reader.execute(stmt.order_by(order).limit(limit))).scalars())
    rows.sort(key=lambda r: r.start)
    span = INTERVALS[interval]
    return [
        [
            render.millis(r.start),
            render.amount(r.open),
            render.amount(r.high),
            render.amount(r.low),
            render.amount(r.close),
            render.amount(r.volume),
            render.millis(r.start) + span - 1,
            render.amount(r.volume * r.close),
            r.trade_count,
            "0",
            "0",
            "0",
        ]
        for r in rows
    ]


async def _price(rt: Parts, symbol: str) -> Decimal | None:
    ticker = await rt.market_data.get("ticker", symbol)
    return Decimal(str(ticker["price"])) if ticker and ticker.get("price") else None


@router.get("/ticker/price")
async def ticker_price(request: Request, rt: PartsDep) -> Any:
    call = await public_call(request, rt, 2 if call_has_symbol(request) else 4)
    out = []
    for rules in _markets(rt, call):
        price = await _price(rt, rules.symbol)
        out.append({"symbol": rules.symbol, "price": render.amount(price)})
    return out[0] if call.get("symbol") else out


def call_has_symbol(request: Request) -> bool:
    return "symbol" in request.query_params


async def _book_ticker(rt: Parts, symbol: str) -> dict[str, str]:
    book = await _depth(rt, symbol)
    bids, asks = book.get("bids") or [], book.get("asks") or []
    best_bid = bids[0] if bids else (0, 0)
    best_ask = asks[0] if asks else (0, 0)
    return {
        "symbol": symbol,
        "bidPrice": render.amount(Decimal(str(best_bid[0]))),
        "bidQty": render.amount(Decimal(str(best_bid[1]))),
        "askPrice": render.amount(Decimal(str(best_ask[0]))),
        "askQty": render.amount(Decimal(str(best_ask[1]))),
    }


@router.get("/ticker/bookTicker")
async def book_ticker(request: Request, rt: PartsDep) -> Any:
    call = await public_call(request, rt, 2 if call_has_symbol(request) else 4)
    out = [await _book_ticker(rt, r.symbol) for r in _markets(rt, call)]
    return out[0] if call.get("symbol") else out


@router.get("/ticker/24hr")
async def ticker_24hr(request: Request, rt: PartsDep) -> Any:
    call = await public_call(request, rt, 2 if call_has_symbol(request) else 80)
    now = rt.clock.now()
    out = []
    async with rt.read_sessions() as reader:
        for rules in _markets(rt, call):
            rows = list(
                (
                    await reader.execute(
                        select(CandleRow)
                        .where(
                            col(CandleRow.symbol) == rules.symbol,
                            col(CandleRow.interval) == "1m",
                            col(CandleRow.start) >= now - timedelta(hours=24),
                        )
                        .order_by(col(CandleRow.start))
                    )
                ).scalars()
            )
            out.append(await _day(rt, rules.symbol, rows, now))
    return out[0] if call.get("symbol") else out


async def _day(rt: Parts, symbol: str, rows: list[CandleRow], now: datetime) -> dict[str, Any]:
    last = await _price(rt, symbol) or (rows[-1].close if rows else Decimal(0))
    open_ = rows[0].open if rows else last
    volume = sum((r.volume for r in rows), Decimal(0))
    quote = sum((r.volume * r.close for r in rows), Decimal(0))
    change = last - open_
    book = await _book_ticker(rt, symbol)
    return {
        "symbol": symbol,
        "priceChange": render.amount(change),
        "priceChangePercent": format((change * 100 / open_).quantize(Decimal("0.001")), "f")
        if open_
        else "0.000",
        "weightedAvgPrice": render.amount(quote / volume if volume else last),
        "prevClosePrice": render.amount(open_),
        "lastPrice": render.amount(last),
        "lastQty": render.amount(Decimal(0)),
        "bidPrice": book["bidPrice"],
        "bidQty": book["bidQty"],
        "askPrice": book["askPrice"],
        "askQty": book["askQty"],
        "openPrice": render.amount(open_),
        "highPrice": render.amount(max((r.high for r in rows), default=last)),
        "lowPrice": render.amount(min((r.low for r in rows), default=last)),
        "volume": render.amount(volume),
        "quoteVolume": render.amount(quote),
        "openTime": render.millis(now - timedelta(hours=24)),
        "closeTime": render.millis(now),
        "firstId": -1,
        "lastId": -1,
        "count": sum(r.trade_count for r in rows),
    }


# -- trading endpoints ------------------------------------------------------------------------------------


async def _order_in(rt: Parts, call: Call, rules: MarketRules) -> OrderIn:
    """Binance's new-order parameters as our ``OrderIn``; Binance's codes for what is missing or wrong. The
    stop types are the paper book's own (``stopPrice`` is our ``stop_price``): STOP_LOSS and TAKE_PROFIT run
    at the market once triggered, the ``_LIMIT`` ones rest at their price."""
    side = call.get("side")
    if side is None:
        raise mandatory("side")
    if side not in ("BUY", "SELL"):
        raise BinanceError(-1100, "Illegal characters found in parameter 'side'; legal range is 'BUY, SELL'.")
    kind = call.get("type")
    if kind is None:
        raise mandatory("type")
    if kind not in ORDER_TYPES:
        raise BinanceError(-1116, "Invalid orderType.")
    if call.get("trailingDelta") is not None:
        raise BinanceError(-2010, "Trailing stops are not supported for this symbol.")
    client_id = call.get("newClientOrderId")
    if client_id is not None and not (
        len(client_id) <= 36 and all(c.isalnum() or c in "._:/-" for c in client_id)
    ):
        raise illegal("newClientOrderId")
    stop = _decimal(call, "stopPrice", required=kind in STOP_TYPES)
    if stop is not None and kind not in STOP_TYPES:
        raise not_required("stopPrice")
    if kind in _AT_MARKET:
        if call.get("price") is not None:
            raise not_required("price")
        quantity = _decimal(call, "quantity", required=kind != "MARKET")
        quote = _decimal(call, "quoteOrderQty")
        if kind != "MARKET" and quote is not None:
            raise not_required("quoteOrderQty")
        if (quantity is None) == (quote is None):
            raise BinanceError(
                -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
            )
        if quantity is None:
            assert quote is not None
            quantity = await _quantity_for_quote(rt, rules, side, quote)
        return _validated(rules.symbol, side, kind, quantity, None, None, client_id, stop)
    quantity = _decimal(call, "quantity", required=True)
    price = _decimal(call, "price", required=True)
    assert quantity is not None and price is not None
    if kind == "LIMIT_MAKER":
        await _refuse_taker(rt, rules.symbol, side, price)
        return _validated(rules.symbol, side, "LIMIT", quantity, price, "GTC", client_id, None)
    tif = call.get("timeInForce")
    if tif is None:
        raise mandatory("timeInForce")
    if tif not in ("GTC", "IOC", "FOK"):
        raise BinanceError(-1115, "Invalid timeInForce.")
    return _validated(rules.symbol, side, kind, quantity, price, tif, client_id, stop)


def _validated(
    symbol: str,
    side: str,
    kind: str,
    quantity: Decimal,
    price: Decimal | None,
    tif: str | None,
    cid: str | None,
    stop: Decimal | None,
) -> OrderIn:
    try:
        return OrderIn(
            symbol=symbol,
            side=side,
            type=kind,
            quantity=quantity,
            price=price,
            stop_price=stop,
            time_in_force=tif,
            client_order_id=cid,
            mode=MODE,
        )
    except ValidationError:
        raise BinanceError(-1013, "Invalid quantity or price.") from None


async def _best(rt: Parts, symbol: str, side: str) -> Decimal | None:
    levels = (await _depth(rt, symbol)).get("asks" if side == "BUY" else "bids") or []
    return Decimal(str(levels[0][0])) if levels else None


async def _quantity_for_quote(rt: Parts, rules: MarketRules, side: str, quote: Decimal) -> Decimal:
    """quoteOrderQty → a quantity at the best opposite price (else the last price), rounded down to the step:
    the order then fills like one placed with that quantity."""
    reference = await _best(rt, rules.symbol, side) or await _price(rt, rules.symbol)
    if reference is None or reference <= 0:
        raise BinanceError(-2010, f"No market price for {rules.symbol} yet.")
    steps = (quote / reference / rules.step_size).to_integral_value(rounding=ROUND_FLOOR)
    quantity = steps * rules.step_size
    if quantity <= 0:
        raise BinanceError(-1013, "Filter failure: NOTIONAL")
    return quantity


async def _refuse_taker(rt: Parts, symbol: str, side: str, price: Decimal) -> None:
    """LIMIT_MAKER: refused if it would cross the book as it is now (the paper book has no post-only flag;
    the check is against the latest published depth)."""
    best = await _best(rt, symbol, "BUY" if side == "BUY" else "SELL")
    if best is not None and ((side == "BUY" and price >= best) or (side == "SELL" and price <= best)):
        raise BinanceError(-2010, "Order would immediately match and take.")


async def _fills(reader: AsyncSession, order_id: str) -> list[Fill]:
    rows = await reader.execute(
        select(Fill).where(col(Fill.order_id) == order_id).order_by(col(Fill.ts), col(Fill.id))
    )
    return list(rows.scalars())


def _watch(request: Request, rt: Parts) -> OrderWatch:
    """The app's watch of order updates on its bus (made on first use: nothing is built at import)."""
    state = request.app.state
    watch: OrderWatch | None = getattr(state, "binance_order_watch", None)
    if watch is None or watch.bus is not rt.bus:
        watch = state.binance_order_watch = OrderWatch(rt.bus)
    return watch


@router.post("/order/test", responses=error_responses(400, 401, 429))
async def test_order(request: Request, rt: PartsDep) -> dict[str, Any]:
    """Validates a new order (parameters, filters) without placing it."""
    call = await signed_call(request, rt, 1, "trade")
    rules = _market(rt, call)
    assert rules is not None
    body = await _order_in(rt, call, rules)
    try:  # the order service's own checks of the market's filters
        check_order_rules(rules, body.type, body.quantity, body.price, body.stop_price)
    except RuleViolation as exc:
        raise from_domain(exc, placing=True) from None
    return {}


@router.post("/order")
async def new_order(request: Request, rt: PartsDep) -> dict[str, Any]:
    """A new order of the user's paper account, placed by ``OrderService.place`` like any other."""
    call = await signed_call(request, rt, 1, "trade")
    assert call.key is not None
    rules = _market(rt, call)
    assert rules is not None
    body = await _order_in(rt, call, rules)
    # Binance's default: FULL for MARKET and LIMIT, ACK for every other type
    resp_type = call.get("newOrderRespType") or ("FULL" if call.get("type") in ("MARKET", "LIMIT") else "ACK")
    if resp_type not in ("ACK", "RESULT", "FULL"):
        raise illegal("newOrderRespType")
    async with contextlib.AsyncExitStack() as stack:
        # RESULT/FULL: watch the bus from before the write, so the worker's update cannot pass unseen
        watch = None if resp_type == "ACK" else await stack.enter_async_context(_watch(request, rt).hold())
        rt.order_admission.enter()
        try:
            async with rt.sessions() as session, session.begin():
                orders = order_service(rt, session)
                try:
                    order, created = await orders.place(_owner(call), body)
                except DomainError as exc:
                    raise from_domain(exc, placing=True) from None
                if not created:
                    raise BinanceError(-2010, "Duplicate order sent.")
                order_id = order.order_id
                binance_id = await binance_id_of(session, order_id)
            rt.relay.after_commit(session)
        finally:
            rt.order_admission.leave()
        if watch is None:
            return {
                "symbol": order.symbol,
                "orderId": binance_id,
                "orderListId": -1,
                "clientOrderId": order.client_order_id,
                "transactTime": render.millis(order.created_at),
            }
        settled = order_from_update(
            call.key.user_id, await watch.wait(watch.expect(order_id, _PENDING), SETTLE_TIMEOUT_S)
        )
    fills: list[Fill] = []
    if settled is None or (resp_type == "FULL" and settled.filled_quantity > 0):
        # no update (timeout, bus down), or fills to show: read the order and its fills together
        async with rt.read_sessions() as reader:
            settled, _ = await by_order_id(reader, order_id)
            fills = await _fills(reader, order_id) if resp_type == "FULL" else []
    if settled.status == "REJECTED":  # refused by the book (a stop that would trigger at once, funds): -2010
        raise BinanceError(-2010, _rejection(settled.reason))
    out = render.order_result(settled, binance_id)
    if resp_type == "FULL":
        out["fills"] = [render.order_fill(f) for f in fills]
    return out


def _rejection(reason: str | None) -> str:
    """The book's reason for a REJECTED order as Binance words it (clients map -2010 by its message)."""
    if reason is None:
        return "Order was rejected."
    return INSUFFICIENT if reason.startswith("insufficient ") else reason


async def _find(reader: AsyncSession, rt: Parts, call: Call, missing: BinanceError) -> tuple[Order, int]:
    """The caller's order named by orderId or origClientOrderId (and symbol) with its orderId, one query in
    the call's read session, else ``missing``."""
    assert call.key is not None
    rules = _market(rt, call)
    assert rules is not None
    binance_id = _int(call, "orderId")
    client_id = call.get("origClientOrderId")
    if binance_id is None and client_id is None:
        raise BinanceError(
            -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
        )
    found: tuple[Order, int] | None
    if binance_id is not None:
        order = await by_binance_id(reader, call.key.user_id, binance_id)
        found = (order, binance_id) if order is not None else None
    else:
        assert client_id is not None
        found = await by_client_id(reader, call.key.user_id, client_id)
    if found is None or found[0].symbol != rules.symbol or found[0].mode != MODE:
        raise missing
    return found


@router.get("/order")
async def get_order(request: Request, rt: PartsDep) -> dict[str, Any]:
    async with rt.read_sessions() as reader:
        call = await signed_call(request, rt, 4, "read", reader)
        order, binance_id = await _find(reader, rt, call, NO_SUCH_ORDER)
    return render.order_query(order, binance_id)


async def _cancel(request: Request, rt: Parts, call: Call, order: Order, binance_id: int) -> dict[str, Any]:
    """Cancel, then answer once the book has canceled it (the worker's update on the bus; at most
    SETTLE_TIMEOUT_S, then as it is)."""
    assert call.key is not None
    watch = _watch(request, rt)
    async with watch.hold():
        async with rt.sessions() as session, session.begin():
            publish_after_commit(session)
            try:
                canceling = await order_service(rt, session).cancel(_owner(call), order.id)
            except DomainError as exc:  # already final: Binance's "unknown order"
                raise UNKNOWN_ORDER from exc
            version = canceling.version
        rt.relay.after_commit(session)
        final = order_from_update(
            call.key.user_id, await watch.wait(watch.expect(order.id, _CANCELING, version), SETTLE_TIMEOUT_S)
        )
    if final is None:  # no update (timeout, bus down): the order as it is
        async with rt.read_sessions() as reader:
            final, _ = await by_order_id(reader, order.id)
    out = render.order_result(final, binance_id)
    del out["transactTime"], out["workingTime"]
    out["origClientOrderId"] = final.client_order_id
    out["transactTime"] = render.millis(final.updated_at)
    return out


@router.delete("/order")
async def cancel_order(request: Request, rt: PartsDep) -> dict[str, Any]:
    async with rt.read_sessions() as reader:
        call = await signed_call(request, rt, 1, "trade", reader)
        order, binance_id = await _find(reader, rt, call, UNKNOWN_ORDER)
    if order.status in FINAL:
        raise UNKNOWN_ORDER
    return await _cancel(request, rt, call, order, binance_id)


async def _orders(
    reader: AsyncSession, call: Call, *, open_only: bool, rules: MarketRules | None, limit: int
) -> list[tuple[Order, int]]:
    """The caller's paper orders (newest first) with their orderIds, in one query."""
    assert call.key is not None
    stmt = with_binance_ids().where(col(Order.user_id) == call.key.user_id, col(Order.mode) == MODE)
    if rules is not None:
        stmt = stmt.where(col(Order.symbol) == rules.symbol)
    if open_only:
        stmt = stmt.where(col(Order.status).in_(["PENDING", *OPEN]))
    rows = await reader.execute(stmt.order_by(col(Order.id).desc()).limit(limit))
    return [(order, int(binance_id)) for order, binance_id in rows.all() if binance_id is not None]


def _render_orders(orders: list[tuple[Order, int]]) -> list[dict[str, Any]]:
    return sorted((render.order_query(o, i) for o, i in orders), key=lambda o: o["orderId"])


@router.get("/openOrders")
async def open_orders(request: Request, rt: PartsDep) -> list[dict[str, Any]]:
    async with rt.read_sessions() as reader:
        call = await signed_call(request, rt, 6 if call_has_symbol(request) else 80, "read", reader)
        rules = _market(rt, call, required=False)
        orders = await _orders(reader, call, open_only=True, rules=rules, limit=1000)
    return _render_orders(orders)


@router.delete("/openOrders")
async def cancel_open_orders(request: Request, rt: PartsDep) -> list[dict[str, Any]]:
    async with rt.read_sessions() as reader:
        call = await signed_call(request, rt, 1, "trade", reader)
        rules = _market(rt, call)
        orders = await _orders(reader, call, open_only=True, rules=rules, limit=1000)
    orders = [(o, i) for o, i in orders if o.status != "PENDING_CANCEL"]
    if not orders:
        raise UNKNOWN_ORDER
    out = []
    for order, binance_id in orders:
        try:
            out.append(await _cancel(request, rt, call, order, binance_id))
        except BinanceError:  # filled meanwhile
            continue
    return out


@router.get("/allOrders")
async def all_orders(request: Request, rt: PartsDep) -> list[dict[str, Any]]:
    async with rt.read_sessions() as reader:
        call = await signed_call(request, rt, 20, "read", reader)
        rules = _market(rt, call)
        limit = _int(call, "limit", default=500, low=1, high=1000) or 500
        start, end, from_id = _time(call, "startTime"), _time(call, "endTime"), _int(call, "orderId")
        orders = await _orders(reader, call, open_only=False, rules=rules, limit=5000)
    rendered = _render_orders(orders)
    rendered = [
        o
        for o in rendered
        if (from_id is None or o["orderId"] >= from_id)
        and (start is None or o["time"] >= start)
        and (end is None or o["time"] <= end)
    ]
    return rendered[:limit] if from_id is not None or start is not None else rendered[-limit:]


@router.get("/myTrades")
async def my_trades(request: Request, rt: PartsDep) -> list[dict[str, Any]]:
    async with rt.read_sessions() as reader:
        return await _my_trades(reader, await signed_call(request, rt, 20, "read", reader), rt)


async def _my_trades(reader: AsyncSession, call: Call, rt: Parts) -> list[dict[str, Any]]:
    assert call.key is not None
    rules = _market(rt, call)
    assert rules is not None
    limit = _int(call, "limit", default=500, low=1, high=1000) or 500
    start, end, from_id = _time(call, "startTime"), _time(call, "endTime"), _int(call, "fromId")
    order_filter = _int(call, "orderId")
    stmt = select(Fill).where(
        col(Fill.user_id) == call.key.user_id, col(Fill.mode) == MODE, col(Fill.symbol) == rules.symbol
    )
    if from_id is not None:
        stmt = stmt.where(col(Fill.id) >= from_id)
    if start is not None:
        stmt = stmt.where(col(Fill.ts) >= datetime.fromtimestamp(start / 1000, UTC))
    if end is not None:
        stmt = stmt.where(col(Fill.ts) <= datetime.fromtimestamp(end / 1000, UTC))
    newest_first = from_id is None and start is None
    stmt = stmt.order_by(col(Fill.id).desc() if newest_first else col(Fill.id)).limit(
        limit if order_filter is None else 5000
    )
    fills = list((await reader.execute(stmt)).scalars())
    ids = await binance_ids(reader, {f.order_id for f in fills})
    out = [render.my_trade(f, ids.get(f.order_id, -1)) for f in fills]
    if order_filter is not None:
        out = [t for t in out if t["orderId"] == order_filter][:limit]
    return sorted(out, key=lambda t: t["id"])


@router.get("/account")
async def account(request: Request, rt: PartsDep) -> dict[str, Any]:
    async with rt.read_sessions() as reader:
        call = await signed_call(request, rt, 20, "read", reader)
        assert call.key is not None
        user_id = call.key.user_id
        if (
            await reader.get(PaperAccount, user_id) is None
        ):  # not funded yet: the deposit its first order makes
            balances = [
                {"asset": a, "free": render.amount(q), "locked": render.amount(Decimal(0))}
                for a, q in sorted(rt.settings.paper_starting_balances.items())
                if q > 0
            ]
        else:
            views = await SqlLedger(reader, rt.clock).balances(user_id)
            balances = [
                {"asset": v.asset, "free": render.amount(v.free), "locked": render.amount(v.locked)}
                for v in views
            ]
    maker, taker = rt.fees.maker_bps / 10000, rt.fees.taker_bps / 10000
    can_trade = "trade" in call.key.scopes
    return {
        "makerCommission": int(rt.fees.maker_bps),
        "takerCommission": int(rt.fees.taker_bps),
        "buyerCommission": 0,
        "sellerCommission": 0,
        "commissionRates": {
            "maker": render.amount(maker),
            "taker": render.amount(taker),
            "buyer": render.amount(Decimal(0)),
            "seller": render.amount(Decimal(0)),
        },
        "canTrade": can_trade,
        "canWithdraw": False,
        "canDeposit": False,
        "brokered": False,
        "requireSelfTradePrevention": False,
        "preventSor": False,
        "updateTime": _now_ms(rt),
        "accountType": "SPOT",
        "balances": balances,
        "permissions": ["SPOT"],
        "uid": _uid(user_id),
    }


def _uid(user_id: str) -> int:
    try:
        return int(user_id[:12], 16)
    except ValueError:
        return 0


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


@router.api_route("/{rest:path}", methods=list(_METHODS), include_in_schema=False)
async def unknown(request: Request, rest: str) -> Response:
    """Unknown endpoints under the prefix answer Binance's 404, not the web app's page; a known endpoint with
    a method it lacks answers 405 naming its methods (Allow), in Binance's shape like every error here."""
    path = request.url.path
    methods = {
        m
        for route in router.routes
        if isinstance(route, APIRoute) and route.include_in_schema and route.path_regex.match(path)
        for m in route.methods or ()
    }
    if methods:
        allow = ", ".join(m for m in _METHODS if m in methods)
        raise BinanceError(
            -1000,
            f"Method {request.method} not allowed for /api/v3/{rest}; use {allow}.",
            405,
            {"Allow": allow},
        )
    raise BinanceError(-1000, f"Unknown endpoint /api/v3/{rest}.", 404)
