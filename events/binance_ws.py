"""Binance's WebSocket side over our events hub: the WebSocket API's user data subscription and the market streams,
under the Binance-compatible prefix (see docs/binance-api.md).

- ``/binance/ws-api/v3``: ``{"id", "method", "params"}`` requests answered ``{"id", "status", "result"|"error"}``;
  ``ping``, ``time``, ``userDataStream.subscribe.signature`` (signed with a TradeBridge API key: HMAC-SHA256 of
  the params but ``signature``, sorted by name, ``name=value`` joined by ``&``, values not percent-encoded, as
  Binance's WebSocket API documents), ``userDataStream.unsubscribe`` and ``session.subscriptions``. Each
  subscription pushes ``{"subscriptionId", "event"}``: ``executionReport`` (from ORDER_UPDATE and TRADE),
  ``outboundAccountPosition`` (from BALANCE_UPDATE) and ``eventStreamTerminated``.
- ``/binance/ws/<stream>[/<stream>...]`` (raw) and ``/binance/stream?streams=a/b`` (combined,
  ``{"stream", "data"}``): ``<symbol>@trade``, ``@bookTicker``, ``@depth5|10|20``, diff ``@depth``,
  ``@kline_<1m|5m|1h>``, ``@ticker``/``@miniTicker`` (last price only); SUBSCRIBE, UNSUBSCRIBE,
  LIST_SUBSCRIPTIONS, SET_PROPERTY/GET_PROPERTY ``combined``.

Why it is built on the hub: every socket and every user data subscription is a hub connection, so the bus is
read once per process whatever the number of sockets, and the hub's limits hold as for ``/ws``: the per-user
connection cap (a subscription counts against its user; every socket against its client address), slow
consumers closed with 4008, client messages over the size limit closed with 1009. Each hub connection's
sender translates our events into Binance's here, in the connection's order. Signatures are checked with the
key store in read-only sessions (``shared.apikeys``); an order's ``orderId`` is the REST side's
(``shared.binance_compat``).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
import structlog
from fastapi import APIRouter, FastAPI, WebSocket, WebSocketDisconnect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.websockets import WebSocketState

from events import protocol as p
from events.hub import Connection, EventsHub, TooManyConnections
from shared.apikeys import KeyRefused, ResolvedKey, check_timestamp, resolve_key, verify_signature
from shared.binance_compat import amount, binance_ids, binance_status, depth_update_id, fill_ids, millis
from shared.candles import CANDLE_INTERVAL_MS
from shared.clock import Clock
from shared.marketdata import MarketData
from shared.security.crypto import KeyRing

log = structlog.get_logger(__name__)

router = APIRouter()

PREFIX = "/binance"
MODE = "paper"  # TradeBridge's API keys trade the paper account
KEY_RECHECK_S = 5.0  # a revoked key's subscription ends within this long of its next event
MAX_STREAMS = 200  # per market socket (the hub's channel limit)
_CACHE = 100_000  # order id -> Binance orderId entries kept per process
_HELD_TRADES = 10_000  # fills held per subscription until their order's update arrives
KLINE_MS = CANDLE_INTERVAL_MS  # every interval the price feed stores and publishes
_STREAM_RE = re.compile(
    r"^(?P<symbol>[A-Za-z0-9]{2,20})@(?P<kind>trade|bookTicker|ticker|miniTicker"
    r"|depth(?P<levels>5|10|20)?(?:@(?:100|1000)ms)?|kline_(?P<interval>" + "|".join(KLINE_MS) + "))$"
)
_TRADE_REPORT = frozenset({"PARTIALLY_FILLED", "FILLED"})
_EXECUTION = {"NEW": "NEW", "CANCELED": "CANCELED", "REJECTED": "REJECTED", "EXPIRED": "EXPIRED"}
ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class BinanceWsParts:
    """What the Binance-compatible WebSocket side needs besides the hub: the key store (read-only sessions and
    the key ring; the engine connects only when a subscription is checked) and the market data store a depth
    stream starts from."""

    clock: Clock
    read_sessions: async_sessionmaker[AsyncSession]
    keyring: KeyRing
    market_data: MarketData


@dataclass(slots=True)
class BinanceWsState:
    hub: EventsHub
    parts: BinanceWsParts
    order_ids: OrderedDict[str, int] = field(default_factory=OrderedDict)

    async def order_id(self, order_id: str) -> int | None:
        """The Binance ``orderId`` of our order (cached: it never changes)."""
        found = self.order_ids.get(order_id)
        if found is None:
            async with self.parts.read_sessions() as reader:
                found = (await binance_ids(reader, [order_id])).get(order_id)
            if found is None:
                return None
            self.order_ids[order_id] = found
            if len(self.order_ids) > _CACHE:
                self.order_ids.popitem(last=False)
        return found

    def now_ms(self) -> int:
        return millis(self.parts.clock.now())


def attach_binance_ws(app: FastAPI, parts: BinanceWsParts, hub: EventsHub) -> None:
    """What the Binance routes read on each connection (set next to ``events.app.attach_hub``)."""
    app.state.binance_ws = BinanceWsState(hub=hub, parts=parts)


def install_binance_ws(app: FastAPI) -> None:
    """Mount the Binance-compatible WebSocket paths on an app whose lifespan calls ``attach_binance_ws``."""
    app.include_router(router)


# ---------------------------------------------------------------------------------------------- helpers


def _dec(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value is not None else ZERO
    except InvalidOperation:
        return ZERO


def _ms(iso: Any) -> int:
    if not isinstance(iso, str):
        return 0
    try:
        return millis(datetime.fromisoformat(iso))
    except ValueError:
        return 0


def _int_id(raw: Any) -> int:
    """A venue trade id ("BTCUSDT-17") as Binance's integer (17), as REST ``trades`` shows it."""
    digits = "".join(c for c in str(raw).rsplit("-", 1)[-1] if c.isdigit())
    return int(digits) if digits else -1


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else _param_text(value)


class _Socket:
    """One accepted WebSocket: frames from the hub's senders and from request handling go through one lock, so
    they never interleave; the first close requested wins."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self._lock = asyncio.Lock()
        self._asgi_send = ws._send
        self.close_code: int | None = None
        self.close_reason = ""
        self.closing = asyncio.Event()
        self.tasks: set[asyncio.Task[Any]] = set()

    async def send(self, payload: Any) -> None:
        text = orjson.dumps(payload).decode()
        async with self._lock:
            await self._asgi_send({"type": "websocket.send", "text": text})

    def request_close(self, code: int, reason: str) -> None:
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
        self.closing.set()

    def _spawn(self, coro: Awaitable[None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def pump(
        self, handler: Callable[[str], Awaitable[None]], limit: int, timeout_s: float
    ) -> tuple[Callable[[str], Awaitable[None]], asyncio.Task[None]]:
        """A hub sender for ``handler``, and the task that runs it. The hub drives a sender on its own turn and
        it must never suspend there, so the sender only queues; the task translates (which may read the
        database) and sends, in order. A full queue or a send slower than the hub's send timeout closes the
        socket with 4008, as the hub does on ``/ws``."""
        queue: asyncio.Queue[str] = asyncio.Queue(limit)

        async def send(text: str) -> None:
            try:
                queue.put_nowait(text)
            except asyncio.QueueFull:
                self.request_close(p.CLOSE_SLOW_CONSUMER, "slow consumer")

        async def run() -> None:
            while True:
                text = await queue.get()
                try:
                    # asyncio.timeout, not wait_for: on Python 3.11 wait_for returns normally when the task is
                    # cancelled in the turn the handler ends, and this loop then waited on its queue for ever,
                    # holding the socket's finish() and so the server's shutdown (seen in CI: 30 s teardown).
                    async with asyncio.timeout(timeout_s):
                        await handler(text)
                except TimeoutError:
                    self.request_close(p.CLOSE_SLOW_CONSUMER, "slow consumer")
                    return
                except Exception as exc:  # one event we cannot translate must not end the stream
                    log.warning("binance ws: event not sent", error=str(exc))

        return send, self._spawn(run())

    def watch(self, conn: Connection) -> asyncio.Task[None]:
        """Close the socket with the hub's code when the hub closes ``conn`` (shutdown, slow consumer)."""

        async def run() -> None:
            await conn.closed.wait()
            if conn.close_code is not None:
                self.request_close(conn.close_code, conn.close_reason)

        return self._spawn(run())

    async def finish(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.close_code is not None and self.ws.application_state != WebSocketState.DISCONNECTED:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):
                    await self.ws.close(self.close_code, self.close_reason)


def _address(ws: WebSocket) -> str:
    return ws.client.host if ws.client is not None else ""


def _anchor(hub: EventsHub, ws: WebSocket, send: Callable[[str], Awaitable[None]]) -> Connection:
    """The socket's own hub connection, counted against its client address (raises TooManyConnections)."""
    return hub.connect(f"binance-address:{_address(ws)}", send)


async def _serve(
    ws: WebSocket, sock: _Socket, hub: EventsHub, handle: Callable[[str], Awaitable[None]]
) -> None:
    """Read client messages until the peer leaves or the socket is asked to close."""

    async def receive() -> None:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                text = (message.get("bytes") or b"").decode("utf-8", "replace")
            if p.too_big(text, hub.config.max_message_bytes):
                sock.request_close(p.CLOSE_MESSAGE_TOO_BIG, "message too big")
                return
            await handle(text)

    receiver = asyncio.ensure_future(receive())
    closing = asyncio.ensure_future(sock.closing.wait())
    try:
        await asyncio.wait({receiver, closing}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (receiver, closing):
            task.cancel()
        results = await asyncio.gather(receiver, closing, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, WebSocketDisconnect):
                log.warning("binance ws: connection failed", error=str(result))


# ------------------------------------------------------------------------------------ user data stream


def execution_report(
    order: Mapping[str, Any],
    order_id: int,
    *,
    event_ms: int,
    execution: str,
    status: str,
    executed: Decimal,
    quote: Decimal,
    trade: Mapping[str, Any] | None = None,
    trade_id: int = -1,
) -> dict[str, Any]:
    """An executionReport of one of our orders (ORDER_UPDATE data), with Binance's field letters."""
    client_id = order.get("client_order_id") or order.get("order_id")
    price, qty = (_dec(trade.get("price")), _dec(trade.get("quantity"))) if trade else (ZERO, ZERO)
    # a stop order works once its trigger fired (triggered_at); until then it waits off the book
    stop = order.get("stop_price")
    waiting = stop is not None and not order.get("triggered_at")
    working = status in ("NEW", "PARTIALLY_FILLED") and order.get("type") != "MARKET" and not waiting
    created = _ms(order.get("created_at"))
    report: dict[str, Any] = {
        "e": "executionReport",
        "E": event_ms,
        "s": order.get("symbol"),
        "c": client_id,
        "S": order.get("side"),
        "o": order.get("type"),
        "f": order.get("time_in_force") or "GTC",
        "q": amount(_dec(order.get("quantity"))),
        "p": amount(_dec(order.get("price"))),
        "P": amount(_dec(stop)) if stop is not None else amount(ZERO),
        "F": amount(ZERO),
        "g": -1,
        "C": client_id if execution == "CANCELED" else "",
        "x": execution,
        "X": status,
        "r": "NONE",
        "i": order_id,
        "l": amount(qty),
        "z": amount(executed),
        "L": amount(price),
        "n": amount(_dec(trade.get("fee"))) if trade else "0",
        "N": trade.get("fee_asset") if trade else None,
        "T": _ms(trade.get("ts")) if trade else _ms(order.get("updated_at")) or event_ms,
        "t": trade_id,
        "I": event_ms,
        "w": working,
        "m": bool(trade and trade.get("liquidity") == "MAKER"),
        "M": trade is not None,
        "O": created,
        "Z": amount(quote),
        "Y": amount(price * qty),
        "Q": amount(ZERO),
        "V": "NONE",
    }
    if working:
        report["W"] = _ms(order.get("triggered_at")) if stop is not None else created
    return report


def account_position(data: Mapping[str, Any], event_ms: int) -> dict[str, Any]:
    """An outboundAccountPosition from a BALANCE_UPDATE: the balances that changed."""
    return {
        "e": "outboundAccountPosition",
        "E": event_ms,
        "u": event_ms,
        "B": [
            {"a": b.get("asset"), "f": amount(_dec(b.get("free"))), "l": amount(_dec(b.get("locked")))}
            for b in data.get("balances") or ()
        ],
    }


class UserStream:
    """One user data subscription: turns the user's private events into Binance's, in order.

    A fill's TRADE arrives before the ORDER_UPDATE that carries the order's new totals (the engine publishes
    them so): fills are held until that update, then each becomes an executionReport ``x=TRADE`` with the
    running ``z``/``Z``; a cancel or expiry after fills follows as its own report. PENDING and NEW are both
    Binance's NEW, reported once; PENDING_CANCEL is not a Binance state and is not reported."""

    def __init__(
        self, state: BinanceWsState, sock: _Socket, sid: int, key: ResolvedKey, api_key: str, address: str
    ) -> None:
        self.state = state
        self.sock = sock
        self.sid = sid
        self.key = key
        self._api_key = api_key
        self._address = address
        self._checked = asyncio.get_running_loop().time()
        self.conn: Connection | None = None
        self.tasks: tuple[asyncio.Task[None], ...] = ()
        self._held: dict[str, list[Mapping[str, Any]]] = {}
        self._held_count = 0
        self._reported: OrderedDict[str, str] = OrderedDict()

    async def send(self, text: str) -> None:
        """The hub connection's sender: one of our envelopes in, Binance events out."""
        msg = orjson.loads(text)
        kind, data = msg.get("type"), msg.get("data")
        if not isinstance(data, dict) or data.get("mode", MODE) != MODE:
            return
        if kind not in ("ORDER_UPDATE", "TRADE", "BALANCE_UPDATE"):
            return  # POSITION_UPDATE and the hub's own control messages have no Binance counterpart
        if not await self._key_alive():
            return
        event_ms = _ms(msg.get("ts")) or self.state.now_ms()
        if kind == "TRADE":
            self._hold(data)
            return
        events = (
            [account_position(data, event_ms)]
            if kind == "BALANCE_UPDATE"
            else await self._reports(data, event_ms)
        )
        for event in events:
            await self.sock.send({"subscriptionId": self.sid, "event": event})

    async def _key_alive(self) -> bool:
        """Re-read the key now and then: a revoked key's subscription ends (eventStreamTerminated)."""
        loop = asyncio.get_running_loop()
        if loop.time() - self._checked < KEY_RECHECK_S:
            return True
        self._checked = loop.time()
        try:
            async with self.state.parts.read_sessions() as reader:
                key = await resolve_key(reader, self.state.parts.keyring, self._api_key)
            key.allows("read", self._address)
        except KeyRefused:
            await self.terminate()
            return False
        return True

    async def terminate(self) -> None:
        """End the subscription as Binance does: eventStreamTerminated, then silence."""
        if self.conn is not None:
            self.state.hub.disconnect(self.conn)
            self.conn = None
            event = {"e": "eventStreamTerminated", "E": self.state.now_ms()}
            await self.sock.send({"subscriptionId": self.sid, "event": event})
            for task in self.tasks:  # its sender stops; the socket stays open
                if task is not asyncio.current_task():
                    task.cancel()

    def _hold(self, trade: Mapping[str, Any]) -> None:
        order_id = trade.get("order_id")
        if not isinstance(order_id, str):
            return
        if self._held_count >= _HELD_TRADES:  # updates never came for these: forget the oldest order's
            oldest = next(iter(self._held))
            self._held_count -= len(self._held.pop(oldest))
        self._held.setdefault(order_id, []).append(trade)
        self._held_count += 1

    async def _reports(self, order: Mapping[str, Any], event_ms: int) -> list[dict[str, Any]]:
        our_id = order.get("order_id")
        if not isinstance(our_id, str):
            return []
        trades = self._held.pop(our_id, [])
        self._held_count -= len(trades)
        ours = str(order.get("status"))
        if ours == "PENDING_CANCEL" and not trades:
            return []
        order_id = await self.state.order_id(our_id)
        if order_id is None:
            log.warning("binance ws: order without a status row", order_id=our_id)
            return []
        status = binance_status(ours)
        executed, quote = _dec(order.get("filled_quantity")), _dec(order.get("cumulative_quote"))
        reports: list[dict[str, Any]] = []
        if trades:
            async with self.state.parts.read_sessions() as reader:
                rows = await fill_ids(reader, our_id)
            executed -= sum((_dec(t.get("quantity")) for t in trades), ZERO)
            quote -= sum((_dec(t.get("price")) * _dec(t.get("quantity")) for t in trades), ZERO)
            for i, trade in enumerate(trades):
                executed += _dec(trade.get("quantity"))
                quote += _dec(trade.get("price")) * _dec(trade.get("quantity"))
                last = i == len(trades) - 1
                reports.append(
                    execution_report(
                        order,
                        order_id,
                        event_ms=event_ms,
                        execution="TRADE",
                        status=status if last and status in _TRADE_REPORT else "PARTIALLY_FILLED",
                        executed=executed,
                        quote=quote,
                        trade=trade,
                        trade_id=rows.get(str(trade.get("trade_id")), _int_id(trade.get("trade_id"))),
                    )
                )
            if status in _EXECUTION and status != "NEW":
                reports.append(
                    execution_report(
                        order,
                        order_id,
                        event_ms=event_ms,
                        execution=status,
                        status=status,
                        executed=executed,
                        quote=quote,
                    )
                )
        elif self._reported.get(our_id) != status:
            reports.append(
                execution_report(
                    order,
                    order_id,
                    event_ms=event_ms,
                    execution=_EXECUTION.get(status, "TRADE"),
                    status=status,
                    executed=executed,
                    quote=quote,
                )
            )
        if reports:
            self._reported[our_id] = reports[-1]["X"]
            self._reported.move_to_end(our_id)
            if len(self._reported) > _HELD_TRADES:
                self._reported.popitem(last=False)
        return reports


class _Refused(Exception):
    def __init__(self, code: int, msg: str, status: int = 400) -> None:
        super().__init__(msg)
        self.code, self.msg, self.status = code, msg, status


def _mandatory(name: str) -> _Refused:
    return _Refused(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


async def _authenticate(state: BinanceWsState, params: Mapping[str, Any], address: str) -> ResolvedKey:
    """A SIGNED WebSocket API request's key: live, signature and timing right, ``read`` scope, address allowed."""
    api_key = params.get("apiKey")
    if not isinstance(api_key, str) or not api_key:
        raise _mandatory("apiKey")
    signature = params.get("signature")
    if not isinstance(signature, str) or not signature:
        raise _mandatory("signature")
    async with state.parts.read_sessions() as reader:
        key = await resolve_key(reader, state.parts.keyring, api_key)
    check_timestamp(_text(params.get("timestamp")), _text(params.get("recvWindow")), state.now_ms())
    payload = "&".join(f"{k}={_param_text(v)}" for k, v in sorted(params.items()) if k != "signature")
    verify_signature(key.secret, payload, signature)
    key.allows("read", address)
    return key


@router.websocket(PREFIX + "/ws-api/v3")
async def ws_api(ws: WebSocket) -> None:
    state: BinanceWsState = ws.app.state.binance_ws
    hub = state.hub
    await ws.accept()
    sock = _Socket(ws)
    try:
        anchor = _anchor(hub, ws, _discard)
    except TooManyConnections:
        sock.request_close(p.CLOSE_TOO_MANY_CONNECTIONS, "too many connections")
        await sock.finish()
        return
    subscriptions: dict[int, UserStream] = {}
    next_id = 0
    address = _address(ws)

    async def respond(req_id: Any, result: Any = None, error: _Refused | None = None) -> None:
        body: dict[str, Any] = {"id": req_id}
        if error is None:
            body.update(status=200, result=result)
        else:
            body.update(status=error.status, error={"code": error.code, "msg": error.msg})
        await sock.send(body)

    async def subscribe(params: Mapping[str, Any]) -> int:
        nonlocal next_id
        try:
            key = await _authenticate(state, params, address)
        except KeyRefused as exc:
            raise _Refused(exc.code, exc.msg, exc.status) from None
        if any(s.key.key_id == key.key_id and s.conn is not None for s in subscriptions.values()):
            raise _Refused(-2035, "User Data Stream subscription already active.")
        sid, next_id = next_id, next_id + 1
        stream = UserStream(state, sock, sid, key, str(params["apiKey"]), address)
        send, pumping = sock.pump(stream.send, hub.config.queue_size, hub.config.send_timeout_s)
        try:
            stream.conn = hub.connect(key.user_id, send)
        except TooManyConnections:
            pumping.cancel()
            raise _Refused(-1003, "Too many connections for this user.", 429) from None
        subscriptions[sid] = stream
        stream.tasks = (pumping, sock.watch(stream.conn))
        return sid

    async def handle(text: str) -> None:
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError:
            msg = None
        if not isinstance(msg, dict):
            await respond(None, error=_Refused(-1135, "Invalid JSON Request"))
            return
        req_id, method, params = msg.get("id"), msg.get("method"), msg.get("params") or {}
        try:
            if not isinstance(method, str) or not method:
                raise _mandatory("method")
            if not isinstance(params, dict):
                raise _Refused(-1135, "JSON sent for parameter 'params' is not valid")
            method = method.removeprefix("v3/")
            if method == "ping":
                result: Any = {}
            elif method == "time":
                result = {"serverTime": state.now_ms()}
            elif method == "userDataStream.subscribe.signature":
                sid = await subscribe(params)
                await respond(req_id, {"subscriptionId": sid})
                return
            elif method == "userDataStream.unsubscribe":
                wanted = params.get("subscriptionId")
                await respond(req_id, {})
                for sid, stream in list(subscriptions.items()):
                    if wanted is None or str(wanted) == str(sid):
                        await stream.terminate()
                        del subscriptions[sid]
                return
            elif method == "session.subscriptions":
                live = sorted(sid for sid, s in subscriptions.items() if s.conn is not None)
                result = [{"subscriptionId": sid} for sid in live]
            else:
                raise _Refused(-1020, "This operation is not supported.")
        except _Refused as exc:
            await respond(req_id, error=exc)
            return
        await respond(req_id, result)

    try:
        await _serve(ws, sock, hub, handle)
    finally:
        for stream in subscriptions.values():
            if stream.conn is not None:
                hub.disconnect(stream.conn)
        hub.disconnect(anchor)
        await sock.finish()


async def _discard(text: str) -> None:
    return None


# ---------------------------------------------------------------------------------------- market streams


@dataclass(slots=True)
class _Stream:
    """One subscribed Binance stream and what its next frame is computed from."""

    name: str
    symbol: str
    kind: str  # trade | bookTicker | ticker | miniTicker | depth | partial | kline
    channel: str  # the hub channel it reads
    levels: int = 0
    interval: str = ""
    book: tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]] | None = None
    last_id: int = 0
    top: tuple[Any, ...] | None = None


def parse_stream(name: Any) -> _Stream | None:
    if not isinstance(name, str):
        return None
    m = _STREAM_RE.match(name)
    if m is None:
        return None
    symbol, kind = m["symbol"].upper(), m["kind"]
    if kind == "trade":
        return _Stream(name, symbol, "trade", f"trades:{symbol}")
    if kind in ("ticker", "miniTicker"):
        return _Stream(name, symbol, kind, f"ticker:{symbol}")
    if m["interval"]:
        return _Stream(name, symbol, "kline", f"candles:{symbol}:{m['interval']}", interval=m["interval"])
    if kind == "bookTicker":
        return _Stream(name, symbol, "bookTicker", f"depth:{symbol}")
    if m["levels"]:
        return _Stream(name, symbol, "partial", f"depth:{symbol}", levels=int(m["levels"]))
    return _Stream(name, symbol, "depth", f"depth:{symbol}")


def _book(snapshot: Mapping[str, Any]) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
    def side(levels: Any) -> dict[Decimal, Decimal]:
        return {_dec(level[0]): _dec(level[1]) for level in levels or () if len(level) >= 2}

    return side(snapshot.get("bids")), side(snapshot.get("asks"))


def _levels(
    levels: dict[Decimal, Decimal], best_first_desc: bool, limit: int | None = None
) -> list[list[str]]:
    prices = sorted(levels, reverse=best_first_desc)[:limit]
    return [[amount(px), amount(levels[px])] for px in prices]


def _changes(before: dict[Decimal, Decimal], after: dict[Decimal, Decimal], desc: bool) -> list[list[str]]:
    changed = {px: qty for px, qty in after.items() if before.get(px) != qty}
    changed.update({px: ZERO for px in before if px not in after})
    return _levels(changed, desc)


class MarketSocket:
    """The streams of one market socket, fed by its hub connection's sender."""

    def __init__(self, state: BinanceWsState, sock: _Socket, combined: bool) -> None:
        self.state = state
        self.sock = sock
        self.combined = combined
        self.streams: dict[str, _Stream] = {}
        self.conn: Connection | None = None

    async def push(self, stream: _Stream, data: Any) -> None:
        await self.sock.send({"stream": stream.name, "data": data} if self.combined else data)

    async def add(self, names: list[str]) -> None:
        """Start streams: a depth stream starts from the book REST ``depth`` answers now (a partial book is
        sent at once, as Binance does); then its hub channel is joined, with no await in between."""
        for name in names:
            if name in self.streams or self.conn is None:
                continue
            stream = parse_stream(name)
            if stream is None:
                continue
            if stream.kind in ("depth", "partial", "bookTicker"):
                snapshot = await self.state.parts.market_data.get("depth", stream.symbol)
                if snapshot:
                    stream.book, stream.last_id = _book(snapshot), depth_update_id(snapshot)
                    if stream.kind == "partial":
                        await self.push(stream, self._partial(stream, stream.book, stream.last_id))
            self.streams[name] = stream
            self.state.hub.handle_text(
                self.conn, orjson.dumps({"op": "subscribe", "channels": [stream.channel]})
            )

    def remove(self, names: list[str]) -> None:
        for name in names:
            stream = self.streams.pop(name, None)
            if stream is None or self.conn is None:
                continue
            if not any(s.channel == stream.channel for s in self.streams.values()):
                op = {"op": "unsubscribe", "channels": [stream.channel]}
                self.state.hub.handle_text(self.conn, orjson.dumps(op))

    @staticmethod
    def _partial(
        stream: _Stream, book: tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]], update_id: int
    ) -> Any:
        bids, asks = book
        return {
            "lastUpdateId": update_id,
            "bids": _levels(bids, True, stream.levels),
            "asks": _levels(asks, False, stream.levels),
        }

    async def send(self, text: str) -> None:
        """The hub connection's sender: one public event in, the frames of every stream it feeds out."""
        msg = orjson.loads(text)
        kind, data = msg.get("type"), msg.get("data")
        if not isinstance(data, dict) or not isinstance(data.get("symbol"), str):
            return  # the hub's control messages (SUBSCRIBED, ...) have no Binance counterpart
        symbol = data["symbol"]
        event_ms = _ms(msg.get("ts")) or self.state.now_ms()
        for stream in list(self.streams.values()):
            if stream.symbol != symbol:
                continue
            frame = self._frame(stream, kind, data, event_ms)
            if frame is not None:
                await self.push(stream, frame)

    def _frame(self, stream: _Stream, kind: Any, data: Mapping[str, Any], event_ms: int) -> Any:
        if kind == "DEPTH" and stream.channel.startswith("depth:"):
            return self._depth_frame(stream, data, event_ms)
        if kind == "MARKET_TRADE" and stream.kind == "trade":
            return {
                "e": "trade",
                "E": event_ms,
                "s": stream.symbol,
                "t": _int_id(data.get("trade_id")),
                "p": amount(_dec(data.get("price"))),
                "q": amount(_dec(data.get("quantity"))),
                "T": _ms(data.get("ts")) or event_ms,
                "m": data.get("side") == "SELL",  # the taker sold: the buyer was the maker
                "M": True,
            }
        if kind == "CANDLE" and stream.kind == "kline" and data.get("interval") == stream.interval:
            start = _ms(data.get("start"))
            close = _dec(data.get("close"))
            return {
                "e": "kline",
                "E": event_ms,
                "s": stream.symbol,
                "k": {
                    "t": start,
                    "T": start + KLINE_MS[stream.interval] - 1,
                    "s": stream.symbol,
                    "i": stream.interval,
                    "f": -1,
                    "L": -1,
                    "o": amount(_dec(data.get("open"))),
                    "c": amount(close),
                    "h": amount(_dec(data.get("high"))),
                    "l": amount(_dec(data.get("low"))),
                    "v": amount(_dec(data.get("volume"))),
                    "n": int(data.get("trade_count") or 0),
                    "x": bool(data.get("closed")),
                    "q": amount(_dec(data.get("volume")) * close),  # as REST klines
                    "V": "0",
                    "Q": "0",
                    "B": "0",
                },
            }
        if kind == "TICKER" and stream.kind in ("ticker", "miniTicker"):
            price = amount(_dec(data.get("price")))
            return {
                "e": "24hrTicker" if stream.kind == "ticker" else "24hrMiniTicker",
                "E": event_ms,
                "s": stream.symbol,
                "c": price,
            }
        return None

    def _depth_frame(self, stream: _Stream, snapshot: Mapping[str, Any], event_ms: int) -> Any:
        update_id = depth_update_id(snapshot)
        if update_id and update_id < stream.last_id:
            return None  # older than the book this stream already stands on
        book = _book(snapshot)
        before, stream.book = stream.book, book
        if stream.kind == "partial":
            stream.last_id = max(update_id, stream.last_id)
            return self._partial(stream, book, stream.last_id)
        if stream.kind == "bookTicker":
            bids, asks = book
            bid = max(bids) if bids else ZERO
            ask = min(asks) if asks else ZERO
            top = (bid, bids.get(bid, ZERO), ask, asks.get(ask, ZERO))
            stream.last_id = max(update_id, stream.last_id)
            if top == stream.top:
                return None
            stream.top = top
            return {
                "u": stream.last_id,
                "s": stream.symbol,
                "b": amount(top[0]),
                "B": amount(top[1]),
                "a": amount(top[2]),
                "A": amount(top[3]),
            }
        old_bids, old_asks = before if before is not None else ({}, {})
        first = stream.last_id + 1
        stream.last_id = update_id if update_id > stream.last_id else stream.last_id + 1
        return {
            "e": "depthUpdate",
            "E": event_ms,
            "s": stream.symbol,
            "U": first,
            "u": stream.last_id,
            "b": _changes(old_bids, book[0], True),
            "a": _changes(old_asks, book[1], False),
        }

    async def handle(self, text: str) -> None:
        """SUBSCRIBE, UNSUBSCRIBE, LIST_SUBSCRIPTIONS, SET_PROPERTY/GET_PROPERTY ``combined``, as Binance."""
        try:
            msg = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            await self.sock.send({"error": {"code": 3, "msg": f"Invalid JSON: {exc}"}, "id": None})
            return
        if not isinstance(msg, dict):
            await self.sock.send(
                {"error": {"code": 2, "msg": "Invalid request: expected a JSON object"}, "id": None}
            )
            return
        req_id, method, params = msg.get("id"), msg.get("method"), msg.get("params", [])
        if method in ("SUBSCRIBE", "UNSUBSCRIBE"):
            if not isinstance(params, list) or not all(parse_stream(s) for s in params):
                await self._error(req_id, 2, "Invalid request: invalid stream")
            elif method == "UNSUBSCRIBE":
                self.remove(params)
                await self.sock.send({"result": None, "id": req_id})
            elif len(set(self.streams) | set(params)) > MAX_STREAMS:
                await self._error(req_id, 2, f"Invalid request: at most {MAX_STREAMS} streams per connection")
            else:
                await self.sock.send({"result": None, "id": req_id})
                await self.add(params)
        elif method == "LIST_SUBSCRIPTIONS":
            await self.sock.send({"result": list(self.streams), "id": req_id})
        elif method in ("SET_PROPERTY", "GET_PROPERTY"):
            if not isinstance(params, list) or not params or params[0] != "combined":
                await self._error(req_id, 0, "Unknown property")
            elif method == "GET_PROPERTY":
                await self.sock.send({"result": self.combined, "id": req_id})
            elif len(params) != 2 or not isinstance(params[1], bool):
                await self._error(req_id, 1, "Invalid value type: expected Boolean")
            else:
                self.combined = params[1]
                await self.sock.send({"result": None, "id": req_id})
        else:
            await self._error(req_id, 2, f"Invalid request: unknown method {str(method)[:32]!r}")

    async def _error(self, req_id: Any, code: int, msg: str) -> None:
        await self.sock.send({"error": {"code": code, "msg": msg}, "id": req_id})


async def _market(ws: WebSocket, names: list[str], combined: bool) -> None:
    state: BinanceWsState = ws.app.state.binance_ws
    await ws.accept()
    sock = _Socket(ws)
    market = MarketSocket(state, sock, combined)
    try:
        send, _ = sock.pump(market.send, state.hub.config.queue_size, state.hub.config.send_timeout_s)
        market.conn = _anchor(state.hub, ws, send)
    except TooManyConnections:
        sock.request_close(p.CLOSE_TOO_MANY_CONNECTIONS, "too many connections")
        await sock.finish()
        return
    sock.watch(market.conn)
    try:
        await market.add([n for n in names if parse_stream(n)][:MAX_STREAMS])
        await _serve(ws, sock, state.hub, market.handle)
    finally:
        state.hub.disconnect(market.conn)
        await sock.finish()


@router.websocket(PREFIX + "/ws")
async def raw_streams(ws: WebSocket) -> None:
    await _market(ws, [], combined=False)


@router.websocket(PREFIX + "/ws/{streams:path}")
async def raw_streams_named(ws: WebSocket, streams: str) -> None:
    await _market(ws, [s for s in streams.split("/") if s], combined=False)


@router.websocket(PREFIX + "/stream")
async def combined_streams(ws: WebSocket) -> None:
    names = ws.query_params.get("streams", "")
    await _market(ws, [s for s in names.split("/") if s], combined=True)
