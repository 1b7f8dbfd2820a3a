"""Crash recovery and start-up must not change an order's outcome: a market order fills whether it was
accepted just before a `kill -9`, while the worker was down, or right after `/readyz` first said 200.

Every service is a real process (tests.support.procs) with the market maker on and the synthetic price feed;
the worker is killed with SIGKILL. `/readyz` is asked of a gateway that does not run the worker, so its
answer comes from the liquidity markers the worker keeps in the shared market data store (Redis)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.binance_double.server import BinanceDouble
from tests.support.eventually import eventually
from tests.support.procs import Service, free_port, service_env

pytestmark = pytest.mark.slow

QTY = "0.002"  # a sliver of the market maker's ladder (about 0.03 BTC per level, ten levels a side)


@contextmanager
def services(procs: list[Service]) -> Iterator[list[Service]]:
    """Stops every process in `procs` at the end, restarted ones included (the list is read then)."""
    try:
        yield procs
    finally:
        for p in reversed(procs):
            p.stop()


@asynccontextmanager
async def client(port: int | None) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
        yield http


async def trader(http: httpx.AsyncClient, email: str) -> dict[str, str]:
    r = await http.post("/auth/register", json={"email": email, "password": "password-123"})
    assert r.status_code == 201, r.text
    r = await http.post("/auth/login", json={"email": email, "password": "password-123"})
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


async def market(http: httpx.AsyncClient, auth: dict[str, str], side: str) -> str:
    body = {"symbol": "BTCUSDT", "side": side, "type": "MARKET", "quantity": QTY}
    r = await http.post("/api/orders", json=body, headers=auth)
    assert r.status_code == 202, r.text
    return str(r.json()["order_id"])


async def statuses(http: httpx.AsyncClient, auth: dict[str, str], ids: list[str]) -> dict[str, str]:
    return {oid: (await http.get(f"/api/orders/{oid}", headers=auth)).json()["status"] for oid in ids}


async def all_filled(http: httpx.AsyncClient, auth: dict[str, str], ids: list[str]) -> None:
    async def settled() -> dict[str, str] | None:
        s = await statuses(http, auth, ids)
        return s if not {"PENDING", "NEW", "PARTIALLY_FILLED"} & set(s.values()) else None

    final = await eventually(settled, timeout=60, interval=0.2, message="market orders still open")
    assert final is not None and set(final.values()) == {"FILLED"}, final


async def readyz(http: httpx.AsyncClient) -> httpx.Response:
    return await http.get("/readyz")


async def wait_ready(http: httpx.AsyncClient) -> None:
    async def ready() -> bool:
        return (await readyz(http)).status_code == 200

    await eventually(ready, timeout=90, interval=0.02, message="/readyz never said 200")


def distributed(pg_url: str, redis_url: str, prefix: str, tmp: Path) -> tuple[Service, Service, Service]:
    env = service_env(pg_url, redis_url, prefix, PAPER_MARKET_MAKER="on", PRICEFEED_SOURCE="synthetic")
    return (
        Service("gateway", env, tmp / "gateway.log", port=free_port()),
        Service("execution", env, tmp / "worker.log"),
        Service("pricefeed", env, tmp / "pricefeed.log"),
    )


async def test_gateway_is_ready_only_once_the_books_have_liquidity(
    pg_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """A fresh distributed start: the gateway (no worker inside) is not ready while the market maker has no
    price to quote around; the first market orders placed the moment it says 200 fill."""
    gateway, worker, feed = distributed(pg_url, redis_url, redis_prefix, tmp_path)
    with services([gateway, worker, feed]):
        gateway.start()
        worker.start()
        await asyncio.to_thread(gateway.wait_http, "/healthz")
        async with client(gateway.port) as http:
            auth = await trader(http, "first@example.com")
            r = await readyz(http)
            assert r.status_code == 503, r.text
            assert r.json()["checks"]["liquidity"].startswith("waiting: BTCUSDT")
            feed.start()
            await wait_ready(http)
            ids = [await market(http, auth, "SELL"), await market(http, auth, "BUY")]
            await all_filled(http, auth, ids)


async def test_market_orders_accepted_around_a_kill_fill_after_restart(
    pg_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> None:
    """kill -9 of the worker right after market orders were accepted, more accepted while it is down: after
    the restart it quotes again before matching them, so every one of them fills. Then kill -9 of the worker
    and the price feed: the restarted worker holds the orders (and /readyz says why) until it has a price."""
    gateway, worker, feed = distributed(pg_url, redis_url, redis_prefix, tmp_path)
    with services([gateway, worker, feed]) as procs:
        for p in procs:
            p.start()
        await asyncio.to_thread(gateway.wait_http, "/healthz")
        async with client(gateway.port) as http:
            auth = await trader(http, "survivor@example.com")
            await wait_ready(http)

            # 1. The worker dies with orders in flight; the price feed keeps running.
            ids = [await market(http, auth, side) for side in ("BUY", "SELL") * 3]
            worker.kill()
            ids += [await market(http, auth, side) for side in ("SELL", "BUY") * 3]
            assert set((await statuses(http, auth, ids[6:])).values()) == {"PENDING"}
            procs[1] = worker = Service("execution", worker.env, worker.log)
            worker.start()
            await all_filled(http, auth, ids)
            await wait_ready(http)

            # 2. The worker and the price feed die: no price at all when the worker comes back.
            worker.kill()
            feed.kill()
            ids = [await market(http, auth, side) for side in ("BUY", "SELL") * 3]

            async def checks_say(text: str) -> bool:
                r = await readyz(http)
                return r.status_code == 503 and text in r.json()["checks"]["liquidity"]

            # Nobody refreshes the markers any more: this gateway (no worker inside) stops reporting ready.
            await eventually(lambda: checks_say("BTCUSDT marker expired"), timeout=30, interval=0.2)
            procs[1] = worker = Service("execution", worker.env, worker.log)
            worker.start()
            # The new worker rebuilt its books and says it has no quotes: it must not match anything yet.
            await eventually(lambda: checks_say("BTCUSDT no quotes"), timeout=30, interval=0.1)
            assert set((await statuses(http, auth, ids)).values()) == {"PENDING"}
            procs[2] = feed = Service("pricefeed", feed.env, feed.log)
            feed.start()
            await all_filled(http, auth, ids)
            await wait_ready(http)


def embedded(tmp: Path, **extra: str) -> Service:
    env = service_env(f"sqlite+aiosqlite:///{tmp / 'tb.db'}", "", "", PAPER_MARKET_MAKER="on", **extra)
    for key in ("REDIS_URL", "REDIS_PREFIX"):
        env.pop(key)
    env.setdefault("PRICEFEED_SOURCE", "synthetic")
    return Service("up", env, tmp / "up.log", port=free_port())


async def test_embedded_first_market_order_after_readyz_fills(
    tmp_path: Path, binance_double: BinanceDouble
) -> None:
    """`tradebridge up` (SQLite, in-process bus) whose price source (the Binance double) answers nothing at
    first: /readyz waits for the market maker's quotes, and a market order placed the moment it says 200
    fills."""
    tickers = ("GET", "/api/v3/ticker/24hr")
    binance_double.fail_next(*tickers, 503, times=1_000_000)
    up = embedded(tmp_path, PRICEFEED_SOURCE="binance-testnet", BINANCE_TESTNET_URL=binance_double.url)
    with services([up]):
        up.start()
        await asyncio.to_thread(up.wait_http, "/healthz")
        async with client(up.port) as http:
            auth = await trader(http, "embedded@example.com")
            r = await readyz(http)
            assert r.status_code == 503, r.text
            assert r.json()["checks"]["liquidity"].startswith("waiting: BTCUSDT")
            binance_double.state.clear_faults()  # the feed's next retry gets prices
            await wait_ready(http)
            await all_filled(http, auth, [await market(http, auth, "SELL")])


async def test_embedded_market_orders_in_flight_at_a_kill_fill_after_restart(
    tmp_path: Path, binance_double: BinanceDouble
) -> None:
    """kill -9 of `tradebridge up` while market orders are being accepted (the in-process bus loses their
    commands; the database keeps them), restarted while its price source answers nothing: the worker holds
    them until the market maker has quoted again, then they fill."""
    tickers = ("GET", "/api/v3/ticker/24hr")
    first = embedded(tmp_path, PRICEFEED_SOURCE="binance-testnet", BINANCE_TESTNET_URL=binance_double.url)
    second = Service("up", first.env, first.log, port=first.port)
    with services([first, second]):
        first.start()
        await asyncio.to_thread(first.wait_http, "/healthz")
        async with client(first.port) as http:
            auth = await trader(http, "embedded-survivor@example.com")
            await wait_ready(http)
            ids: list[str] = []

            async def one(side: str) -> None:
                with contextlib.suppress(httpx.HTTPError):  # never answered: the kill came first
                    ids.append(await market(http, auth, side))

            burst = [asyncio.create_task(one(side)) for side in ("BUY", "SELL") * 10]
            await eventually(lambda: len(ids) >= 4, timeout=30)
            first.kill()
            await asyncio.gather(*burst)
            binance_double.fail_next(*tickers, 503, times=1_000_000)
            second.start()
            await asyncio.to_thread(second.wait_http, "/healthz")

            async def no_quotes() -> bool:
                r = await readyz(http)
                return r.status_code == 503 and "BTCUSDT no quotes" in r.json()["checks"]["liquidity"]

            await eventually(no_quotes, timeout=30, interval=0.1)
            binance_double.state.clear_faults()
            await all_filled(http, auth, ids)
            await wait_ready(http)
