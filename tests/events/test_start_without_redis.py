"""An events process started while Redis is down waits for it instead of exiting.

Chaos seed 16: `events-1`, restarted after its SIGKILL, exited by itself once. Its start (seconds to minutes on
a loaded machine) can overlap a Redis restart, and the hub's first read of the streams' positions was not
retried: the lifespan failed and uvicorn exited.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import uvicorn

from shared.bus import BusUnavailable
from tests.events.helpers import Served, client, events_settings, publish_private, serve
from tests.support.eventually import eventually
from tests.support.procs import RedisServer
from tests.support.tasks import ended
from tradebridge.app import create_events_app
from tradebridge.cli import WS_IMPLEMENTATION


async def test_the_hub_starts_once_redis_is_back_and_delivers(tmp_path: Path, redis_prefix: str) -> None:
    redis = RedisServer(tmp_path)  # not started: its port refuses connections
    app = create_events_app(events_settings(tmp_path, redis.url, redis_prefix))
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", ws=WS_IMPLEMENTATION
        )
    )
    task = asyncio.create_task(server.serve())
    try:
        await asyncio.sleep(1.5)  # the lifespan tries to read the streams' positions meanwhile
        assert not task.done(), "the server gave up starting while Redis was down"
        await asyncio.to_thread(redis.start)
        await eventually(lambda: server.started or task.done(), timeout=30, message="server start")
        assert not task.done()
        port = server.servers[0].sockets[0].getsockname()[1]
        served = Served(app, f"ws://127.0.0.1:{port}/ws", server)
        async with client(served.url, served.token("alice")) as c:
            await c.ping()
            event_id = await publish_private(served.bus, "alice", n=1)
            await eventually(lambda: [m["id"] for m in c.of_type("ORDER_UPDATE")] == [event_id])
    finally:
        server.should_exit = True
        await ended(task, 20)
        await asyncio.to_thread(redis.stop)


async def test_the_hub_reads_on_after_redis_restarts_under_it(tmp_path: Path, redis_prefix: str) -> None:
    """A read that fails (Redis gone while the hub blocks on it) goes over to the retrying reads, counted, and
    delivery goes on once Redis is back (reads run without the retrying machinery until one fails)."""
    from prometheus_client import REGISTRY

    def bus_errors() -> float:
        return REGISTRY.get_sample_value("tradebridge_ws_bus_errors_total") or 0.0

    redis = RedisServer(tmp_path)
    await asyncio.to_thread(redis.start)
    try:
        app = create_events_app(events_settings(tmp_path, redis.url, redis_prefix))
        async with serve(app) as served, client(served.url, served.token("alice")) as c:
            first = await publish_private(served.bus, "alice", n=1)
            await eventually(lambda: [m["id"] for m in c.of_type("ORDER_UPDATE")] == [first])
            errors = bus_errors()
            await asyncio.to_thread(redis.stop)
            await eventually(lambda: bus_errors() > errors, timeout=20, message="a failed read counted")
            await asyncio.to_thread(redis.start_on_same_port)

            async def publish_again() -> str | None:
                try:
                    return await publish_private(served.bus, "alice", n=2)
                except BusUnavailable:  # the bus's client reconnects on a later call
                    return None

            second = await eventually(publish_again, timeout=20, message="a publication once Redis is back")
            await eventually(
                lambda: [m["id"] for m in c.of_type("ORDER_UPDATE")] == [first, second], timeout=20
            )
    finally:
        await asyncio.to_thread(redis.stop)
