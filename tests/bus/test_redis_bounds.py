"""Round trips to a Redis that stopped answering end within their bound (`shared.redis_bounds`: a watchdog, not a
timer per command), for each adapter that talks to Redis; a blocking read within its bound is left alone.
The hung Redis is a real one, SIGSTOPped: connections still open (the kernel accepts them) and nothing answers."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from shared.bus import BusUnavailable
from shared.bus.redis_streams import RedisStreamsBus
from shared.errors import Unavailable
from shared.marketdata import RedisMarketData
from shared.ratelimit import RateLimiter
from shared.redis_bounds import WATCH_EVERY_S, bounded, bounded_connection_class
from tests.support.procs import RedisServer
from tests.support.services import REDIS_URL

BOUND_S = 0.5


@pytest.fixture
async def redis(tmp_path: Path) -> AsyncIterator[RedisServer]:
    server = RedisServer(tmp_path)
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


@contextmanager
def stopped(server: RedisServer) -> Iterator[None]:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.proc.pid, signal.SIGCONT)


async def ends_within(call: Callable[[], Awaitable[Any]], seconds: float) -> tuple[Any, float]:
    """(what the call returned or raised, how long it took); fails if it has not ended after ``seconds``."""
    t0 = time.monotonic()
    try:
        result: Any = await asyncio.wait_for(call(), seconds)
    except TimeoutError:
        pytest.fail(f"still waiting on a hung Redis after {seconds} s")
    except Exception as exc:
        result = exc
    return result, time.monotonic() - t0


# a send or read is aborted at the first watchdog tick past its bound; a retry on a fresh connection may
# wait out a second bound
LATEST_S = 2 * (BOUND_S + WATCH_EVERY_S) + 0.5


async def test_the_bus_reports_a_hung_redis_unavailable_within_its_bound(redis: RedisServer) -> None:
    bus = RedisStreamsBus(redis.url, prefix="bounds:", socket_timeout=BOUND_S, retries=0)
    try:
        await bus.publish("s", {"n": 1})
        with stopped(redis):
            outcome, took = await ends_within(lambda: bus.publish("s", {"n": 2}), 10)
        assert isinstance(outcome, BusUnavailable), outcome
        assert BOUND_S <= took < LATEST_S
        await bus.publish("s", {"n": 3})  # a fresh connection once Redis answers again
        assert [m.data["n"] for m in await bus.read({"s": "0"}, block_ms=None)][-1] == 3
    finally:
        await bus.close()


async def test_market_data_and_the_rate_limiter_end_on_a_hung_redis(redis: RedisServer) -> None:
    market = RedisMarketData(redis.url, "bounds:")
    limiter = RateLimiter(redis.url, "bounds:", fail_open=True, socket_timeout_s=BOUND_S)
    try:
        await market.put("depth", "BTCUSDT", {"bids": []})
        await limiter.hit("5/second", "k")
        with stopped(redis):
            outcome, took = await ends_within(lambda: market.get("depth", "BTCUSDT"), 10)
            assert isinstance(outcome, Unavailable), outcome  # 503, its bound 2 s
            assert took < 2 * (2.0 + WATCH_EVERY_S) + 0.5
            outcome, took = await ends_within(lambda: limiter.hit("5/second", "k"), 10)
            assert outcome is None and took < LATEST_S  # failing open: the request goes on
    finally:
        await market.aclose()
        await limiter.aclose()


async def test_a_blocking_read_within_its_bound_is_not_cut(redis_url: str, redis_prefix: str) -> None:
    """A BLOCK read of 0.6 s under a 0.8 s bound spans watchdog ticks and ends as Redis ends it, with nothing."""
    bus = RedisStreamsBus(redis_url, prefix=redis_prefix, socket_timeout=0.8, retries=0)
    try:
        await bus.publish("quiet", {"n": 0})
        last = (await bus.read({"quiet": "0"}, block_ms=None))[-1].id
        for _ in range(3):
            outcome, took = await ends_within(lambda: bus.read({"quiet": last}, block_ms=600), 5)
            assert outcome == [] and took >= 0.55
    finally:
        await bus.close()


def test_the_class_follows_the_url_scheme() -> None:
    from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

    assert issubclass(bounded_connection_class("redis://h", 1.0), Connection)
    assert issubclass(bounded_connection_class("rediss://h", 1.0), SSLConnection)
    assert issubclass(bounded_connection_class("unix:///tmp/r.sock", 1.0), UnixDomainSocketConnection)
    with pytest.raises(ValueError):
        bounded_connection_class("redis://h", 0)


def test_the_watchdog_keeps_no_event_loop_alive() -> None:
    """One watchdog per loop, found through a weak key: a loop that ran Redis calls is freed once closed."""
    import gc
    import weakref

    import redis.asyncio as aioredis

    from shared import redis_bounds

    async def some_calls() -> None:
        client = aioredis.Redis.from_url(REDIS_URL, **bounded(REDIS_URL, 1.0))
        await client.ping()
        await client.aclose()

    loop = asyncio.new_event_loop()
    loop.run_until_complete(some_calls())
    assert loop in redis_bounds._WATCHDOGS
    gone = weakref.ref(loop)
    loop.close()
    del loop
    gc.collect()
    assert gone() is None
