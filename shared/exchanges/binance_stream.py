"""Binance's user data stream through python-binance: a signed `userDataStream.subscribe.signature` on the
WebSocket API (`<ws_url>/ws-api/v3`), parsed into the adapter's immutable events.

Why python-binance and not ccxt's `watch_orders`: its `user_socket()` hands over Binance's raw events, in order,
on one queue (executionReport, outboundAccountPosition, balanceUpdate and eventStreamTerminated alike), so
amounts stay exact strings and every report keeps its trade id; a dropped connection arrives on that queue as
an `{"e": "error"}` message. ccxt's watchers return float-valued unified orders, split orders, trades and
balances over three calls, and a pending watcher is not woken by eventStreamTerminated. What python-binance
does not do is subscribe again after a drop (its socket reconnects, the subscription is gone): that is
this module's loop, with backoff, reporting every gap (StreamDown ... StreamUp) so the consumer re-reads over
REST whatever the gap may have hidden.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import structlog
from binance import AsyncClient, BinanceSocketManager
from binance.exceptions import BinanceAPIException
from binance.ws.constants import WSListenerState
from binance.ws.websocket_api import WebsocketAPI

from shared.exchanges.base import (
    BalanceDeltaEvent,
    BalancesEvent,
    ExchangeBalance,
    ExchangeOrder,
    ExchangeTrade,
    OrderEvent,
    StreamDown,
    StreamOptions,
    StreamUp,
    UserStreamEvent,
    VenueError,
)
from shared.exchanges.binance import _dec, _ms, _opt_dec, map_status, stop_triggered

log = structlog.get_logger(__name__)

WS_API_PATH = "/ws-api/v3"
# Binance error codes on subscribing that retrying cannot cure (bad key, signature, permissions).
_KEY_ERRORS = frozenset({-1022, -2014, -2015, -1002})


def ws_api_url(ws_url: str) -> str:
    """The WebSocket API endpoint under a WebSocket base (`ws(s)://host[:port]`, with or without the path)."""
    parts = urlsplit(ws_url)
    if parts.scheme not in ("ws", "wss") or not parts.netloc:
        raise ValueError(f"a WebSocket base is like ws://host:port or wss://host, got {ws_url!r}")
    base = ws_url.rstrip("/")
    for suffix in (WS_API_PATH, "/ws-api", "/ws"):
        base = base.removesuffix(suffix)
    return base + WS_API_PATH


# ---------------------------------------------------------------------------------------------- parsing


def parse_execution_report(e: Mapping[str, Any]) -> OrderEvent:
    """An executionReport as the order it reports (and its trade, if it is one)."""
    filled = _dec(e.get("z"))
    venue_order_id = str(e["i"])
    symbol, side = str(e.get("s", "")), str(e.get("S", ""))
    transact_ms = _ms(e.get("T"))
    trade: ExchangeTrade | None = None
    trade_id = e.get("t", -1)
    if e.get("x") == "TRADE" and trade_id not in (None, -1, "-1"):
        price, qty = _dec(e.get("L")), _dec(e.get("l"))
        trade = ExchangeTrade(
            trade_id=str(trade_id),
            venue_order_id=venue_order_id,
            symbol=symbol,
            side=side,
            price=price,
            quantity=qty,
            quote_quantity=_dec(e["Y"]) if e.get("Y") not in (None, "") else price * qty,
            fee=_dec(e.get("n")),
            fee_asset=str(e.get("N") or ""),
            is_maker=bool(e.get("m")),
            time_ms=transact_ms,
        )
    # A cancel's report carries the cancel request's id in `c` and the order's own in `C`.
    cid = e.get("C") or e.get("c")
    exchange_status = str(e.get("X", ""))
    order = ExchangeOrder(
        venue_order_id=venue_order_id,
        client_order_id=str(cid) if cid else None,
        symbol=symbol,
        side=side,
        type=str(e.get("o", "")),
        time_in_force=str(e.get("f") or "GTC"),
        status=map_status(exchange_status, filled),
        exchange_status=exchange_status,
        quantity=_dec(e.get("q")),
        price=_opt_dec(e.get("p")),
        filled=filled,
        cum_quote=_dec(e.get("Z")),
        time_ms=_ms(e.get("O")) or transact_ms,
        transact_ms=transact_ms,
        fills=(trade,) if trade is not None else (),
        stop_price=_opt_dec(e.get("P")),
        triggered=stop_triggered(str(e.get("o", "")), e.get("W"), e.get("w")),
    )
    return OrderEvent(order=order, execution_type=str(e.get("x", "")), event_ms=_ms(e.get("E")))


def parse_user_event(e: Mapping[str, Any]) -> UserStreamEvent | None:
    """One user data stream event; None for kinds we don't follow (e.g. listStatus)."""
    kind = e.get("e")
    if kind == "executionReport":
        return parse_execution_report(e)
    if kind == "outboundAccountPosition":
        rows = tuple(
            sorted(
                (ExchangeBalance(str(b["a"]), _dec(b.get("f")), _dec(b.get("l"))) for b in e.get("B") or ()),
                key=lambda b: b.asset,
            )
        )
        return BalancesEvent(balances=rows, event_ms=_ms(e.get("E")))
    if kind == "balanceUpdate":
        return BalanceDeltaEvent(asset=str(e.get("a", "")), delta=_dec(e.get("d")), event_ms=_ms(e.get("E")))
    return None


# ---------------------------------------------------------------------------------------------- the stream


class _Lost(Exception):
    """The subscription ended (connection dropped, terminated, server shutdown)."""


class BinanceUserStream:
    """One account's user data stream, kept subscribed until `close()`."""

    def __init__(
        self, api_key: str, api_secret: str, *, ws_url: str, label: str, options: StreamOptions
    ) -> None:
        self._key = api_key
        self._secret = api_secret
        self._url = ws_api_url(ws_url)
        self._label = label
        self._options = options
        self._closed = False
        self._wake = asyncio.Event()
        self._disposing: set[asyncio.Task[None]] = set()
        self._queue: asyncio.Queue[Any] | None = None  # the live socket's queue, to wake its reader on close

    def _backoff(self, attempt: int) -> float:
        o = self._options
        return min(o.max_backoff_s, o.backoff_s * 2.0 ** min(attempt, 16)) * random.uniform(0.8, 1.0)

    def _client(self) -> AsyncClient:
        client = AsyncClient(self._key, self._secret)
        client.ws_api = WebsocketAPI(url=self._url)
        client.ws_api.TIMEOUT = self._options.request_timeout_s
        return client

    def _record(self, error: VenueError | None) -> None:
        if self._options.reachability is not None:
            self._options.reachability.record(error)

    async def events(self) -> AsyncIterator[UserStreamEvent]:
        attempt = 0
        subscribed_before = False
        while not self._closed:
            client = self._client()
            final = False
            try:
                sockets = BinanceSocketManager(client)
                sock = sockets.user_socket()
                await sock.__aenter__()  # userDataStream.subscribe.signature
                self._queue = sock._queue
                self._record(None)
                attempt = 0
                yield StreamUp(reconnected=subscribed_before)
                subscribed_before = True
                while True:
                    msg = await sock.recv()
                    kind = msg.get("e") if isinstance(msg, dict) else None
                    if kind == "error":
                        raise _Lost(f"connection lost ({msg.get('type') or msg.get('m')})")
                    if kind == "eventStreamTerminated":
                        raise _Lost("subscription terminated by the exchange")
                    event = parse_user_event(msg) if isinstance(msg, dict) else None
                    if event is not None:
                        yield event
            except BinanceAPIException as exc:
                final = exc.code in _KEY_ERRORS
                reason = f"{self._label} refused the subscription ({exc.code})"
                self._record(None)  # it answered
            except _Lost as exc:
                reason = str(exc)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # could not connect, request timed out, ...
                # Not recorded as unreachable: REST may still work (the REST calls say whether it does).
                reason = f"{self._label} could not be reached ({type(exc).__name__})"
            finally:
                self._queue = None
                self._dispose(client)
            if self._closed:
                return
            delay = self._backoff(attempt)
            attempt += 1
            log.warning("user data stream down", reason=reason, retry_in_s=round(delay, 3), final=final)
            yield StreamDown(reason=reason, retry_in_s=delay, final=final)
            if final:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=delay)

    def _dispose(self, client: AsyncClient) -> None:
        """Close a used client in the background. python-binance's own close waits for its read loop, which after
        a drop sleeps in its reconnect schedule (seconds) and would then reconnect a socket nobody reads: so
        the loop is told to exit and its task cancelled; the subscription is gone with the connection."""

        async def close() -> None:
            api = client.ws_api
            with contextlib.suppress(Exception):
                await client.session.close()
            if api is None:
                return
            api.ws_state = WSListenerState.EXITING
            for task in asyncio.all_tasks():
                frame = getattr(task.get_coro(), "cr_frame", None)
                if (
                    frame is not None
                    and frame.f_code.co_name == "_read_loop"
                    and frame.f_locals.get("self") is api
                ):
                    task.cancel()
            ws = api.ws
            if ws is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), timeout=1.0)

        task = asyncio.ensure_future(close())
        self._disposing.add(task)
        task.add_done_callback(self._disposing.discard)

    async def close(self) -> None:
        """Stop: the reader is woken through its socket's queue (cancelling python-binance's recv() can be
        swallowed by its own timeout loop), then the client is closed."""
        self._closed = True
        self._wake.set()
        if self._queue is not None:
            self._queue.put_nowait({"e": "error", "type": "closed", "m": "stream closed"})
        if self._disposing:
            await asyncio.wait(list(self._disposing), timeout=2.0)


__all__ = ["WS_API_PATH", "BinanceUserStream", "parse_execution_report", "parse_user_event", "ws_api_url"]
