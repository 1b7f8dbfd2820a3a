"""Slow and dead clients are dropped without slowing the others; the embedded flavour on the in-memory bus."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlparse

from websockets.asyncio.client import connect

from events.hub import HubConfig
from shared.streams import MARKET_TICKER
from tests.events.helpers import client, events_settings, publish_private, publish_public, serve
from tests.support.eventually import eventually
from tradebridge.app import create_app, create_events_app


async def test_slow_client_is_dropped_while_fast_client_keeps_receiving(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    settings = events_settings(tmp_path, redis_url, redis_prefix)
    config = HubConfig(queue_size=8, send_timeout_s=0.5, symbols=frozenset(settings.symbols))
    async with serve(create_events_app(settings, hub_config=config)) as events:
        # The slow client: a tiny receive buffer, no compression, and it never reads, so the server's sends stall.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        port = urlparse(events.url).port
        sock.connect(("127.0.0.1", port))
        sock.setblocking(False)
        async with connect(
            f"{events.url}?token={events.token('slow')}", sock=sock, max_queue=1, compression=None
        ) as slow:
            await slow.send('{"op": "subscribe", "channels": ["ticker:BTCUSDT"]}')
            await slow.recv()  # SUBSCRIBED; from here on it reads nothing
            async with client(events.url, events.token("fast")) as fast:
                await fast.send(op="subscribe", channels=["ticker:BTCUSDT"])
                await fast.wait_for("SUBSCRIBED")
                blob = os.urandom(20_000).hex()  # incompressible: permessage-deflate must not hide the volume
                ids: list[str] = []
                started = time.monotonic()
                for i in range(300):
                    ids.append(
                        await publish_public(
                            events.bus, MARKET_TICKER, "TICKER", "BTCUSDT", data={"i": i, "pad": blob}
                        )
                    )
                got = await fast.wait_for("TICKER", 300, timeout=15)
                elapsed = time.monotonic() - started
                assert [m["id"] for m in got] == ids
                await eventually(lambda: events.hub.slow_consumer_drops == 1, timeout=10)
                assert events.hub.connection_count == 1  # the fast one
                # The fast client never waited for the slow one (whose send timeout alone is 0.5 s per stall).
                assert elapsed < 10, elapsed
                await fast.ping()
                # Private events keep flowing to the fast client after the drop.
                pid = await publish_private(events.bus, "fast", n=1)
                assert (await fast.wait_for("ORDER_UPDATE"))[0]["id"] == pid
            # Once the slow client finally reads, its socket ends (4008 if the close frame got through).
            code = None
            try:
                while True:
                    await asyncio.wait_for(slow.recv(), 10)
            except Exception:
                code = slow.close_code
            assert code in (4008, 1006), code


async def test_dead_peer_is_dropped_by_server_pings(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    """A peer that completes the upgrade then never answers pings is disconnected and forgotten."""
    settings = events_settings(tmp_path, redis_url, redis_prefix)
    async with serve(create_events_app(settings), ws_ping_interval=0.2, ws_ping_timeout=0.2) as events:
        port = urlparse(events.url).port
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            (
                f"GET /ws?token={events.token('ghost')} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        assert b"101" in await reader.readline()
        await eventually(lambda: events.hub.connection_count == 1)
        await eventually(lambda: events.hub.connection_count == 0, timeout=10)  # never answered a ping
        writer.close()


async def test_embedded_in_gateway_on_the_memory_bus(tmp_path: Path) -> None:
    settings = events_settings(tmp_path, None, "emb:")
    app = create_app(settings, services=("events",))
    async with serve(app) as gw:
        assert type(gw.bus).__name__ == "MemoryBus"
        token = gw.token("alice")
        async with client(gw.url, token) as c:
            await c.ping()
            first = await publish_private(gw.bus, "alice", n=0)
            await c.wait_for("ORDER_UPDATE")
        missed = [await publish_private(gw.bus, "alice", n=i) for i in range(1, 4)]
        async with client(f"{gw.url}?last_event_id={first}", token) as c:
            await c.wait_for("ORDER_UPDATE", 3)
            await c.send(op="subscribe", channels=["ticker:BTCUSDT"])
            await c.wait_for("SUBSCRIBED")
            tid = await publish_public(gw.bus, MARKET_TICKER, "TICKER", "BTCUSDT")
            assert (await c.wait_for("TICKER"))[0]["id"] == tid
            assert [m["id"] for m in c.of_type("ORDER_UPDATE")] == missed
