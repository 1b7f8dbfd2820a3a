"""HTTP face of the double: the signed Binance spot REST API plus a `/__control` API, served by aiohttp.

One port serves everything; with `url` = `http://127.0.0.1:PORT` (BINANCE_TESTNET_URL) and `ws_url` =
`ws://127.0.0.1:PORT` (BINANCE_TESTNET_WS_URL):

- `url/api/v3/...`: the REST API (signed endpoints as Binance signs them: HMAC of the query string followed by
  the body). Orders: LIMIT, LIMIT_MAKER, MARKET and the stop types STOP_LOSS(_LIMIT), TAKE_PROFIT(_LIMIT);
  `POST /api/v3/order/cancelReplace`.
- `ws_url/ws/<stream>`, `ws_url/stream?streams=a/b`: market streams; `ws_url/ws-api/v3`: the WebSocket API
  with the user data stream (see `tests.binance_double.ws`).
- `url/__control/...`: the test's levers (prices, fills, faults) for a double in another process.

aiohttp rather than an ASGI app under uvicorn, because one fault needs it: "drop the connection after the
order was processed". An ASGI app never sees the socket, and uvicorn answers 500 when an app gives up
before starting a response, so the client would see an HTTP error instead of a network error. aiohttp
hands the handler its transport, which we abort, so ccxt sees exactly what a lost connection looks like.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import socket
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl

from aiohttp import web

from tests.binance_double.state import (
    KLINE_INTERVALS_MS,
    ORDER_TYPES,
    STOP_TYPES,
    BinanceError,
    CancelReplaceResult,
    ExchangeState,
    Fault,
    Order,
    SymbolSpec,
    Trade,
    fmt,
    mandatory,
)

if TYPE_CHECKING:
    from tests.binance_double.ws import StreamHub

Payload = Any
Handler = Callable[[web.Request, dict[str, str], str | None], Payload]

MAX_RECV_WINDOW = 60_000
HUB: web.AppKey[StreamHub] = web.AppKey("hub")


def _json(data: Payload, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(
        text=json.dumps(data, separators=(",", ":")),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _error(exc: BinanceError) -> web.Response:
    return _json({"code": exc.code, "msg": exc.msg}, status=exc.http_status)


# ---------------------------------------------------------------------- renderers (Binance field names)


def symbol_info(spec: SymbolSpec) -> dict[str, Any]:
    return {
        "symbol": spec.symbol,
        "status": "TRADING",
        "baseAsset": spec.base,
        "baseAssetPrecision": spec.base_precision,
        "quoteAsset": spec.quote,
        "quotePrecision": spec.quote_precision,
        "quoteAssetPrecision": spec.quote_precision,
        "baseCommissionPrecision": spec.base_precision,
        "quoteCommissionPrecision": spec.quote_precision,
        "orderTypes": list(ORDER_TYPES),
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": True,
        "amendAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": fmt(spec.min_price),
                "maxPrice": fmt(spec.max_price),
                "tickSize": fmt(spec.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": fmt(spec.min_qty),
                "maxQty": fmt(spec.max_qty),
                "stepSize": fmt(spec.step_size),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": fmt(spec.market_min_qty),
                "maxQty": fmt(spec.market_max_qty),
                "stepSize": fmt(Decimal(0)),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": fmt(spec.min_notional),
                "applyMinToMarket": True,
                "maxNotional": fmt(spec.max_notional),
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def order_json(o: Order) -> dict[str, Any]:
    return {
        "symbol": o.symbol,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": o.client_order_id,
        "price": fmt(o.price),
        "origQty": fmt(o.orig_qty),
        "executedQty": fmt(o.executed_qty),
        "cummulativeQuoteQty": fmt(o.cummulative_quote_qty),
        "status": o.status,
        "timeInForce": o.time_in_force,
        "type": o.type,
        "side": o.side,
        "stopPrice": fmt(o.stop_price),
        "icebergQty": fmt(Decimal(0)),
        "time": o.time,
        "updateTime": o.update_time,
        "isWorking": o.is_working,
        "workingTime": o.working_time,
        "origQuoteOrderQty": fmt(o.orig_quote_order_qty),
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


def default_resp_type(order_type: str | None) -> str:
    """Binance answers MARKET and LIMIT orders in FULL by default, every other type with an ACK."""
    return "FULL" if order_type in ("MARKET", "LIMIT") else "ACK"


def new_order_json(o: Order, fills: list[Trade], resp_type: str) -> dict[str, Any]:
    ack = {
        "symbol": o.symbol,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": o.client_order_id,
        "transactTime": o.time,
    }
    if resp_type == "ACK":
        return ack
    full = order_json(o)
    result = {
        **ack,
        **{
            k: full[k]
            for k in (
                "price",
                "origQty",
                "executedQty",
                "origQuoteOrderQty",
                "cummulativeQuoteQty",
                "status",
                "timeInForce",
                "type",
                "side",
            )
        },
        "workingTime": o.working_time,
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }
    if o.type in STOP_TYPES:
        result["stopPrice"] = full["stopPrice"]
    if resp_type == "FULL":
        result["fills"] = [
            {
                "price": fmt(t.price),
                "qty": fmt(t.qty),
                "commission": fmt(t.commission),
                "commissionAsset": t.commission_asset,
                "tradeId": t.trade_id,
            }
            for t in fills
        ]
    return result


def cancel_json(o: Order, orig_client_id: str, new_client_id: str) -> dict[str, Any]:
    full = order_json(o)
    return {
        "symbol": o.symbol,
        "origClientOrderId": orig_client_id,
        "orderId": o.order_id,
        "orderListId": -1,
        "clientOrderId": new_client_id,
        "transactTime": o.update_time,
        **{
            k: full[k]
            for k in (
                "price",
                "origQty",
                "executedQty",
                "origQuoteOrderQty",
                "cummulativeQuoteQty",
                "status",
                "timeInForce",
                "type",
                "side",
                *(("stopPrice",) if o.type in STOP_TYPES else ()),
                "selfTradePreventionMode",
            )
        },
    }


def cancel_replace_response(result: CancelReplaceResult, resp_type: str) -> web.Response:
    """Binance's four shapes: 200 both done, 409 -2021 one side failed, 400 -2022 nothing done."""

    def side(value: Any, render: Callable[[Any], dict[str, Any]]) -> Any:
        if value is None:
            return None
        if isinstance(value, BinanceError):
            return {"code": value.code, "msg": value.msg}
        return render(value)

    cancel = result.cancel
    body = {
        "cancelResult": "FAILURE" if isinstance(cancel, BinanceError) else "SUCCESS",
        "newOrderResult": (
            "NOT_ATTEMPTED"
            if result.new is None
            else "FAILURE"
            if isinstance(result.new, BinanceError)
            else "SUCCESS"
        ),
        "cancelResponse": side(
            cancel, lambda o: cancel_json(o, result.orig_client_order_id or "", result.cancel_client_order_id)
        ),
        "newOrderResponse": side(result.new, lambda n: new_order_json(n[0], n[1], resp_type)),
    }
    failures = [body["cancelResult"], body["newOrderResult"]].count("SUCCESS")
    if failures == 2:
        return _json(body)
    if failures == 1:
        return _json({"code": -2021, "msg": "Order cancel-replace partially failed.", "data": body}, 409)
    return _json({"code": -2022, "msg": "Order cancel-replace failed.", "data": body}, 400)


def book_ticker(state: ExchangeState, symbol: str) -> dict[str, Any]:
    bids, asks = state.depth(symbol, 1)
    return {
        "symbol": symbol,
        "bidPrice": fmt(bids[0][0]) if bids else fmt(Decimal(0)),
        "bidQty": fmt(bids[0][1]) if bids else fmt(Decimal(0)),
        "askPrice": fmt(asks[0][0]) if asks else fmt(Decimal(0)),
        "askQty": fmt(asks[0][1]) if asks else fmt(Decimal(0)),
    }


def ticker_24hr(state: ExchangeState, symbol: str) -> dict[str, Any]:
    now = state.now_ms()
    since = now - 86_400_000
    tape = state.tape(symbol)
    window = [p for p in tape if p.time >= since] or tape[-1:]
    before = [p for p in tape if p.time < since]
    open_price = before[-1].price if before else window[0].price
    last = state.price(symbol)
    prices = [p.price for p in window]
    trades = [p for p in window if p.trade_id is not None]
    volume = sum((p.qty for p in trades), Decimal(0))
    quote_volume = sum((p.qty * p.price for p in trades), Decimal(0))
    book = book_ticker(state, symbol)
    change = last - open_price
    return {
        "symbol": symbol,
        "priceChange": fmt(change),
        "priceChangePercent": f"{(change / open_price * 100) if open_price else Decimal(0):.3f}",
        "weightedAvgPrice": fmt(quote_volume / volume if volume else last),
        "prevClosePrice": fmt(open_price),
        "lastPrice": fmt(last),
        "lastQty": fmt(trades[-1].qty if trades else Decimal(0)),
        "bidPrice": book["bidPrice"],
        "bidQty": book["bidQty"],
        "askPrice": book["askPrice"],
        "askQty": book["askQty"],
        "openPrice": fmt(open_price),
        "highPrice": fmt(max([*prices, last])),
        "lowPrice": fmt(min([*prices, last])),
        "volume": fmt(volume),
        "quoteVolume": fmt(quote_volume),
        "openTime": since,
        "closeTime": now,
        "firstId": trades[0].trade_id if trades else -1,
        "lastId": trades[-1].trade_id if trades else -1,
        "count": len(trades),
    }


def trade_json(t: Trade) -> dict[str, Any]:
    return {
        "symbol": t.symbol,
        "id": t.trade_id,
        "orderId": t.order_id,
        "orderListId": -1,
        "price": fmt(t.price),
        "qty": fmt(t.qty),
        "quoteQty": fmt(t.quote_qty),
        "commission": fmt(t.commission),
        "commissionAsset": t.commission_asset,
        "time": t.time,
        "isBuyer": t.is_buyer,
        "isMaker": t.is_maker,
        "isBestMatch": True,
    }


# ---------------------------------------------------------------------- the app


def _int_param(params: dict[str, str], name: str, default: int | None = None) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BinanceError(
            -1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'."
        ) from None


def _limit(params: dict[str, str], default: int, maximum: int) -> int:
    value = _int_param(params, "limit", default)
    assert value is not None
    if value < 1:
        raise BinanceError(-1100, "Illegal characters found in parameter 'limit'.")
    return min(value, maximum)


def _strip_signature(raw: str) -> str:
    return "&".join(p for p in raw.split("&") if p and not p.startswith("signature="))


class DoubleApp:
    """Routes, authentication and fault injection around one `ExchangeState`."""

    def __init__(self, state: ExchangeState) -> None:
        self.state = state
        self._public: dict[tuple[str, str], Handler] = {
            ("GET", "/api/v3/ping"): lambda r, p, k: {},
            ("GET", "/api/v3/time"): lambda r, p, k: {"serverTime": self.state.now_ms()},
            ("GET", "/api/v3/exchangeInfo"): self._exchange_info,
            ("GET", "/api/v3/ticker/price"): self._ticker_price,
            ("GET", "/api/v3/ticker/bookTicker"): self._book_ticker,
            ("GET", "/api/v3/ticker/24hr"): self._ticker_24hr,
            ("GET", "/api/v3/depth"): self._depth,
            ("GET", "/api/v3/trades"): self._trades,
            ("GET", "/api/v3/aggTrades"): self._agg_trades,
            ("GET", "/api/v3/klines"): self._klines,
        }
        self._keyed: dict[tuple[str, str], Handler] = {
            ("POST", "/api/v3/userDataStream"): lambda r, p, k: {
                "listenKey": self.state.new_listen_key(k or "")
            },
            ("PUT", "/api/v3/userDataStream"): self._listen_key,
            ("DELETE", "/api/v3/userDataStream"): self._listen_key,
        }
        self._signed: dict[tuple[str, str], Handler] = {
            ("GET", "/api/v3/account"): self._account,
            ("POST", "/api/v3/order"): self._new_order,
            ("POST", "/api/v3/order/test"): self._test_order,
            ("POST", "/api/v3/order/cancelReplace"): self._cancel_replace,
            ("GET", "/api/v3/order"): self._get_order,
            ("DELETE", "/api/v3/order"): self._cancel_order,
            ("GET", "/api/v3/openOrders"): self._open_orders,
            ("DELETE", "/api/v3/openOrders"): self._cancel_all,
            ("GET", "/api/v3/allOrders"): self._all_orders,
            ("GET", "/api/v3/myTrades"): self._my_trades,
        }

    def build(self) -> web.Application:
        from tests.binance_double.control import add_control_routes
        from tests.binance_double.ws import StreamHub

        app = web.Application()
        hub = StreamHub(self.state)
        app[HUB] = hub
        add_control_routes(app, self.state, hub)
        app.router.add_route("*", "/api/{tail:.*}", self.handle)
        hub.add_routes(app)
        return app

    async def handle(self, request: web.Request) -> web.StreamResponse:
        method, path = request.method, request.path
        raw_query = request.rel_url.raw_query_string
        raw_body = await request.text() if request.can_read_body else ""
        params = parse_qsl(raw_query, keep_blank_values=True) + parse_qsl(raw_body, keep_blank_values=True)
        api_key = request.headers.get("X-MBX-APIKEY")
        fault = self.state.take_fault(method, path)
        fault_name = (
            None if fault is None else fault.kind + (f"_{fault.status}" if fault.kind == "status" else "")
        )

        if fault is not None and fault.kind == "status" and not fault.after_processing:
            self.state.log_request(method, path, params, api_key, fault.status, fault_name)
            return self._fault_response(fault)
        if fault is not None and fault.kind == "drop" and not fault.after_processing:
            self.state.log_request(method, path, params, api_key, 0, fault_name)
            return self._drop(request)

        response = self._process(method, path, dict(params), raw_query, raw_body, api_key, request)

        if fault is None:
            self.state.log_request(method, path, params, api_key, response.status, None)
            return response
        processed = f"{response.status} {response.text}" if isinstance(response, web.Response) else None
        if fault.kind == "status":
            self.state.log_request(method, path, params, api_key, fault.status, fault_name, processed)
            return self._fault_response(fault)
        if fault.kind == "drop":
            self.state.log_request(method, path, params, api_key, 0, fault_name, processed)
            return self._drop(request)
        self.state.log_request(method, path, params, api_key, response.status, fault_name)
        await asyncio.sleep(fault.delay)
        return response

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        if transport is not None:
            transport.abort()
        # Nothing can be written any more; aiohttp discards the response of a closed connection.
        return web.Response(status=204)

    def _fault_response(self, fault: Fault) -> web.Response:
        if fault.status == 429:
            body = {
                "code": -1003,
                "msg": "Too much request weight used; current limit is 6000 request weight per 1 MINUTE. "
                "Please use WebSocket Streams for live updates to avoid polling the API.",
            }
            return _json(body, 429, {"Retry-After": str(fault.retry_after)})
        if fault.status == 418:
            until = self.state.now_ms() + fault.retry_after * 1000
            body = {
                "code": -1003,
                "msg": f"Way too much request weight used; IP banned until {until}. "
                "Please use WebSocket Streams for live updates to avoid bans.",
            }
            return _json(body, 418, {"Retry-After": str(fault.retry_after)})
        # 5xx from Binance's edge are not JSON; ccxt then maps the HTTP status (503 -> ExchangeNotAvailable).
        reason = {
            500: "Internal Server Error",
            502: "Bad Gateway",
            503: "Service Unavailable",
            504: "Gateway Timeout",
        }
        return web.Response(
            text=reason.get(fault.status, "Error"), status=fault.status, content_type="text/plain"
        )

    def _process(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        raw_query: str,
        raw_body: str,
        api_key: str | None,
        request: web.Request,
    ) -> web.Response:
        key = (method, path)
        try:
            if key in self._public:
                return _json(self._public[key](request, params, None))
            if key in self._keyed:
                self._authenticate_key(api_key)
                return _json(self._keyed[key](request, params, api_key))
            if key in self._signed:
                self._authenticate_signed(api_key, params, raw_query, raw_body)
                assert api_key is not None
                result = self._signed[key](request, params, api_key)
                return result if isinstance(result, web.Response) else _json(result)
        except BinanceError as exc:
            return _error(exc)
        return _json({"code": -1000, "msg": "An unknown error occurred while processing the request."}, 404)

    # -------------------------------------------------------------- authentication

    def _authenticate_key(self, api_key: str | None) -> None:
        if not api_key:
            raise BinanceError(-2014, "API-key format invalid.", 401)
        if self.state.account(api_key) is None:
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)

    def _authenticate_signed(
        self, api_key: str | None, params: dict[str, str], raw_query: str, raw_body: str
    ) -> None:
        self._authenticate_key(api_key)
        assert api_key is not None
        account = self.state.account(api_key)
        assert account is not None
        timestamp = _int_param(params, "timestamp")
        if timestamp is None:
            raise mandatory("timestamp")
        signature = params.get("signature")
        if not signature:
            raise mandatory("signature")
        recv_window = _int_param(params, "recvWindow", 5000)
        assert recv_window is not None
        if recv_window > MAX_RECV_WINDOW:
            raise BinanceError(-1131, "recvWindow must be less than 60000")
        # totalParams: the query string followed directly by the form body, without the signature itself.
        total = _strip_signature(raw_query) + _strip_signature(raw_body)
        expected = hmac.new(account.api_secret.encode(), total.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature.lower()):
            raise BinanceError(-1022, "Signature for this request is not valid.")
        server_time = self.state.now_ms()
        if timestamp >= server_time + 1000:
            raise BinanceError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if server_time - timestamp > recv_window:
            raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")

    # -------------------------------------------------------------- public endpoints

    def _symbols_param(self, params: dict[str, str]) -> list[str] | None:
        if params.get("symbol"):
            self.state.spec(params["symbol"])
            return [params["symbol"]]
        if params.get("symbols"):
            try:
                names = json.loads(params["symbols"])
            except ValueError:
                raise BinanceError(-1100, "Illegal characters found in parameter 'symbols'.") from None
            for name in names:
                self.state.spec(name)
            return list(names)
        return None

    def _one_or_many(self, params: dict[str, str], render: Callable[[str], dict[str, Any]]) -> Payload:
        wanted = self._symbols_param(params)
        if params.get("symbol"):
            return render(params["symbol"])
        names = wanted if wanted is not None else [s.symbol for s in self.state.symbols()]
        return [render(n) for n in names]

    def _exchange_info(self, request: web.Request, params: dict[str, str], _k: str | None) -> Payload:
        wanted = self._symbols_param(params)
        specs = [s for s in self.state.symbols() if wanted is None or s.symbol in wanted]
        return {
            "timezone": "UTC",
            "serverTime": self.state.now_ms(),
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 200000},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": [symbol_info(s) for s in specs],
        }

    def _ticker_price(self, request: web.Request, params: dict[str, str], _k: str | None) -> Payload:
        return self._one_or_many(params, lambda s: {"symbol": s, "price": fmt(self.state.price(s))})

    def _book(self, symbol: str) -> dict[str, Any]:
        return book_ticker(self.state, symbol)

    def _book_ticker(self, request: web.Request, params: dict[str, str], _k: str | None) -> Payload:
        return self._one_or_many(params, self._book)

    def _24hr(self, symbol: str) -> dict[str, Any]:
        return ticker_24hr(self.state, symbol)

    def _ticker_24hr(self, request: web.Request, params: dict[str, str], _k: str | None) -> Payload:
        return self._one_or_many(params, self._24hr)

    def _depth(self, request: web.Request, params: dict[str, str], _k: str | None) -> Payload:
        symbol = params.get("symbol") or ""
        if not symbol:
            raise mandatory("symbol")
        update_id, bids, asks = self.state.depth_snapshot(symbol, _limit(params, 100, 5000))
        return {
            "lastUpdateId": update_id,
            "bids": [[fmt(p), fmt(q)] for p, q in bids],
            "asks": [[fmt(p), fmt(q)] for p, q in asks],
        }

    def _public_trades(self, params: dict[str, str]) -> list[Any]:
        symbol = params.get("symbol") or ""
        if not symbol:
            raise mandatory("symbol")
        trades = self.state.public_trades(symbol)
        from_id = _int_param(params, "fromId")
        if from_id is not None:
            trades = [t for t in trades if (t.trade_id or 0) >= from_id]
        start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
        if start is not None:
            trades = [t for t in trades if t.time >= start]
        if end is not None:
            trades = [t for t in trades if t.time <= end]
        limit = _limit(params, 500, 1000)
        return trades[:limit] if (from_id is not None or start is not None) else trades[-limit:]

    def _trades(self, request: web.Request, params: dict[str, str], _k: str | None) -> Payload:
        return [
            {
                "id": t.trade_id,
                "price": fmt(t.price),
                "qty": fmt(t.qty),
                "quoteQty": fmt(t.price * t.qty),
                "time": t.time,
                "isBuyerMaker": t.is_buyer_maker,
                "isBestMatch": True,
            }
            for t in self._public_trades(params)
        ]

    def _agg_trades(self, request: web.Request, params: dict[str, str], _k: str | None) -> Payload:
        return [
            {
                "a": t.trade_id,
                "p": fmt(t.price),
                "q": fmt(t.qty),
                "f": t.trade_id,
                "l": t.trade_id,
                "T": t.time,
                "m": t.is_buyer_maker,
                "M": True,
            }
            for t in self._public_trades(params)
        ]

    def _klines(self, request: web.Request, params: dict[str, str], _k: str | None) -> Payload:
        symbol = params.get("symbol") or ""
        if not symbol:
            raise mandatory("symbol")
        interval = params.get("interval") or ""
        if not interval:
            raise mandatory("interval")
        if interval not in KLINE_INTERVALS_MS:
            raise BinanceError(-1120, "Invalid interval.")
        iv = KLINE_INTERVALS_MS[interval]
        tape = self.state.tape(symbol)
        limit = _limit(params, 500, 1000)
        now = self.state.now_ms()
        first_bucket = tape[0].time // iv * iv
        end = _int_param(params, "endTime", now)
        assert end is not None
        last_bucket = min(end, now) // iv * iv
        start = _int_param(params, "startTime")
        if start is not None:
            begin = max(first_bucket, start // iv * iv)
        else:
            begin = max(first_bucket, last_bucket - (limit - 1) * iv)
        rows: list[list[Any]] = []
        idx = 0
        prev_close = tape[0].price
        bucket = begin
        while idx < len(tape) and tape[idx].time < begin:
            prev_close = tape[idx].price
            idx += 1
        while bucket <= last_bucket and len(rows) < limit:
            close_time = bucket + iv - 1
            points = []
            while idx < len(tape) and tape[idx].time <= close_time:
                points.append(tape[idx])
                idx += 1
            prices = [p.price for p in points] or [prev_close]
            fills = [p for p in points if p.trade_id is not None]
            volume = sum((p.qty for p in fills), Decimal(0))
            quote = sum((p.qty * p.price for p in fills), Decimal(0))
            taker_buy = [p for p in fills if not p.is_buyer_maker]
            rows.append(
                [
                    bucket,
                    fmt(prev_close if not points else prices[0]),
                    fmt(max(prices)),
                    fmt(min(prices)),
                    fmt(prices[-1]),
                    fmt(volume),
                    close_time,
                    fmt(quote),
                    len(fills),
                    fmt(sum((p.qty for p in taker_buy), Decimal(0))),
                    fmt(sum((p.qty * p.price for p in taker_buy), Decimal(0))),
                    "0",
                ]
            )
            prev_close = prices[-1]
            bucket += iv
        return rows

    # -------------------------------------------------------------- keyed / signed endpoints

    def _listen_key(self, request: web.Request, params: dict[str, str], api_key: str | None) -> Payload:
        listen_key = params.get("listenKey") or ""
        if not listen_key:
            raise mandatory("listenKey")
        self.state.touch_listen_key(api_key or "", listen_key, delete=request.method == "DELETE")
        return {}

    def _account(self, request: web.Request, params: dict[str, str], api_key: str | None) -> Payload:
        assert api_key is not None
        balances = self.state.balances(api_key)
        omit_zero = params.get("omitZeroBalances") == "true"
        return {
            "makerCommission": 10,
            "takerCommission": 10,
            "buyerCommission": 0,
            "sellerCommission": 0,
            "commissionRates": {
                "maker": "0.00100000",
                "taker": "0.00100000",
                "buyer": "0.00000000",
                "seller": "0.00000000",
            },
            "canTrade": True,
            "canWithdraw": True,
            "canDeposit": True,
            "brokered": False,
            "requireSelfTradePrevention": False,
            "preventSor": False,
            "updateTime": self.state.now_ms(),
            "accountType": "SPOT",
            "balances": [
                {"asset": b.asset, "free": fmt(b.free), "locked": fmt(b.locked)}
                for b in balances.values()
                if not (omit_zero and b.free == 0 and b.locked == 0)
            ],
            "permissions": ["SPOT"],
            "uid": abs(hash(api_key)) % 10**9,
        }

    def _new_order(self, request: web.Request, params: dict[str, str], api_key: str | None) -> Payload:
        assert api_key is not None
        order, fills = self.state.place_order(api_key, params)
        return new_order_json(order, fills, params.get("newOrderRespType") or default_resp_type(order.type))

    def _cancel_replace(self, request: web.Request, params: dict[str, str], api_key: str | None) -> Payload:
        assert api_key is not None
        result = self.state.cancel_replace(api_key, params)
        return cancel_replace_response(
            result, params.get("newOrderRespType") or default_resp_type(params.get("type"))
        )

    def _test_order(self, request: web.Request, params: dict[str, str], api_key: str | None) -> Payload:
        return {}

    def _order_ref(self, params: dict[str, str]) -> tuple[str, int | None, str | None]:
        symbol = params.get("symbol") or ""
        if not symbol:
            raise mandatory("symbol")
        return symbol, _int_param(params, "orderId"), params.get("origClientOrderId") or None

    def _get_order(self, request: web.Request, params: dict[str, str], api_key: str | None) -> Payload:
        assert api_key is not None
        symbol, order_id, client_id = self._order_ref(params)
        return order_json(self.state.get_order(api_key, symbol, order_id=order_id, client_order_id=client_id))

    def _cancel_order(self, request: web.Request, params: dict[str, str], api_key: str | None) -> Payload:
        assert api_key is not None
        symbol, order_id, client_id = self._order_ref(params)
        new_id = params.get("newClientOrderId") or self.state.new_client_id()
        order = self.state.cancel_order(
            api_key, symbol, order_id=order_id, client_order_id=client_id, new_client_order_id=new_id
        )
        return cancel_json(order, order.client_order_id, new_id)

    def _cancel_all(self, request: web.Request, params: dict[str, str], api_key: str | None) -> Payload:
        assert api_key is not None
        symbol = params.get("symbol") or ""
        if not symbol:
            raise mandatory("symbol")
        return [
            cancel_json(o, o.client_order_id, self.state.new_client_id())
            for o in self.state.cancel_all(api_key, symbol)
        ]

    def _open_orders(self, request: web.Request, params: dict[str, str], api_key: str | None) -> Payload:
        assert api_key is not None
        symbol = params.get("symbol") or None
        if symbol:
            self.state.spec(symbol)
        orders = sorted(self.state.open_orders(api_key, symbol), key=lambda o: o.order_id)
        return [order_json(o) for o in orders]

    def _all_orders(self, request: web.Request, params: dict[str, str], api_key: str | None) -> Payload:
        assert api_key is not None
        symbol = params.get("symbol") or ""
        if not symbol:
            raise mandatory("symbol")
        self.state.spec(symbol)
        orders = sorted(self.state.orders(api_key, symbol=symbol), key=lambda o: o.order_id)
        order_id = _int_param(params, "orderId")
        start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
        if order_id is not None:
            orders = [o for o in orders if o.order_id >= order_id]
        if start is not None:
            orders = [o for o in orders if o.time >= start]
        if end is not None:
            orders = [o for o in orders if o.time <= end]
        limit = _limit(params, 500, 1000)
        orders = orders[:limit] if order_id is not None else orders[-limit:]
        return [order_json(o) for o in orders]

    def _my_trades(self, request: web.Request, params: dict[str, str], api_key: str | None) -> Payload:
        assert api_key is not None
        symbol = params.get("symbol") or ""
        if not symbol:
            raise mandatory("symbol")
        self.state.spec(symbol)
        trades = self.state.trades(api_key, symbol=symbol)
        order_id = _int_param(params, "orderId")
        from_id = _int_param(params, "fromId")
        start, end = _int_param(params, "startTime"), _int_param(params, "endTime")
        if order_id is not None:
            trades = [t for t in trades if t.order_id == order_id]
        if from_id is not None:
            trades = [t for t in trades if t.trade_id >= from_id]
        if start is not None:
            trades = [t for t in trades if t.time >= start]
        if end is not None:
            trades = [t for t in trades if t.time <= end]
        limit = _limit(params, 500, 1000)
        trades = trades[:limit] if (from_id is not None or start is not None) else trades[-limit:]
        return [trade_json(t) for t in trades]


# ---------------------------------------------------------------------- running it


def _free_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


class BinanceDouble:
    """The double running in a background thread: `.url`/`.ws_url` for the client, `.state` for the test.

    `.url` is the REST base (BINANCE_TESTNET_URL), `.ws_url` the WebSocket base (BINANCE_TESTNET_WS_URL):
    `ws_url + "/ws/<stream>"` and `ws_url + "/stream?streams=..."` for market streams, `ws_url + "/ws-api/v3"`
    for the WebSocket API and its user data stream.
    """

    def __init__(self, state: ExchangeState | None = None, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state or ExchangeState()
        self._host = host
        self._port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.url = ""
        self.ws_url = ""

    def start(self) -> BinanceDouble:
        sock = _free_socket(self._host, self._port)
        self.url = f"http://{self._host}:{sock.getsockname()[1]}"
        self.ws_url = f"ws://{self._host}:{sock.getsockname()[1]}"
        self._thread = threading.Thread(target=self._run, args=(sock,), name="binance-double", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the Binance double did not start within 10s")
        if self._error is not None:
            raise RuntimeError("the Binance double failed to start") from self._error
        return self

    def _run(self, sock: socket.socket) -> None:
        """One ``run_forever`` from the start: ``stop`` right after ``start`` (a test that wants the exchange
        unreachable from the outset) used to land in the ``run_until_complete`` that set the server up, and the
        ``run_forever`` after it then ran on: the double kept answering, and ``stop`` waited 10 s for nothing."""
        loop = asyncio.new_event_loop()
        self._loop = loop
        serving = loop.create_task(self._serve(sock))
        try:
            loop.run_forever()
        finally:
            if not serving.done():
                serving.cancel()
                loop.run_until_complete(asyncio.gather(serving, return_exceptions=True))
            if self._runner is not None:
                loop.run_until_complete(self._runner.cleanup())
            loop.close()

    async def _serve(self, sock: socket.socket) -> None:
        try:
            self._runner = await start_runner(self.state, sock)
        except Exception as exc:  # reported to the starting thread
            self._error = exc
            asyncio.get_running_loop().stop()
        finally:
            self._ready.set()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> BinanceDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # Shortcuts for the commonest controls.
    def create_account(self, balances: dict[str, Any] | None = None, **kw: Any) -> Any:
        return self.state.create_account(balances, **kw)

    def fail_next(
        self,
        method: str,
        path: str,
        status: int,
        *,
        times: int = 1,
        retry_after: int = 1,
        after_processing: bool = False,
    ) -> None:
        """The next `times` requests to `method path` answer `status` (429/418 carry Retry-After)."""
        self.state.inject_fault(
            Fault(
                method.upper(),
                path,
                "status",
                times,
                status=status,
                retry_after=retry_after,
                after_processing=after_processing,
            )
        )

    def delay_next(self, method: str, path: str, seconds: float, *, times: int = 1) -> None:
        """The next `times` requests are processed, but answered only after `seconds`."""
        self.state.inject_fault(Fault(method.upper(), path, "delay", times, delay=seconds))

    def drop_next(self, method: str, path: str, *, times: int = 1, after_processing: bool = True) -> None:
        """The next `times` requests are processed (by default), then the connection is cut with no answer."""
        self.state.inject_fault(Fault(method.upper(), path, "drop", times, after_processing=after_processing))

    def lose_cancel_ack(self, *, times: int = 1) -> None:
        """The next cancels are carried out, but their acknowledgement never arrives."""
        self.drop_next("DELETE", "/api/v3/order", times=times)

    # WebSocket faults.
    def reset_ws(self, scope: Literal["all", "market", "api"] = "all") -> None:
        """Cut the live WebSocket connections (market streams, the API, or both) without a close frame."""
        self.state.reset_ws_connections(scope)

    def terminate_user_streams(self, api_key: str | None = None) -> None:
        """End user data stream subscriptions (one account's, or all) with eventStreamTerminated."""
        self.state.terminate_user_streams(api_key)

    def server_shutdown(self) -> None:
        """serverShutdown on every WebSocket connection, then close them."""
        self.state.server_shutdown()

    def delay_ws(self, delay_ms: int) -> None:
        """Hold every WebSocket message for `delay_ms` (0 ends the delay); order is kept."""
        self.state.set_ws_delay_ms(delay_ms)

    def ws_subscriptions(self) -> dict[str, Any]:
        """Live connections: market stream names per connection, user data subscriptions' API keys per API one."""
        if self._loop is None or self._runner is None:
            return {"market": [], "api": []}
        hub = self._runner.app[HUB]

        async def read() -> dict[str, Any]:
            return hub.snapshot()

        return asyncio.run_coroutine_threadsafe(read(), self._loop).result(5)


async def start_runner(state: ExchangeState, sock: socket.socket) -> web.AppRunner:
    app = DoubleApp(state).build()
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.05)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    return runner


@contextlib.contextmanager
def run_binance_double(state: ExchangeState | None = None, *, port: int = 0) -> Iterator[BinanceDouble]:
    double = BinanceDouble(state, port=port)
    with double:
        yield double
