"""The Binance WebSocket API's per-subscription sender ends when cancelled, whatever it was doing."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import cast

from starlette.websockets import WebSocket

from events.binance_ws import _Socket
from tests.support.eventually import eventually


async def test_a_pump_cancelled_as_its_handler_ends_stops() -> None:
    """A socket's finish() cancels its pumps and waits for them: a pump cancelled in the turn its handler
    finished must still end (Python 3.11's `wait_for` returned normally then; the pump went back to its queue
    for good, finish() never returned and the server's shutdown waited on the socket: 30 s in CI)."""
    sock = _Socket(cast(WebSocket, SimpleNamespace(_send=None)))
    started, release = asyncio.Event(), asyncio.Event()

    async def handler(text: str) -> None:
        started.set()
        await release.wait()

    send, task = sock.pump(handler, 10, 5.0)
    try:
        await send("an event")
        await eventually(started.is_set, message="the pump never ran its handler")
        release.set()
        task.cancel()
        done, _ = await asyncio.wait([task], timeout=5)
        assert task in done and task.cancelled(), "the pump swallowed its cancellation"
    finally:
        task.cancel()
