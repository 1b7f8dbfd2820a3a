"""Gateway order path in isolation: CPU and round trips per accepted paper order, in one process.

The real application (lifespan included) on a scratch PostgreSQL database and a Redis key prefix, driven
through httpx's ASGI transport (no sockets), one order at a time, so the figure is the gateway's own cost
per order without queueing: place N small paper orders from a few users (LIMIT buys far from the market,
so nothing fills and no worker is needed) and print wall time per order, process CPU per order and
PostgreSQL statements per order. With --profile, the top functions by cumulative time (cProfile).

    .venv/bin/python benchmarks/gateway_place.py [--orders 2000] [--users 20] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import secrets
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _e2e_procs import ScratchDatabase  # noqa: E402

from tests.support.api import make_settings, running_api  # noqa: E402


def count_statements(engine: object) -> Counter[str]:
    """Statements sent to PostgreSQL by this process (requests and the outbox relay), by their first words."""
    from sqlalchemy import event

    seen: Counter[str] = Counter()

    def before(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen[" ".join(statement.split()[:3])[:40]] += 1

    def begin(conn: object) -> None:
        # an autocommit connection (a funded user's placement) sends no BEGIN though SQLAlchemy begins
        if conn.get_execution_options().get("isolation_level") != "AUTOCOMMIT":  # type: ignore[attr-defined]
            seen["BEGIN"] += 1

    def commit(conn: object) -> None:
        seen["COMMIT"] += 1

    sync = engine.sync_engine  # type: ignore[attr-defined]
    event.listen(sync, "before_cursor_execute", before)
    event.listen(sync, "begin", begin)
    event.listen(sync, "commit", commit)
    return seen


async def run(args: argparse.Namespace, db: ScratchDatabase) -> None:
    from shared.migrate import upgrade

    await upgrade(db.url)
    prefix = f"bench:{secrets.token_hex(3)}:"
    try:
        await _run(args, db, prefix)
    finally:  # the Redis keys of this run go with it
        import redis.asyncio as aioredis

        client = aioredis.from_url("redis://127.0.0.1:6379/0")
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.aclose()


async def _run(args: argparse.Namespace, db: ScratchDatabase, prefix: str) -> None:
    settings = make_settings(
        db.url,
        redis_url="redis://127.0.0.1:6379/0",
        redis_prefix=prefix,
        order_rate_limit="100000/second",
    )
    async with running_api(settings) as api:
        headers = [await api.user(f"bench{i}@example.com") for i in range(args.users)]
        body = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.1", "price": "100.00"}
        # warm up: first-use deposits, statement caches
        for h in headers:
            r = await api.client.post("/api/orders", json=body, headers=h)
            assert r.status_code == 202, r.text
        stmts = count_statements(api.parts.engine)
        prof = cProfile.Profile() if args.profile else None
        t0, c0 = time.perf_counter(), time.process_time()
        if prof:
            prof.enable()
        for i in range(args.orders):
            r = await api.client.post("/api/orders", json=body, headers=headers[i % len(headers)])
            if r.status_code != 202:
                raise SystemExit(f"order {i}: {r.status_code} {r.text}")
        if prof:
            prof.disable()
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(
            f"{args.orders} orders from {args.users} users: {wall / args.orders * 1e3:.2f} ms wall/order, "
            f"{cpu / args.orders * 1e3:.2f} ms CPU/order in this process (client + gateway + relay), "
            f"{args.orders / wall:,.0f} orders/s one at a time"
        )
        total = sum(stmts.values())
        print(f"PostgreSQL statements per order (incl. BEGIN/COMMIT, relay): {total / args.orders:.1f}")
        for stmt, n in stmts.most_common(12):
            print(f"  {n / args.orders:5.2f}  {stmt}")
        if prof:
            if args.dump:
                prof.dump_stats(args.dump)
            pstats.Stats(prof).sort_stats(args.sort).print_stats(args.top)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--orders", type=int, default=2000)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--sort", default="cumulative", help="cProfile sort key: cumulative | tottime")
    ap.add_argument("--dump", help="with --profile: also write the raw cProfile stats to this file")
    args = ap.parse_args()
    db = ScratchDatabase()
    db.create()
    try:
        asyncio.run(run(args, db))
    finally:
        db.drop()


if __name__ == "__main__":
    main()
