"""The `/ws` endpoint: authenticate the socket, then run it against the process's hub.

The token comes from `?token=`, `Authorization: Bearer`, the subprotocols `["bearer", TOKEN]` or, failing
those, the first message `{"op": "auth", "token": ...}` within the auth deadline: the last two keep it out of
URLs, which proxies log (our own logs redact it: shared.logging).

Per socket there are three tasks: this one (receives client ops), the sender (drains the bounded queue with
a timeout per send) and, while resuming, the replay. Whichever ends the connection (client gone, slow consumer,
token expiry, oversized message, shutdown) sets `conn.closed`; this task then closes the socket with the
recorded code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from events import protocol as p
from events.hub import Connection, EventsHub, TooManyConnections
from shared.bus import Bus
from shared.clock import Clock
from shared.errors import Unauthorized
from shared.security.tokens import AccessClaims, TokenService

log = structlog.get_logger(__name__)

router = APIRouter()


def _token_of(ws: WebSocket) -> str | None:
    """The token the upgrade carried (query, header or subprotocol); None: expect an auth message."""
    token = ws.query_params.get("token")
    if token:
        return token
    scheme, _, value = ws.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return p.token_from_subprotocols(ws.scope.get("subprotocols") or ())


@dataclass(frozen=True, slots=True)
class EventsState:
    """What the route needs from its process, set on ``app.state.events`` by ``events.app.attach_hub``."""

    hub: EventsHub
    tokens: TokenService
    bus: Bus
    clock: Clock


def _parts(ws: WebSocket) -> tuple[EventsHub, TokenService]:
    state: EventsState = ws.app.state.events
    return state.hub, state.tokens


@router.websocket("/ws")
async def events_socket(ws: WebSocket) -> None:
    hub, tokens = _parts(ws)
    offered = ws.scope.get("subprotocols") or ()
    # Accept first: a close before accept is an HTTP 403 on the upgrade, and clients could not see 4401.
    # A client that offered "bearer" gets it back (never its token, which it offered as a subprotocol too).
    await ws.accept(subprotocol=p.BEARER_SUBPROTOCOL if p.BEARER_SUBPROTOCOL in offered else None)
    token = _token_of(ws)
    by_message = token is None
    if token is None:
        token = await _auth_message(ws, hub)
        if token is None:
            return
    try:
        claims = tokens.decode_access(token)
    except Unauthorized:
        await _close(ws, p.CLOSE_UNAUTHORIZED, "unauthorized")
        return
    await serve_connection(ws, hub, claims, acknowledge_auth=by_message)


async def _auth_message(ws: WebSocket, hub: EventsHub) -> str | None:
    """Wait for `{"op": "auth", "token": ...}` as the first message; on anything else (or nothing in time)
    close the socket and return None."""
    try:
        async with asyncio.timeout(hub.config.auth_timeout_s):  # not wait_for: it can lose a cancellation
            message = await ws.receive()
    except TimeoutError:
        await _close(ws, p.CLOSE_UNAUTHORIZED, "no auth message in time")
        return None
    except WebSocketDisconnect:
        return None
    if message["type"] == "websocket.disconnect":
        return None
    text = message.get("text")
    if text is None:
        text = message.get("bytes") or b""
    if p.too_big(text, hub.config.max_message_bytes):
        await _close(ws, p.CLOSE_MESSAGE_TOO_BIG, "message too big")
        return None
    token = p.parse_auth(text)
    if token is None:
        await _close(ws, p.CLOSE_UNAUTHORIZED, 'unauthorized: send {"op": "auth"} first')
    return token


def _text_sender(ws: WebSocket) -> Callable[[str], Awaitable[None]]:
    """Frames go straight to the ASGI send once the socket is accepted: Starlette's `send_text` re-checks its
    state machine on every call, which is a measurable share of a 1,000-client broadcast. The hub never sends
    after it asked to close, and the server raises if the peer is gone, which the hub treats as a close."""
    asgi_send = ws._send

    async def send(text: str) -> None:
        await asgi_send({"type": "websocket.send", "text": text})

    return send


async def serve_connection(
    ws: WebSocket, hub: EventsHub, claims: AccessClaims, *, acknowledge_auth: bool = False
) -> None:
    if hub.signed_out(claims.sub, claims.iat):
        await _close(ws, p.CLOSE_UNAUTHORIZED, "signed out")
        return
    try:
        conn = hub.connect(claims.sub, _text_sender(ws))
    except TooManyConnections:
        await _close(ws, p.CLOSE_TOO_MANY_CONNECTIONS, "too many connections")
        return
    if acknowledge_auth:  # the auth op gets its reply, so the client knows its token was taken
        conn.enqueue(p.control_message("AUTHENTICATED", hub.now(), {"expires_at": claims.exp.isoformat()}))
    # `?last_event_id=` resumes atomically with the connection: nothing is delivered live before the replay.
    last_event_id = ws.query_params.get("last_event_id")
    initial = hub.start_resume(conn, last_event_id) if last_event_id else None
    loop = asyncio.get_running_loop()
    expiry = loop.call_later(
        max(0.0, (claims.exp - hub.clock.now()).total_seconds()),
        conn.request_close,
        p.CLOSE_UNAUTHORIZED,
        "token expired",
    )
    sender = asyncio.create_task(conn.run_sender())
    receiver = asyncio.create_task(_receive_loop(ws, hub, conn, initial))
    closed = asyncio.create_task(conn.closed.wait())
    try:
        await asyncio.wait({sender, receiver, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        expiry.cancel()
        hub.disconnect(conn)  # stop routing to it before anything else
        for task in (sender, receiver, closed):
            task.cancel()
        await asyncio.gather(sender, receiver, closed, return_exceptions=True)
        if conn.close_code is not None:
            await _close(ws, conn.close_code, conn.close_reason)


async def _receive_loop(
    ws: WebSocket, hub: EventsHub, conn: Connection, initial: Awaitable[None] | None
) -> None:
    replay = asyncio.ensure_future(initial) if initial is not None else None
    try:
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text")
            if text is None:
                text = message.get("bytes") or b""
            if p.too_big(text, hub.config.max_message_bytes):
                conn.request_close(p.CLOSE_MESSAGE_TOO_BIG, "message too big")
                return
            work = hub.handle_text(conn, text)
            if work is not None:
                replay = asyncio.ensure_future(work)
    except WebSocketDisconnect:
        return
    finally:
        if replay is not None and not replay.done():
            replay.cancel()
            with contextlib.suppress(BaseException):
                await replay


async def _close(ws: WebSocket, code: int, reason: str) -> None:
    """Close without ever hanging on a peer that stopped reading (the server then drops the transport)."""
    if ws.application_state == WebSocketState.DISCONNECTED:
        return
    with contextlib.suppress(Exception):
        async with asyncio.timeout(2.0):
            await ws.close(code, reason)
