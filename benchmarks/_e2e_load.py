"""The open-loop load generator of `pipeline_e2e.py`, one OS process each (multiprocessing, spawn).

Open loop: order i of a stage is due at t0 + i/rate whatever happened to earlier orders, and every latency is
measured from that due time, so a stalled server (or a stalled generator) shows up as latency instead of
quietly lowering the offered rate (no coordinated omission). Process k of P sends the orders i with
i % P == k; t0 is a CLOCK_MONOTONIC instant shared by every process of the machine.

Each process owns a slice of the users and keeps one WebSocket per user to the events service, recording
when the order's final ORDER_UPDATE (FILLED, or EXPIRED/REJECTED/CANCELED) arrives.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

FINAL = frozenset({"FILLED", "EXPIRED", "REJECTED", "CANCELED"})


@dataclass(frozen=True, slots=True)
class Stage:
    """One stage of offered load; `url` is the full POST URL; fills are awaited only if `ws_url` was given."""

    url: str
    rate: float
    duration: float
    t0: float
    drain_s: float
    want_fills: bool
    symbol: str
    quantity: str
    sides: str = "BUY,SELL"
    timeout_s: float = 10.0


# Per order: (index, due, sent, acked, http status or -1 on a client error, order id, fill time, final status)
Row = tuple[int, float, float, float, int, str, float, str]


def main(
    conn: Connection, users: list[dict[str, str]], ws_url: str | None, k: int, p: int, conns: int
) -> None:
    """Process entry point: serve stage commands from the orchestrator until told to stop."""
    import uvloop

    uvloop.run(_serve(conn, users, ws_url, k, p, conns))


async def _serve(
    conn: Connection, users: list[dict[str, str]], ws_url: str | None, k: int, p: int, conns: int
) -> None:
    import aiohttp
    import orjson

    loop = asyncio.get_running_loop()
    finals: dict[str, tuple[float, str]] = {}
    connector = aiohttp.TCPConnector(limit=conns, keepalive_timeout=300, ttl_dns_cache=None)
    # WebSockets get their own unlimited session: they must not eat the HTTP connection budget.
    async with (
        aiohttp.ClientSession(connector=connector, skip_auto_headers=["User-Agent"]) as http,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as wss,
    ):
        ws_tasks: list[asyncio.Task[None]] = []
        ready: list[asyncio.Event] = []
        if ws_url is not None:
            for u in users:
                ev = asyncio.Event()
                ready.append(ev)
                ws_tasks.append(asyncio.create_task(_listen(wss, f"{ws_url}?token={u['token']}", finals, ev)))
            await asyncio.wait_for(asyncio.gather(*(e.wait() for e in ready)), 60)
        conn.send(("ready", len(users)))
        side_of = [0] * len(users)
        while True:
            cmd = await loop.run_in_executor(None, conn.recv)
            if cmd[0] == "stop":
                break
            stage: Stage = cmd[1]
            rows = await _run_stage(http, stage, users, side_of, finals, k, p, orjson)
            conn.send(("done", rows))
        for t in ws_tasks:
            t.cancel()
    conn.close()


async def _listen(http: Any, url: str, finals: dict[str, tuple[float, str]], ready: asyncio.Event) -> None:
    import orjson

    async with http.ws_connect(url, heartbeat=None, max_msg_size=0, autoping=True) as ws:
        ready.set()
        async for msg in ws:
            if msg.type != 1:  # aiohttp.WSMsgType.TEXT
                if msg.type in (8, 256, 257, 258):  # CLOSE, CLOSING, CLOSED, ERROR
                    break
                continue
            now = time.monotonic()
            m = orjson.loads(msg.data)
            if m.get("type") == "ORDER_UPDATE":
                data = m.get("data") or {}
                status = data.get("status")
                if status in FINAL:
                    finals.setdefault(data["order_id"], (now, status))


async def _run_stage(
    http: Any,
    stage: Stage,
    users: list[dict[str, str]],
    side_of: list[int],
    finals: dict[str, tuple[float, str]],
    k: int,
    p: int,
    orjson: Any,
) -> list[Row]:
    n_total = int(stage.rate * stage.duration)
    mine = range(k, n_total, p)
    results: dict[int, tuple[float, float, int, str]] = {}
    headers = [{"Authorization": f"Bearer {u['token']}", "Content-Type": "application/json"} for u in users]
    bodies = {
        side: orjson.dumps(
            {"symbol": stage.symbol, "side": side, "type": "MARKET", "quantity": stage.quantity}
        )
        for side in ("BUY", "SELL")
    }
    sides = [x.strip().upper() for x in stage.sides.split(",") if x.strip()]
    timeout = __import__("aiohttp").ClientTimeout(total=stage.timeout_s)

    async def send(i: int, due: float, u: int, side: str) -> None:
        sent = time.monotonic()
        try:
            async with http.post(stage.url, data=bodies[side], headers=headers[u], timeout=timeout) as r:
                raw = await r.read()
                acked = time.monotonic()
                oid = ""
                if 200 <= r.status < 300:
                    oid = orjson.loads(raw).get("order_id", "")
                results[i] = (sent, acked, r.status, oid)
        except Exception:
            results[i] = (sent, time.monotonic(), -1, "")

    tasks: set[asyncio.Task[None]] = set()
    dues: dict[int, float] = {}
    for j, i in enumerate(mine):
        due = stage.t0 + i / stage.rate
        dues[i] = due
        delay = due - time.monotonic()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        u = j % len(users)
        side = sides[side_of[u] % len(sides)]  # cycled per user: BUY,SELL keeps balances put
        side_of[u] += 1
        t = asyncio.create_task(send(i, due, u, side))
        tasks.add(t)
        t.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    if stage.want_fills:
        deadline = time.monotonic() + stage.drain_s
        wanted = [r[3] for r in results.values() if r[3]]
        while time.monotonic() < deadline and any(o not in finals for o in wanted):  # noqa: ASYNC110  (polls a dict the socket readers fill)
            await asyncio.sleep(0.02)
    rows: list[Row] = []
    for i, due in dues.items():
        sent, acked, status, oid = results[i]
        fill_t, fstatus = finals.pop(oid, (0.0, "")) if oid else (0.0, "")
        rows.append((i, due, sent, acked, status, oid, fill_t, fstatus))
    return rows
