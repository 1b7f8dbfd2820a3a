"""WebSocket face of the double: Binance's market streams and its WebSocket API, on the REST server's port.

URL scheme, with `ws_url` = `ws://127.0.0.1:PORT` (`BinanceDouble.ws_url`, what BINANCE_TESTNET_WS_URL is set to):

- `ws_url/ws/<stream>[/<stream>...]`: raw market streams, each event sent as is. `ws_url/ws` and a path that
  names no valid stream (ccxt connects to `ws_url/ws/0`) start with no stream; SUBSCRIBE adds them.
- `ws_url/stream?streams=<stream>/<stream>`: combined streams, each event as `{"stream": name, "data": event}`.
- `ws_url/ws-api/v3`: the WebSocket API: `{"id", "method", "params"}` requests answered with
  `{"id", "status", "result" | "error", "rateLimits"}`. Methods: `ping`, `time`,
  `userDataStream.subscribe.signature`, `userDataStream.unsubscribe`, `session.subscriptions`. A
  subscription pushes `{"subscriptionId": N, "event": {...}}` for every change of its account
  (executionReport, outboundAccountPosition, balanceUpdate, eventStreamTerminated), whoever made it.
  (Listen keys and `userDataStream.start` are gone from the spot testnet since 2026-02-04; `session.logon`
  needs an Ed25519 key, which neither python-binance nor ccxt uses for the user stream: not served.)

Streams (lower-case symbol): `<s>@trade`, `<s>@aggTrade`, `<s>@kline_<interval>`, `<s>@ticker`,
`<s>@miniTicker`, `<s>@bookTicker`, `<s>@depth[@100ms|@1000ms]` (diff: `U`/`u` continue REST depth's
`lastUpdateId`), `<s>@depth<5|10|20>[@100ms|@1000ms]` (partial book, sent on subscribing and on every change).
Control messages: SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY/GET_PROPERTY `combined`.

Signatures of the WebSocket API follow its documentation: HMAC-SHA256 (hex, case-insensitive) of every param
but `signature`, sorted by name, as `name=value` joined by `&`, values NOT percent-encoded (the 2026-01-15
percent-encoding change is the REST API's). python-binance (`urlencode`) and ccxt (`rawencode`) send the same
payload for the subscription's params (apiKey, timestamp, recvWindow).

Faults come from `ExchangeState` (`StreamControl` events, `set_ws_delay_ms`), so the control API, the Python
shortcuts and a separate process all drive them the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import re
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

from tests.binance_double.state import (
    KLINE_INTERVALS_MS,
    MARKET_LIKE,
    AccountPosition,
    BalanceDelta,
    BinanceError,
    BookUpdate,
    Event,
    ExchangeState,
    OrderUpdate,
    StreamControl,
    TapeUpdate,
    fmt,
    mandatory,
)

MAX_RECV_WINDOW = 60_000
ZERO = Decimal(0)
_STREAM_RE = re.compile(
    r"^(?P<symbol>[a-z0-9]+)@(?P<channel>trade|aggTrade|ticker|miniTicker|bookTicker"
    r"|depth(?P<levels>5|10|20)?(?:@(?:100|1000)ms)?"
    r"|kline_(?P<interval>" + "|".join(KLINE_INTERVALS_MS) + r"))$"
)
_CLOSE = object()


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


# ---------------------------------------------------------------------- renderers (Binance field names)


def execution_report(ev: OrderUpdate) -> dict[str, Any]:
    """An executionReport with every field Binance sends for a plain (non-list, non-STP) order."""
    o, t = ev.order, ev.trade
    canceled = ev.execution_type == "CANCELED"
    report: dict[str, Any] = {
        "e": "executionReport",
        "E": ev.time,
        "s": o.symbol,
        "c": (ev.client_order_id or o.client_order_id) if canceled else o.client_order_id,
        "S": o.side,
        "o": o.type,
        "f": o.time_in_force,
        "q": fmt(o.orig_qty),
        "p": fmt(o.price),
        "P": fmt(o.stop_price),
        "F": fmt(ZERO),
        "g": -1,
        "C": o.client_order_id if canceled else "",
        "x": ev.execution_type,
        "X": o.status,
        "r": "NONE",
        "i": o.order_id,
        "l": fmt(t.qty if t else ZERO),
        "z": fmt(o.executed_qty),
        "L": fmt(t.price if t else ZERO),
        "n": fmt(t.commission) if t else "0",
        "N": t.commission_asset if t else None,
        "T": t.time if t else ev.time,
        "t": t.trade_id if t else -1,
        "I": ev.time,
        "w": o.is_open and o.is_working and o.type not in MARKET_LIKE,
        "m": t.is_maker if t else False,
        "M": False,
        "O": o.time,
        "Z": fmt(o.cummulative_quote_qty),
        "Y": fmt(t.quote_qty if t else ZERO),
        "Q": fmt(o.orig_quote_order_qty),
        "V": "EXPIRE_MAKER",
    }
    if o.is_working and o.working_time >= 0:
        report["W"] = o.working_time
    return report


def account_position(ev: AccountPosition) -> dict[str, Any]:
    return {
        "e": "outboundAccountPosition",
        "E": ev.time,
        "u": ev.time,
        "B": [{"a": b.asset, "f": fmt(b.free), "l": fmt(b.locked)} for b in ev.balances],
    }


def balance_update(ev: BalanceDelta) -> dict[str, Any]:
    return {"e": "balanceUpdate", "E": ev.time, "a": ev.asset, "d": fmt(ev.delta), "T": ev.time}


def kline(state: ExchangeState, symbol: str, interval: str, start: int, *, closed: bool) -> dict[str, Any]:
    """The kline of the bucket that begins at `start`, as the REST klines endpoint computes it."""
    iv = KLINE_INTERVALS_MS[interval]
    tape = state.tape(symbol)
    before = [p for p in tape if p.time < start]
    points = [p for p in tape if start <= p.time < start + iv]
    prices = [p.price for p in points] or [before[-1].price if before else tape[0].price]
    fills = [p for p in points if p.trade_id is not None]
    taker_buy = [p for p in fills if not p.is_buyer_maker]
    return {
        "e": "kline",
        "E": state.now_ms(),
        "s": symbol,
        "k": {
            "t": start,
            "T": start + iv - 1,
            "s": symbol,
            "i": interval,
            "f": fills[0].trade_id if fills else -1,
            "L": fills[-1].trade_id if fills else -1,
            "o": fmt(prices[0]),
            "c": fmt(prices[-1]),
            "h": fmt(max(prices)),
            "l": fmt(min(prices)),
            "v": fmt(sum((p.qty for p in fills), ZERO)),
            "n": len(fills),
            "x": closed,
            "q": fmt(sum((p.qty * p.price for p in fills), ZERO)),
            "V": fmt(sum((p.qty for p in taker_buy), ZERO)),
            "Q": fmt(sum((p.qty * p.price for p in taker_buy), ZERO)),
            "B": "0",
        },
    }


def ticker(state: ExchangeState, symbol: str, *, mini: bool) -> dict[str, Any]:
    from tests.binance_double.server import ticker_24hr

    day = ticker_24hr(state, symbol)
    data: dict[str, Any] = {
        "e": "24hrMiniTicker" if mini else "24hrTicker",
        "E": state.now_ms(),
        "s": symbol,
        "c": day["lastPrice"],
        "o": day["openPrice"],
        "h": day["highPrice"],
        "l": day["lowPrice"],
        "v": day["volume"],
        "q": day["quoteVolume"],
    }
    if not mini:
        data.update(
            {
                "p": day["priceChange"],
                "P": day["priceChangePercent"],
                "w": day["weightedAvgPrice"],
                "x": day["prevClosePrice"],
                "Q": day["lastQty"],
                "b": day["bidPrice"],
                "B": day["bidQty"],
                "a": day["askPrice"],
                "A": day["askQty"],
                "O": day["openTime"],
                "C": day["closeTime"],
                "F": day["firstId"],
                "L": day["lastId"],
                "n": day["count"],
            }
        )
    return data


def _levels(levels: Any) -> list[list[str]]:
    return [[fmt(p), fmt(q)] for p, q in levels]


# ---------------------------------------------------------------------- signatures


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _int_value(params: dict[str, Any], name: str) -> int | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if isinstance(raw, bool):
        raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'.")
    try:
        return int(Decimal(str(raw)))
    except ArithmeticError:
        raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'.") from None


def authenticate(state: ExchangeState, params: dict[str, Any]) -> str:
    """Check a SIGNED WebSocket API request; return its account's API key or raise Binance's error."""
    api_key = params.get("apiKey")
    if not isinstance(api_key, str) or not api_key:
        raise mandatory("apiKey")
    timestamp = _int_value(params, "timestamp")
    if timestamp is None:
        raise mandatory("timestamp")
    signature = params.get("signature")
    if not isinstance(signature, str) or not signature:
        raise mandatory("signature")
    account = state.account(api_key)
    if account is None:
        raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
    try:
        recv_window = Decimal(str(params.get("recvWindow", 5000)))
    except ArithmeticError:
        raise BinanceError(-1100, "Illegal characters found in parameter 'recvWindow'.") from None
    if recv_window > MAX_RECV_WINDOW:
        raise BinanceError(-1131, "recvWindow must be less than 60000")
    payload = "&".join(f"{k}={_param_text(v)}" for k, v in sorted(params.items()) if k != "signature")
    expected = hmac.new(account.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature.lower()):
        raise BinanceError(-1022, "Signature for this request is not valid.")
    server_time = state.now_ms()
    if timestamp >= server_time + 1000:
        raise BinanceError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if server_time - timestamp > recv_window:
        raise BinanceError(-1021, "Timestamp for this request is outside of the recvWindow.")
    return api_key


# ---------------------------------------------------------------------- connections


class _Connection:
    """One client socket. Everything it sends goes through one queue, so an injected delay keeps the order."""

    kind = ""

    def __init__(self, hub: StreamHub, request: web.Request, ws: web.WebSocketResponse) -> None:
        self.hub = hub
        self.request = request
        self.ws = ws
        self._queue: asyncio.Queue[tuple[float, Any]] = asyncio.Queue()
        self._writer = asyncio.get_running_loop().create_task(self._write())

    def send(self, payload: Any) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.hub.state.ws_delay_ms() / 1000
        self._queue.put_nowait((due, _dumps(payload)))

    def close_after_pending(self) -> None:
        self._queue.put_nowait((0.0, _CLOSE))

    def abort(self) -> None:
        """Cut the TCP connection under the socket: the client sees a reset, no close frame."""
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def _write(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due, item = await self._queue.get()
            wait = due - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            if item is _CLOSE:
                with contextlib.suppress(Exception):
                    await self.ws.close(code=1001, message=b"server shutdown")
                return
            try:
                await self.ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return

    async def finish(self) -> None:
        self._writer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._writer

    def on_event(self, event: Event) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def handle(self, text: str) -> None:  # pragma: no cover - overridden
        raise NotImplementedError


class _MarketConnection(_Connection):
    kind = "market"

    def __init__(
        self, hub: StreamHub, request: web.Request, ws: web.WebSocketResponse, combined: bool
    ) -> None:
        super().__init__(hub, request, ws)
        self.combined = combined
        self.streams: list[str] = []
        self._book_tops: dict[str, tuple[Any, ...]] = {}
        self._kline_buckets: dict[str, int] = {}

    def add(self, names: list[str]) -> None:
        state = self.hub.state
        for name in names:
            if name in self.streams:
                continue
            self.streams.append(name)
            m = _STREAM_RE.match(name)
            assert m is not None
            symbol = m["symbol"].upper()
            if m["levels"] and self._known(symbol):
                self._push(name, self._partial(symbol, int(m["levels"])))
            if m["interval"] and self._known(symbol):
                iv = KLINE_INTERVALS_MS[m["interval"]]
                self._kline_buckets[name] = state.tape(symbol)[-1].time // iv * iv

    def _known(self, symbol: str) -> bool:
        return any(s.symbol == symbol for s in self.hub.state.symbols())

    def _push(self, name: str, data: Any) -> None:
        self.send({"stream": name, "data": data} if self.combined else data)

    def _partial(self, symbol: str, levels: int) -> dict[str, Any]:
        update_id, bids, asks = self.hub.state.depth_snapshot(symbol, levels)
        return {"lastUpdateId": update_id, "bids": _levels(bids), "asks": _levels(asks)}

    def handle(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError as exc:
            self.send({"error": {"code": 3, "msg": f"Invalid JSON: {exc}"}, "id": None})
            return
        if not isinstance(msg, dict):
            self.send({"error": {"code": 2, "msg": "Invalid request: expected a JSON object"}, "id": None})
            return
        req_id = msg.get("id")
        method = msg.get("method")
        params = msg.get("params", [])
        if method is None:
            self.send({"error": {"code": 2, "msg": "Invalid request: missing field `method`"}, "id": req_id})
            return
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(
                isinstance(p, str) and _STREAM_RE.match(p) for p in params
            ):
                self.send({"error": {"code": 2, "msg": "Invalid request: invalid stream"}, "id": req_id})
                return
            if method == "UNSUBSCRIBE":
                self.streams = [s for s in self.streams if s not in params]
                self.send({"result": None, "id": req_id})
            else:
                self.send({"result": None, "id": req_id})
                self.add(params)
        elif method == "LIST_SUBSCRIPTIONS":
            self.send({"result": list(self.streams), "id": req_id})
        elif method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not isinstance(params, list) or not params or params[0] != "combined":
                self.send({"error": {"code": 0, "msg": "Unknown property"}, "id": req_id})
            elif method == "GET_PROPERTY":
                self.send({"result": self.combined, "id": req_id})
            elif len(params) != 2 or not isinstance(params[1], bool):
                self.send({"error": {"code": 1, "msg": "Invalid value type: expected Boolean"}, "id": req_id})
            else:
                self.combined = params[1]
                self.send({"result": None, "id": req_id})
        else:
            self.send(
                {
                    "error": {
                        "code": 2,
                        "msg": f"Invalid request: unknown variant `{method}`, expected one of `SUBSCRIBE`, "
                        "`UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`",
                    },
                    "id": req_id,
                }
            )

    def on_event(self, event: Event) -> None:
        if isinstance(event, TapeUpdate):
            self._on_tape(event)
        elif isinstance(event, BookUpdate):
            self._on_book(event)

    def _mine(self, symbol: str) -> list[tuple[str, re.Match[str]]]:
        prefix = symbol.lower() + "@"
        out = []
        for name in self.streams:
            if name.startswith(prefix):
                m = _STREAM_RE.match(name)
                if m is not None:
                    out.append((name, m))
        return out

    def _on_tape(self, ev: TapeUpdate) -> None:
        state, p, symbol = self.hub.state, ev.point, ev.symbol
        for name, m in self._mine(symbol):
            channel = m["channel"]
            if channel == "trade" and p.trade_id is not None:
                self._push(
                    name,
                    {
                        "e": "trade",
                        "E": state.now_ms(),
                        "s": symbol,
                        "t": p.trade_id,
                        "p": fmt(p.price),
                        "q": fmt(p.qty),
                        "T": p.time,
                        "m": p.is_buyer_maker,
                        "M": True,
                    },
                )
            elif channel == "aggTrade" and p.trade_id is not None:
                self._push(
                    name,
                    {
                        "e": "aggTrade",
                        "E": state.now_ms(),
                        "s": symbol,
                        "a": p.trade_id,
                        "p": fmt(p.price),
                        "q": fmt(p.qty),
                        "f": p.trade_id,
                        "l": p.trade_id,
                        "T": p.time,
                        "m": p.is_buyer_maker,
                        "M": True,
                    },
                )
            elif m["interval"]:
                interval = m["interval"]
                iv = KLINE_INTERVALS_MS[interval]
                start = p.time // iv * iv
                previous = self._kline_buckets.get(name, start)
                if previous < start:  # the bucket before this point is now closed
                    self._push(name, kline(state, symbol, interval, previous, closed=True))
                self._kline_buckets[name] = max(previous, start)
                self._push(name, kline(state, symbol, interval, start, closed=False))
            elif channel in ("ticker", "miniTicker"):
                self._push(name, ticker(state, symbol, mini=channel == "miniTicker"))

    def _on_book(self, ev: BookUpdate) -> None:
        state, symbol = self.hub.state, ev.symbol
        for name, m in self._mine(symbol):
            channel = m["channel"]
            if channel == "bookTicker":
                update_id, bids, asks = state.depth_snapshot(symbol, 1)
                top = (bids[:1], asks[:1])
                if self._book_tops.get(name) == top:
                    continue
                self._book_tops[name] = top
                self._push(
                    name,
                    {
                        "u": update_id,
                        "s": symbol,
                        "b": fmt(bids[0][0]) if bids else fmt(ZERO),
                        "B": fmt(bids[0][1]) if bids else fmt(ZERO),
                        "a": fmt(asks[0][0]) if asks else fmt(ZERO),
                        "A": fmt(asks[0][1]) if asks else fmt(ZERO),
                    },
                )
            elif m["levels"]:
                self._push(name, self._partial(symbol, int(m["levels"])))
            elif channel.startswith("depth"):
                self._push(
                    name,
                    {
                        "e": "depthUpdate",
                        "E": ev.time,
                        "s": symbol,
                        "U": ev.first,
                        "u": ev.last,
                        "b": _levels(ev.bids),
                        "a": _levels(ev.asks),
                    },
                )


class _ApiConnection(_Connection):
    kind = "api"

    def __init__(self, hub: StreamHub, request: web.Request, ws: web.WebSocketResponse) -> None:
        super().__init__(hub, request, ws)
        self.subscriptions: dict[int, str] = {}
        self._next_subscription = 0
        self._weight = 0
        self._rate_limits = request.query.get("returnRateLimits", "true").lower() != "false"

    def _respond(
        self, req_id: Any, weight: int, result: Any = None, error: BinanceError | None = None
    ) -> None:
        self._weight += weight
        body: dict[str, Any] = {"id": req_id}
        if error is None:
            body.update({"status": 200, "result": result})
        else:
            body.update({"status": error.http_status, "error": {"code": error.code, "msg": error.msg}})
        if self._rate_limits:
            body["rateLimits"] = [
                {
                    "rateLimitType": "REQUEST_WEIGHT",
                    "interval": "MINUTE",
                    "intervalNum": 1,
                    "limit": 6000,
                    "count": self._weight,
                }
            ]
        self.send(body)

    def handle(self, text: str) -> None:
        try:
            msg = json.loads(text)
        except ValueError:
            self._respond(None, 1, error=BinanceError(-1135, "Invalid JSON Request"))
            return
        if not isinstance(msg, dict):
            self._respond(None, 1, error=BinanceError(-1135, "Invalid JSON Request"))
            return
        req_id = msg.get("id")
        method = msg.get("method")
        params = msg.get("params") or {}
        if not isinstance(method, str) or not method:
            self._respond(req_id, 1, error=mandatory("method"))
            return
        if not isinstance(params, dict):
            self._respond(
                req_id, 1, error=BinanceError(-1135, "JSON sent for parameter 'params' is not valid")
            )
            return
        method = method.removeprefix("v3/")
        try:
            if method == "ping":
                self._respond(req_id, 1, {})
            elif method == "time":
                self._respond(req_id, 1, {"serverTime": self.hub.state.now_ms()})
            elif method == "userDataStream.subscribe.signature":
                self._respond(
                    req_id, 2, {"subscriptionId": self._subscribe(authenticate(self.hub.state, params))}
                )
            elif method == "userDataStream.unsubscribe":
                self._unsubscribe(req_id, params)
            elif method == "session.subscriptions":
                self._respond(req_id, 2, [{"subscriptionId": sid} for sid in sorted(self.subscriptions)])
            else:
                raise BinanceError(-1020, "This operation is not supported.")
        except BinanceError as exc:
            self._respond(req_id, 2, error=exc)

    def _subscribe(self, api_key: str) -> int:
        if api_key in self.subscriptions.values():
            raise BinanceError(-2035, "User Data Stream subscription already active.")
        sid = self._next_subscription
        self._next_subscription += 1
        self.subscriptions[sid] = api_key
        return sid

    def _unsubscribe(self, req_id: Any, params: dict[str, Any]) -> None:
        wanted = _int_value(params, "subscriptionId")
        ended = [sid for sid in self.subscriptions if wanted is None or sid == wanted]
        self._respond(req_id, 2, {})
        for sid in ended:
            self.terminate(sid)

    def terminate(self, sid: int) -> None:
        """End one subscription the way Binance does: an eventStreamTerminated, then silence."""
        del self.subscriptions[sid]
        self.send(
            {"subscriptionId": sid, "event": {"e": "eventStreamTerminated", "E": self.hub.state.now_ms()}}
        )

    def on_event(self, event: Event) -> None:
        if isinstance(event, OrderUpdate):
            api_key, data = event.order.api_key, execution_report(event)
        elif isinstance(event, AccountPosition):
            api_key, data = event.api_key, account_position(event)
        elif isinstance(event, BalanceDelta):
            api_key, data = event.api_key, balance_update(event)
        else:
            return
        for sid, key in list(self.subscriptions.items()):
            if key == api_key:
                self.send({"subscriptionId": sid, "event": data})


# ---------------------------------------------------------------------- the hub


class StreamHub:
    """All live WebSocket connections of one double, fed by its state's events on the server's loop."""

    def __init__(self, state: ExchangeState) -> None:
        self.state = state
        self._connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def add_routes(self, app: web.Application) -> None:
        app.router.add_get("/ws-api/v3", self._api)
        app.router.add_get("/ws", self._market)
        app.router.add_get("/ws/{streams:.*}", self._market)
        app.router.add_get("/stream", self._market)
        app.on_startup.append(self._start)
        app.on_shutdown.append(self._stop)

    async def _start(self, app: web.Application) -> None:
        self._loop = asyncio.get_running_loop()
        self.state.add_listener(self._listener)

    async def _stop(self, app: web.Application) -> None:
        self.state.remove_listener(self._listener)
        for conn in list(self._connections):
            await conn.finish()
            await conn.ws.close(code=1001, message=b"server shutdown")

    def _listener(self, event: Event) -> None:
        # Called with the state's lock held, from any thread: hand over in order to the server's loop.
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._dispatch, event)

    def _dispatch(self, event: Event) -> None:
        if isinstance(event, StreamControl):
            self._control(event)
            return
        for conn in list(self._connections):
            conn.on_event(event)

    def _control(self, cmd: StreamControl) -> None:
        now = self.state.now_ms()
        for conn in list(self._connections):
            if cmd.command == "reset" and cmd.scope in ("all", conn.kind):
                conn.abort()
            elif cmd.command == "terminate" and isinstance(conn, _ApiConnection):
                for sid, key in list(conn.subscriptions.items()):
                    if cmd.api_key is None or key == cmd.api_key:
                        conn.terminate(sid)
            elif cmd.command == "shutdown":
                event = {"e": "serverShutdown", "E": now}
                if isinstance(conn, _ApiConnection):
                    conn.send({"event": event})
                elif isinstance(conn, _MarketConnection):
                    conn.send({"stream": "!serverShutdown", "data": event} if conn.combined else event)
                conn.close_after_pending()

    def snapshot(self) -> dict[str, Any]:
        """What is connected and subscribed (call on the server's loop)."""
        return {
            "market": [list(c.streams) for c in self._connections if isinstance(c, _MarketConnection)],
            "api": [
                sorted(c.subscriptions.values()) for c in self._connections if isinstance(c, _ApiConnection)
            ],
        }

    async def _serve(self, request: web.Request, conn_factory: Any) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn: _Connection = conn_factory(ws)
        self._connections.add(conn)
        try:
            async for msg in ws:
                if msg.type == WSMsgType.TEXT:
                    conn.handle(msg.data)
        finally:
            self._connections.discard(conn)
            await conn.finish()
        return ws

    async def _api(self, request: web.Request) -> web.WebSocketResponse:
        return await self._serve(request, lambda ws: _ApiConnection(self, request, ws))

    async def _market(self, request: web.Request) -> web.WebSocketResponse:
        combined = request.path == "/stream"
        raw = request.query.get("streams", "") if combined else request.match_info.get("streams", "")
        names = [n for n in raw.split("/") if _STREAM_RE.match(n)]

        def factory(ws: web.WebSocketResponse) -> _Connection:
            conn = _MarketConnection(self, request, ws, combined)
            conn.add(names)
            return conn

        return await self._serve(request, factory)
