"""Issue #17: how long a testnet fill takes to reach the user, with the user data stream and with polling only.

`--to socket` (the default) measures end to end: the embedded system as `tradebridge up` runs it in-process
(`create_app` with the events, execution and pricefeed services, SQLite and the in-process bus, served by
uvicorn on a free port) trading at the Binance double. A user is registered, stores testnet keys for a double
account, switches to testnet mode and opens `/ws`; per fill, a resting LIMIT sell goes through
`POST /api/orders`, its `ORDER_UPDATE NEW` is awaited on the socket, the double's price is moved through it
(it fills there) and the time is taken from that move to the socket's `ORDER_UPDATE` with status FILLED: the
venue learning of the fill, the worker persisting it, the outbox relay, the bus, the events service's push.

`--to venue` measures only the first of those legs, as before: a resting LIMIT sell is placed through the testnet venue (the worker's, as `build_testnet_venue` makes it) at the
Binance double; the double's price is then moved through it, so it fills there; the time is taken from that
move to the venue handing the FILLED change (with its fill) to its sink, which is what the worker persists and
publishes as the user's `ORDER_UPDATE FILLED`. Persisting and pushing that event are the paper pipeline's
figures (docs/performance.md); this measures only what the stream changes: how soon a fill is known.

Both ends: two runs of `--fills` orders, one after another: `stream` (BINANCE_TESTNET_WS_URL at the double, polling at the
venue's defaults, which slow down while the stream is up) and `polling` (no WebSocket URL: the defaults, 0.5 s
after activity up to 15 s when idle). Prints p50/p90/p99/max in ms.

    PYTHONPATH=. .venv/bin/python benchmarks/testnet_fill_latency.py [--fills 200] [--only stream|polling]
        [--to socket|venue]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from execution.testnet.venue import TestnetVenue, TestnetVenueConfig
from execution.venues.base import VenueOrder, VenueResult
from shared.clock import SystemClock
from shared.ids import new_id
from tests.binance_double import BinanceDouble
from tests.events.helpers import serve
from tests.support.api import make_settings
from tradebridge.app import create_app


@dataclass(frozen=True)
class Keys:
    api_key: str
    api_secret: str


async def run_venue(double: BinanceDouble, mode: str, fills: int) -> list[float]:
    """From the fill at the double to the venue handing FILLED to its sink (the worker's)."""
    account = double.state.create_account({"USDT": "100000000", "BTC": "100000"})
    keys = Keys(account.api_key, account.api_secret)
    filled: dict[str, float] = {}
    waiters: dict[str, asyncio.Event] = {}

    async def sink(result: VenueResult) -> None:
        now = time.perf_counter()
        for c in result.changes:
            if c.status == "FILLED" and c.order_id in waiters and c.order_id not in filled:
                filled[c.order_id] = now
                waiters[c.order_id].set()

    async def provider(user_id: str) -> Keys | None:
        return keys

    config = TestnetVenueConfig(
        base_url=double.url, ws_url=double.ws_url if mode == "stream" else None, enable_rate_limit=False
    )
    venue = TestnetVenue(config, provider, SystemClock())
    await venue.start(sink)
    samples: list[float] = []
    price = Decimal(60000)
    try:
        double.state.set_price("BTCUSDT", str(price))
        if mode == "stream":
            await venue.balances("u1")  # builds the user's session, which subscribes their stream
            deadline = asyncio.get_running_loop().time() + 30
            # the venue exposes the stream's state, not an event for it: poll it, bounded
            while not venue.streaming("u1"):
                if asyncio.get_running_loop().time() > deadline:
                    raise SystemExit("the user stream did not come up within 30 s")
                await asyncio.sleep(0.01)
        for _ in range(fills):
            oid = new_id()
            limit = price + 10
            order = VenueOrder(
                oid, "u1", "BTCUSDT", "SELL", "LIMIT", "GTC", Decimal("0.001"), limit, "PENDING"
            )
            waiters[oid] = asyncio.Event()
            placed = await venue.place(order)
            assert placed.changes and placed.changes[0].status == "NEW", placed
            price = limit + 10
            start = time.perf_counter()
            double.state.set_price("BTCUSDT", str(price))  # trades through the resting sell
            await asyncio.wait_for(waiters[oid].wait(), 60)
            samples.append((filled[oid] - start) * 1000)
    finally:
        await venue.stop()
    return samples


async def run_socket(double: BinanceDouble, mode: str, fills: int) -> list[float]:
    """From the fill at the double to the user's `ORDER_UPDATE FILLED` on `/ws` of the embedded system."""
    account = double.state.create_account({"USDT": "100000000", "BTC": "100000"})
    price = Decimal(60000)
    double.state.set_price("BTCUSDT", str(price))
    with tempfile.TemporaryDirectory() as tmp:
        settings = make_settings(
            f"sqlite+aiosqlite:///{Path(tmp) / 'tb.db'}",
            binance_testnet_url=double.url,
            binance_testnet_ws_url=double.ws_url if mode == "stream" else "",
            pricefeed_source="synthetic",
            symbols_csv="BTCUSDT",
        )
        app = create_app(settings, migrate=True, services=("events", "execution", "pricefeed"))
        async with serve(app) as served:
            base = served.url.replace("ws://", "http://").removesuffix("/ws")
            async with httpx.AsyncClient(base_url=base, timeout=30) as http:
                return await _socket_fills(http, served.url, account, mode, fills, price, double)
    raise AssertionError("unreachable")


async def _socket_fills(
    http: httpx.AsyncClient,
    ws_url: str,
    account: Any,
    mode: str,
    fills: int,
    price: Decimal,
    double: BinanceDouble,
) -> list[float]:
    creds = {"email": f"bench-{mode}@example.com", "password": "correct horse battery"}
    assert (await http.post("/auth/register", json=creds)).status_code == 201
    token = (await http.post("/auth/login", json=creds)).json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    keys = {"api_key": account.api_key, "api_secret": account.api_secret}
    assert (await http.put("/api/keys/binance-testnet", json=keys, headers=auth)).status_code == 200
    assert (await http.put("/api/me/mode", json={"mode": "testnet"}, headers=auth)).status_code == 200

    seen: dict[tuple[str, str], float] = {}  # (order id, status) -> first arrival on the socket
    arrived = asyncio.Event()

    async def pump(ws: Any) -> None:
        async for raw in ws:
            now = time.perf_counter()
            msg = json.loads(raw)
            if msg.get("type") == "ORDER_UPDATE":
                data = msg["data"]
                seen.setdefault((data["order_id"], data["status"]), now)
                arrived.set()

    async def on_socket(order_id: str, status: str) -> float:
        try:
            async with asyncio.timeout(60):
                while (order_id, status) not in seen:
                    arrived.clear()
                    await arrived.wait()
        except TimeoutError:
            raise SystemExit(f"no ORDER_UPDATE {status} for {order_id} within 60 s") from None
        return seen[(order_id, status)]

    samples: list[float] = []
    async with connect(f"{ws_url}?token={token}", open_timeout=10) as ws:
        reader = asyncio.create_task(pump(ws))
        try:
            for i in range(fills):
                limit = price + 10
                body = {"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "quantity": "0.001"}
                r = await http.post("/api/orders", json={**body, "price": str(limit)}, headers=auth)
                assert r.status_code == 202, r.text
                oid = r.json()["order_id"]
                await on_socket(oid, "NEW")
                if i == 0 and mode == "stream":
                    await _stream_up(http, auth)  # the worker subscribes once it follows the user
                price = limit + 10
                start = time.perf_counter()
                double.state.set_price("BTCUSDT", str(price))  # trades through the resting sell
                samples.append((await on_socket(oid, "FILLED") - start) * 1000)
        finally:
            reader.cancel()
    return samples


async def _stream_up(http: httpx.AsyncClient, auth: dict[str, str]) -> None:
    """Waits (bounded) for the venue status to report the user data stream up; it has no event for it."""
    deadline = asyncio.get_running_loop().time() + 30
    while (await http.get("/api/venue-status?mode=testnet", headers=auth)).json().get("stream") != "up":
        if asyncio.get_running_loop().time() > deadline:
            raise SystemExit("the user stream did not come up within 30 s")
        await asyncio.sleep(0.05)


def pct(sorted_ms: list[float], p: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, round(p / 100 * (len(sorted_ms) - 1)))]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fills", type=int, default=200)
    ap.add_argument("--only", choices=("stream", "polling"))
    ap.add_argument("--to", choices=("socket", "venue"), default="socket")
    args = ap.parse_args()
    run = run_socket if args.to == "socket" else run_venue
    modes = [args.only] if args.only else ["stream", "polling"]
    print(f"to the {'user WebSocket ORDER_UPDATE FILLED' if args.to == 'socket' else 'venue sink'}")
    print(f"{'mode':8} {'fills':>5} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'max ms':>8} {'mean ms':>8}")
    with BinanceDouble() as double:
        for mode in modes:
            ms = sorted(await run(double, mode, args.fills))
            print(
                f"{mode:8} {len(ms):5d} {pct(ms, 50):8.1f} {pct(ms, 90):8.1f} {pct(ms, 99):8.1f} "
                f"{ms[-1]:8.1f} {statistics.fmean(ms):8.1f}"
            )


if __name__ == "__main__":
    asyncio.run(main())
