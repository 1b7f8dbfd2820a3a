"""Bus throughput and wake-up latency for both adapters; prints figures (no assertions).

Usage: .venv/bin/python benchmarks/bus_throughput.py [--redis-url redis://127.0.0.1:6379/0] [--n 5000]
Redis keys live under a unique prefix and are deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from decimal import Decimal

import redis.asyncio as aioredis

from shared.bus import Bus, BusUnavailable
from shared.bus.memory import MemoryBus
from shared.bus.redis_streams import RedisStreamsBus

PAYLOAD = {
    "order_id": str(uuid.uuid4()),
    "symbol": "BTCUSDT",
    "side": "BUY",
    "type": "LIMIT",
    "quantity": Decimal("0.015"),
    "price": Decimal("64250.10"),
    "status": "NEW",
}


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds:>10,.0f} msg/s"


async def run(name: str, bus: Bus, n: int) -> None:
    print(f"\n== {name} (n={n})")
    t = time.perf_counter()
    for _ in range(n):
        await bus.publish("cmds", PAYLOAD)
    print(f"publish (one by one)        {rate(n, time.perf_counter() - t)}")

    t = time.perf_counter()
    for _ in range(0, n, 100):
        await bus.publish_many([("cmds", PAYLOAD)] * 100)
    print(f"publish_many (batches 100)  {rate(n, time.perf_counter() - t)}")

    t = time.perf_counter()
    for i in range(n):
        await bus.publish("private", PAYLOAD, mirror_to=f"user:{i % 50}")
    print(f"publish mirror_to           {rate(n, time.perf_counter() - t)}")

    await bus.ensure_group("cmds", "workers")
    t = time.perf_counter()
    consumed = 0
    while batch := await bus.read_group("cmds", "workers", "w1", count=100, block_ms=None):
        await bus.ack("cmds", "workers", [m.id for m in batch])
        consumed += len(batch)
    print(f"read_group+ack (count 100)  {rate(consumed, time.perf_counter() - t)}")

    t = time.perf_counter()
    read = 0
    after = "0"
    while batch := await bus.range_after("private", after, count=1000):
        read += len(batch)
        after = batch[-1].id
    print(f"range_after (count 1000)    {rate(read, time.perf_counter() - t)}")

    latencies = []
    for _ in range(200):
        last = await bus.last_id("wake") or "0"
        reader = asyncio.create_task(bus.read({"wake": last}, block_ms=5000))
        await asyncio.wait({reader}, timeout=0.002)  # let the reader block first
        t = time.perf_counter()
        await bus.publish("wake", {"t": 1})
        await reader
        latencies.append((time.perf_counter() - t) * 1000)
    q = statistics.quantiles(latencies, n=100)
    print(f"blocked read wake-up        p50 {q[49]:.2f} ms  p99 {q[98]:.2f} ms")


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--n", type=int, default=5000)
    args = parser.parse_args()

    memory = MemoryBus(maxlen=1_000_000)
    await run("memory", memory, args.n)
    await memory.close()

    prefix = f"bench_{uuid.uuid4().hex[:8]}:"
    bus = RedisStreamsBus(args.redis_url, prefix=prefix, maxlen=1_000_000)
    try:
        await bus.ping()
    except BusUnavailable as exc:
        print(f"\nRedis not reachable ({exc}); skipped")
        return
    try:
        await run(f"redis {args.redis_url}", bus, args.n)
    finally:
        await bus.close()
        raw = aioredis.Redis.from_url(args.redis_url)
        keys = [k async for k in raw.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await raw.delete(*keys)
        await raw.aclose()


if __name__ == "__main__":
    asyncio.run(main())
