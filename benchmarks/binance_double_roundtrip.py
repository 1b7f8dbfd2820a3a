"""How fast ccxt (unmodified, via our factory) round-trips against the Binance double.

Prints orders/s and latency percentiles for sequential signed LIMIT placements and fetches, so other teams
know what the double costs in their tests. Run: PYTHONPATH=. .venv/bin/python benchmarks/binance_double_roundtrip.py
"""

from __future__ import annotations

import asyncio
import statistics
import time

from shared.exchanges.binance import make_binance_client
from tests.binance_double import BinanceDouble

N = 300


async def main() -> None:
    with BinanceDouble() as double:
        acc = double.state.create_account({"USDT": "100000000"})
        client = make_binance_client(
            acc.api_key, acc.api_secret, base_url=double.url, enable_rate_limit=False
        )
        try:
            await client.load_markets()
            for label, op in (
                (
                    "create_order LIMIT (resting)",
                    lambda i: client.create_order("BTC/USDT", "limit", "buy", 0.001, 50000),
                ),
                ("fetch_order", lambda i: client.fetch_order(str(i + 1), "BTC/USDT")),
                (
                    "create_order MARKET (filled)",
                    lambda i: client.create_order("BTC/USDT", "market", "buy", 0.001),
                ),
            ):
                lat = []
                start = time.perf_counter()
                for i in range(N):
                    t0 = time.perf_counter()
                    await op(i)
                    lat.append((time.perf_counter() - t0) * 1000)
                elapsed = time.perf_counter() - start
                q = statistics.quantiles(lat, n=100)
                print(f"{label:32s} {N / elapsed:8.0f} req/s  p50 {q[49]:6.2f} ms  p99 {q[98]:6.2f} ms")
            print(f"orders in the double's record: {len(double.state.orders())}")
        finally:
            await client.close()


if __name__ == "__main__":
    asyncio.run(main())
