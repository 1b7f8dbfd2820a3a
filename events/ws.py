"""The `/ws` endpoint: authenticate the upgrade, then run one socket against the process's hub.

Per socket there are three tasks: this one (receives client ops), the sender (drains the bounded queue with
a timeout per send) and, while resuming, the replay. Whichever ends the connection (client gone, slow consumer,
token expiry, shutdown) sets `conn.closed`; this task then closes the socket with the recorded code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from events import protocol as p
from events.hub import Connection, EventsHub
from shared.errors import Unauthorized
from shared.security.tokens import AccessClaims, TokenService

log = structlog.get_logger(__name__)

HUB_KEY = "events_hub"
router = APIRouter()


def _token_of(ws: WebSocket) -> str | None:
    token = ws.query_params.get("token")
    if token:
        return token
    scheme, _, value = ws.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return None


def _parts(ws: WebSocket) -> tuple[EventsHub, TokenService]:
    rt: Any = ws.app.state.runtime
    return rt.extras[HUB_KEY], rt.tokens


@router.websocket("/ws")
async def events_socket(ws: WebSocket) -> None:
    hub, tokens = _parts(ws)
    # Accept first: a close before accept is an HTTP 403 on the upgrade, and clients could not see 4401.
    await ws.accept()
    try:
        claims = tokens.decode_access(_token_of(ws) or "")
    except Unauthorized:
        await _close(ws, p.CLOSE_UNAUTHORIZED, "unauthorized")
        return
    await serve_connection(ws, hub, claims)


def _text_sender(ws: WebSocket) -> Callable[[str], Awaitable[None]]:
    """Frames go straight to the ASGI send once the socket is accepted: Starlette's `send_text` re-checks its
    state machine on every call, which is a measurable share of a 1,000-client broadcast. The hub never sends
    after it asked to close, and the server raises if the peer is gone, which the hub treats as a close."""
    asgi_send = ws._send

    async def send(text: str) -> None:
        await asgi_send({"type": "websocket.send", "text": text})

    return send


async def serve_connection(ws: WebSocket, hub: EventsHub, claims: AccessClaims) -> None:
    conn = hub.connect(claims.sub, _text_sender(ws))
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
        await asyncio.wait_for(ws.close(code, reason), 2.0)
