"""WebSocket fan-out benchmark: N clients on `ticker:BTCUSDT` at 10 updates/s, plus private order events.

Prints delivery latency (publication on the bus -> receipt by the client) p50/p99/max, messages received,
clients dropped, and server memory per connection (RSS delta / connections).

The server (uvicorn + the events app on real Redis) runs in its own process; clients run in
`--client-procs` other processes, so nothing shares the server's event loop. Needs Redis at REDIS_URL
(default redis://127.0.0.1:6379/0); keys live under a unique prefix that is deleted afterwards.

    .venv/bin/python benchmarks/ws_fanout.py --clients 1000 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import multiprocessing as mp
import os
import socket
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

JWT_SECRET = "bench-jwt-secret-" + "z" * 32
SYMBOL = "BTCUSDT"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settings(redis_url: str, prefix: str) -> Any:
    from shared.security.crypto import generate_key
    from shared.settings import Settings

    return Settings(
        _env_file=None,
        database_url=f"sqlite+aiosqlite:///{tempfile.gettempdir()}/ws-bench-unused.db",
        redis_url=redis_url,
        redis_prefix=prefix,
        jwt_secret=JWT_SECRET,
        key_encryption_keys=generate_key(),
        secrets_file="/nonexistent/never-written.json",
    )


def run_server(redis_url: str, prefix: str, port: int, deflate: bool, ws: str) -> None:
    import uvicorn

    from tradebridge.app import create_events_app

    app = create_events_app(_settings(redis_url, prefix))  # as `tradebridge events` builds it
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        log_level="warning",
        ws_ping_interval=20,
        ws_ping_timeout=20,
        ws_per_message_deflate=deflate,
        ws=ws,
        backlog=4096,
    )


def run_clients(port: int, users: list[str], tokens: list[str], seconds: float, out: Any, ready: Any) -> None:
    asyncio.run(_clients(port, users, tokens, seconds, out, ready))


class _LightClient(asyncio.Protocol):
    """A minimal WebSocket client (handshake, unmasked server frames, masked client frames, no extensions).

    Python `websockets` clients cost more CPU per message than the server does, so 1,000 of them on a 2-core
    machine would measure the load generator, not the server; this one parses frames straight from
    `data_received` without a future per message.
    """

    def __init__(self, path: str, port: int, sink: dict[str, Any]) -> None:
        self.path, self.port, self.sink = path, port, sink
        self.buf = bytearray()
        self.open = False
        self.subscribed = asyncio.get_running_loop().create_future()
        self.closed_by_server = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        import base64

        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        transport.write(  # type: ignore[attr-defined]
            (
                f"GET {self.path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )

    def send_frame(self, opcode: int, payload: bytes) -> None:
        import struct

        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode]) + (
            bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack("!H", n)
        )
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        assert self.transport is not None
        self.transport.write(head + mask + masked)

    def data_received(self, data: bytes) -> None:
        import orjson

        now = time.time()
        self.buf += data
        if not self.open:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in bytes(self.buf[:end]):
                self.subscribed.set_exception(ConnectionError(bytes(self.buf[:end]).decode()))
                return
            del self.buf[: end + 4]
            self.open = True
            self.send_frame(1, orjson.dumps({"op": "subscribe", "channels": [f"ticker:{SYMBOL}"]}))
        buf = self.buf
        while len(buf) >= 2:
            opcode, n, i = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    return
                n, i = int.from_bytes(buf[2:4], "big"), 4
            elif n == 127:
                if len(buf) < 10:
                    return
                n, i = int.from_bytes(buf[2:10], "big"), 10
            if len(buf) < i + n:
                return
            payload = bytes(buf[i : i + n])
            del buf[: i + n]
            if opcode == 1:
                msg = orjson.loads(payload)
                body = msg.get("data") or {}
                if "pub" in body:
                    key = "lat" if msg["type"] == "TICKER" else "plat"
                    self.sink[key].append(now - body["pub"])
                elif msg["type"] == "SUBSCRIBED" and not self.subscribed.done():
                    self.subscribed.set_result(None)
            elif opcode == 9:
                self.send_frame(10, payload)
            elif opcode == 8:
                self.closed_by_server = True

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.subscribed.done():
            self.subscribed.set_exception(ConnectionError("lost"))


async def _clients(
    port: int, users: list[str], tokens: list[str], seconds: float, out: Any, ready: Any
) -> None:
    loop = asyncio.get_running_loop()
    sink: dict[str, Any] = {"lat": [], "plat": []}
    clients: list[_LightClient] = []
    dropped = 0
    for i, token in enumerate(tokens):
        try:
            _, proto = await loop.create_connection(
                functools.partial(_LightClient, f"/ws?token={token}", port, sink), "127.0.0.1", port
            )
            clients.append(proto)
        except OSError:
            dropped += 1
        if i % 50 == 49:
            await asyncio.sleep(0.01)
    for c in clients:
        try:
            await asyncio.wait_for(c.subscribed, 30)
        except Exception:
            dropped += 1
    ready.put(len(tokens) - dropped)
    await asyncio.sleep(seconds + 2)
    dropped += sum(c.closed_by_server for c in clients)
    for c in clients:
        if c.transport is not None:
            c.transport.close()
    out.put(
        {
            "cpu": time.process_time(),
            "lat": sink["lat"],
            "plat": sink["plat"],
            "received": len(sink["lat"]) + len(sink["plat"]),
            "dropped": dropped,
        }
    )


async def _publish(
    redis_url: str, prefix: str, seconds: float, private_users: list[str], rate_hz: float
) -> int:
    from shared.bus import create_bus
    from shared.clock import SystemClock
    from shared.streams import (
        MARKET_TICKER,
        PRIVATE_EVENTS,
        RETENTION,
        private_event,
        public_event,
        user_stream,
    )

    bus = create_bus(redis_url, prefix=prefix, maxlen=100_000, clock=SystemClock(), retention=RETENTION)
    n = 0
    try:
        t0 = time.monotonic()
        k = 0
        while time.monotonic() - t0 < seconds:
            now = datetime.now(UTC)
            await bus.publish(
                MARKET_TICKER,
                public_event("TICKER", SYMBOL, now, {"last": "65000.10", "pub": time.time(), "n": n}),
            )
            # Private order events: a few users per tick, so 1 in 10 clients gets its own updates too.
            for _ in range(max(1, len(private_users) // 10)):
                uid = private_users[k % len(private_users)]
                k += 1
                await bus.publish(
                    PRIVATE_EVENTS,
                    private_event("ORDER_UPDATE", uid, now, {"status": "NEW", "pub": time.time()}),
                    mirror_to=user_stream(uid),
                )
            n += 1
            await asyncio.sleep(max(0.0, t0 + n / rate_hz - time.monotonic()))
    finally:
        await bus.close()
    return n


async def _cleanup(redis_url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    r = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in r.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await r.delete(*keys)
    finally:
        await r.aclose()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    from tradebridge.cli import WS_IMPLEMENTATION

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument(
        "--client-procs",
        type=int,
        default=4,
        help="client processes (fewer make the clients part of the latency)",
    )
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--rate", type=float, default=10.0, help="ticker updates per second")
    ap.add_argument(
        "--private-users", type=int, default=100, help="clients that also get private order events"
    )
    ap.add_argument("--deflate", action="store_true", help="enable permessage-deflate on the server")
    ap.add_argument(
        "--ws",
        default=WS_IMPLEMENTATION,
        help="uvicorn WebSocket implementation (websockets-sansio, as the services serve; websockets; wsproto)",
    )
    args = ap.parse_args()

    import psutil

    from shared.clock import SystemClock
    from shared.security.tokens import TokenService

    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    prefix = f"wsbench-{uuid.uuid4().hex[:8]}:"
    port = _free_port()
    ctx = mp.get_context("spawn")
    server = ctx.Process(
        target=run_server, args=(redis_url, prefix, port, args.deflate, args.ws), daemon=True
    )
    server.start()
    try:
        for _ in range(200):
            if not server.is_alive():
                raise SystemExit(f"the events server exited ({server.exitcode}) before it listened")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit(f"the events server did not listen on port {port} within 20 s")
        proc = psutil.Process(server.pid)
        rss_before = proc.memory_info().rss

        tokens_svc = TokenService(JWT_SECRET, access_ttl_s=3600, clock=SystemClock())
        users = [f"user-{i}" for i in range(args.clients)]
        tokens = [tokens_svc.issue_access(u, "user").token for u in users]
        out, ready = ctx.Queue(), ctx.Queue()
        per = -(-args.clients // args.client_procs)
        procs = []
        for i in range(args.client_procs):
            chunk = slice(i * per, (i + 1) * per)
            p = ctx.Process(
                target=run_clients, args=(port, users[chunk], tokens[chunk], args.seconds, out, ready)
            )
            p.start()
            procs.append(p)
        t_conn = time.monotonic()
        connected = sum(ready.get(timeout=180) for _ in procs)
        t_conn = time.monotonic() - t_conn
        rss_after = proc.memory_info().rss
        cpu0 = proc.cpu_times()

        published = asyncio.run(
            _publish(redis_url, prefix, args.seconds, users[: args.private_users], args.rate)
        )
        cpu1 = proc.cpu_times()
        results = [out.get(timeout=120) for _ in procs]
        for p in procs:
            p.join(30)
    finally:
        server.terminate()
        server.join(10)
        asyncio.run(_cleanup(redis_url, prefix))

    lat = [x for r in results for x in r["lat"]]
    plat = [x for r in results for x in r["plat"]]
    received = sum(r["received"] for r in results)
    dropped = sum(r["dropped"] for r in results)
    expected_ticker = published * connected
    cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    print(f"clients: {connected} connected of {args.clients} in {t_conn:.1f}s, {dropped} dropped")
    print(
        f"ticker updates published: {published} at {args.rate}/s over {args.seconds}s; "
        f"ticker messages received {len(lat)} of {expected_ticker} expected"
    )
    print(f"private order events received: {len(plat)}")
    print(
        f"TICKER latency  p50 {_pct(lat, 0.5) * 1000:.1f} ms  p99 {_pct(lat, 0.99) * 1000:.1f} ms  "
        f"max {max(lat, default=float('nan')) * 1000:.1f} ms  mean {statistics.fmean(lat) * 1000 if lat else float('nan'):.1f} ms"
    )
    print(f"PRIVATE latency p50 {_pct(plat, 0.5) * 1000:.1f} ms  p99 {_pct(plat, 0.99) * 1000:.1f} ms")
    print(
        f"server RSS {rss_before / 2**20:.1f} MiB -> {rss_after / 2**20:.1f} MiB: "
        f"{(rss_after - rss_before) / max(1, connected) / 1024:.1f} KiB per connection"
    )
    print(
        f"server CPU while publishing: {cpu:.1f} s over {args.seconds:.0f} s ({100 * cpu / args.seconds:.0f}% of one core)"
    )
    print(f"client processes CPU: {[round(r['cpu'], 1) for r in results]} s")
    print(f"permessage-deflate: {'on' if args.deflate else 'off'}; total messages {received}")


if __name__ == "__main__":
    main()
