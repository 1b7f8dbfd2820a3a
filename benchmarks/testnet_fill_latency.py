"""Issue #17: how long a testnet fill takes to reach TradeBridge, with the user data stream and with polling only.

A resting LIMIT sell is placed through the testnet venue (the worker's, as `build_testnet_venue` makes it) at the
Binance double; the double's price is then moved through it, so it fills there; the time is taken from that
move to the venue handing the FILLED change (with its fill) to its sink, which is what the worker persists and
publishes as the user's `ORDER_UPDATE FILLED`. Persisting and pushing that event are the paper pipeline's
figures (docs/performance.md); this measures only what the stream changes: how soon a fill is known.

Two runs of `--fills` orders, one after another: `stream` (BINANCE_TESTNET_WS_URL at the double, polling at the
venue's defaults, which slow down while the stream is up) and `polling` (no WebSocket URL: the defaults, 0.5 s
after activity up to 15 s when idle). Prints p50/p90/p99/max in ms.

    PYTHONPATH=. .venv/bin/python benchmarks/testnet_fill_latency.py [--fills 200] [--only stream|polling]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass
from decimal import Decimal

from execution.testnet.venue import TestnetVenue, TestnetVenueConfig
from execution.venues.base import VenueOrder, VenueResult
from shared.clock import SystemClock
from shared.ids import new_id
from tests.binance_double import BinanceDouble


@dataclass(frozen=True)
class Keys:
    api_key: str
    api_secret: str


async def run(double: BinanceDouble, mode: str, fills: int) -> list[float]:
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


def pct(sorted_ms: list[float], p: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, round(p / 100 * (len(sorted_ms) - 1)))]


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fills", type=int, default=200)
    ap.add_argument("--only", choices=("stream", "polling"))
    args = ap.parse_args()
    modes = [args.only] if args.only else ["stream", "polling"]
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
