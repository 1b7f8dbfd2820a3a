"""Run the real events app under uvicorn on a free port and talk to it with the `websockets` client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import ClientConnection, connect

from shared.bus import Bus
from shared.security.tokens import TokenService
from shared.settings import Settings
from shared.streams import PRIVATE_EVENTS, private_event, public_event, user_stream
from tests.support.api import make_settings
from tests.support.eventually import eventually
from tests.support.tasks import ended
from tradebridge.cli import WS_IMPLEMENTATION

JWT_SECRET = "test-jwt-secret-" + "x" * 32


def events_settings(tmp_path: Path, redis_url: str | None, redis_prefix: str, **overrides: Any) -> Settings:
    return make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}",
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        jwt_secret=JWT_SECRET,
        **overrides,
    )


@dataclass
class Served:
    app: FastAPI
    url: str  # ws://127.0.0.1:PORT/ws
    server: uvicorn.Server

    @property
    def runtime(self) -> Any:
        """What `/ws` runs against in this app (`events.ws.EventsState`: hub, tokens, bus, clock)."""
        return self.app.state.events

    @property
    def bus(self) -> Bus:
        return self.runtime.bus

    @property
    def hub(self) -> Any:
        return self.runtime.hub

    def token(self, user_id: str, ttl_s: int | None = None) -> str:
        if ttl_s is None:
            return self.runtime.tokens.issue_access(user_id, "user").token
        return (
            TokenService(JWT_SECRET, access_ttl_s=ttl_s, clock=self.runtime.clock)
            .issue_access(user_id, "user")
            .token
        )


@asynccontextmanager
async def serve(app: FastAPI, **config: Any) -> AsyncIterator[Served]:
    config.setdefault("ws", WS_IMPLEMENTATION)  # the protocol `tradebridge events` serves with
    cfg = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", **config)
    server = uvicorn.Server(cfg)
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or task.done(), timeout=20, message="server start")
        if task.done():
            task.result()
        port = server.servers[0].sockets[0].getsockname()[1]
        yield Served(app, f"ws://127.0.0.1:{port}/ws", server)
    finally:
        server.should_exit = True
        await ended(task, 20)


class Client:
    """A test client: collects messages in the background so tests can wait for them."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self._task = asyncio.create_task(self._pump())

    async def _pump(self) -> None:
        try:
            async for raw in self.ws:
                self.messages.append(json.loads(raw))
        except Exception:
            pass

    def of_type(self, *types: str) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["type"] in types]

    async def send(self, **op: Any) -> None:
        await self.ws.send(json.dumps(op))

    async def wait_for(self, msg_type: str, n: int = 1, timeout: float = 10.0) -> list[dict[str, Any]]:
        def enough() -> list[dict[str, Any]]:
            found = self.of_type(msg_type)
            return found if len(found) >= n else []

        return await eventually(
            enough, timeout=timeout, message=f"{n} x {msg_type}; got {self.messages[-5:]}"
        )

    async def ping(self) -> None:
        """A PONG proves the server registered this socket (and handled everything sent before)."""
        before = len(self.of_type("PONG"))
        await self.send(op="ping")
        await self.wait_for("PONG", before + 1)

    async def closed_code(self, timeout: float = 10.0) -> int | None:
        await asyncio.wait_for(self._task, timeout)
        return self.ws.close_code

    async def close(self) -> None:
        await self.ws.close()
        await asyncio.wait_for(self._task, 10)


@asynccontextmanager
async def client(url: str, token: str | None = None, **kw: Any) -> AsyncIterator[Client]:
    target = f"{url}{'&' if '?' in url else '?'}token={token}" if token else url
    async with connect(target, open_timeout=10, **kw) as ws:
        c = Client(ws)
        try:
            yield c
        finally:
            c._task.cancel()


async def publish_private(bus: Bus, user_id: str, event_type: str = "ORDER_UPDATE", **data: Any) -> str:
    payload = private_event(event_type, user_id, datetime.now(UTC), data)
    return await bus.publish(PRIVATE_EVENTS, payload, mirror_to=user_stream(user_id))


async def publish_public(bus: Bus, stream: str, event_type: str, symbol: str, **extra: Any) -> str:
    data = extra.pop("data", {"price": "100.5"})
    return await bus.publish(stream, public_event(event_type, symbol, datetime.now(UTC), data, **extra))
