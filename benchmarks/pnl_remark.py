"""Re-mark 10,000 open positions per tick and produce the coalesced PositionUpdates.

Each measured step is one tick (`MarkingEngine.on_tick`) followed by a flush 250 ms later
(`MarkingEngine.flush`), i.e. the service's cadence: every tick makes all positions of its
symbol due, so each step builds one immutable update per position of that symbol.

Scenarios:
- one-symbol: all 10,000 positions on BTCUSDT (the harsh case: 10,000 updates per tick);
- three-symbols: positions spread over BTC/ETH/BNB, ticks rotate (~3,333 updates per tick);
- sweep: a tick on each of the 3 symbols, then one flush of all 10,000 (per-flush worst case);
- loop stall: the one-symbol flush taken in 2,000-update chunks, as the service does.

Run: .venv/bin/python benchmarks/pnl_remark.py [--positions 10000] [--ticks 500]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import time
from collections.abc import Callable
from decimal import Decimal

from pricefeed.domain.marking import MarkingEngine
from shared.clock import ManualClock
from shared.positions import Fill, Side

START = {"BTCUSDT": Decimal("65000"), "ETHUSDT": Decimal("3500"), "BNBUSDT": Decimal("600")}


def build(n: int, symbols: list[str], rng: random.Random) -> tuple[ManualClock, MarkingEngine]:
    clock = ManualClock()
    eng = MarkingEngine(clock, max_per_second=4)
    for i in range(n):
        symbol = symbols[i % len(symbols)]
        side = Side.BUY if rng.random() < 0.6 else Side.SELL
        qty = Decimal(rng.randint(1, 100_000)) / Decimal(10_000)
        price = START[symbol] * (1 + Decimal(rng.randint(-500, 500)) / Decimal(10_000))
        eng.on_fill(f"user-{i // len(symbols)}", "paper", Fill(symbol, side, qty, price, fee=Decimal("0.01")))
    clock.advance(1)
    return clock, eng


def settle(freeze: bool) -> None:
    gc.collect()
    if freeze:
        gc.freeze()


def measure(ticks: int, step: Callable[[int], int]) -> tuple[list[float], list[float], int]:
    """Wall time per step, and this process's CPU time per step (immune to other load on the box)."""
    for i in range(20):  # warm-up
        step(i)
    gc.collect()
    wall: list[float] = []
    cpu: list[float] = []
    updates = 0
    for i in range(ticks):
        c0, t0 = time.process_time(), time.perf_counter()
        updates += step(i)
        wall.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
    return wall, cpu, updates


def pct(samples: list[float], q: int) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[q - 1]


def report(name: str, wall: list[float], cpu: list[float], updates: int) -> None:
    per_tick = updates / len(wall)
    print(
        f"{name:<14} updates/tick={per_tick:>6.0f}  wall p50={pct(wall, 50):6.2f} p99={pct(wall, 99):6.2f} "
        f"max={max(wall):6.2f} ms | cpu p50={pct(cpu, 50):6.2f} p99={pct(cpu, 99):6.2f} ms | "
        f"{pct(wall, 50) * 1000 / max(1.0, per_tick):.2f} us/update"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--positions", type=int, default=10_000)
    parser.add_argument("--ticks", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() after loading positions, as a long-running service may",
    )
    args = parser.parse_args()
    rng = random.Random(args.seed)
    print(
        f"{args.positions} open positions, {args.ticks} ticks per scenario, gc.freeze={args.gc_freeze}, "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; target p99 <= 20 ms"
    )

    for name, symbols in (("one-symbol", ["BTCUSDT"]), ("three-symbols", list(START))):
        clock, eng = build(args.positions, symbols, rng)
        prices = {s: START[s] for s in symbols}
        settle(args.gc_freeze)

        def step(
            i: int,
            clock: ManualClock = clock,
            eng: MarkingEngine = eng,
            symbols: list[str] = symbols,
            prices: dict[str, Decimal] = prices,
        ) -> int:
            symbol = symbols[i % len(symbols)]
            prices[symbol] += Decimal(rng.randint(-100, 100)) / 100
            clock.advance(0.25)
            eng.on_tick(symbol, prices[symbol], clock.now())
            return len(eng.flush())

        report(name, *measure(args.ticks, step))

    clock, eng = build(args.positions, list(START), rng)
    settle(args.gc_freeze)

    def sweep(i: int) -> int:
        clock.advance(0.25)
        for symbol in START:
            eng.on_tick(symbol, START[symbol] + Decimal(i % 7), clock.now())
        return len(eng.flush())

    report("sweep", *measure(args.ticks, sweep))

    # The service publishes flush_chunks(2000) and yields to the event loop between chunks:
    # the longest the loop is held is one chunk, not the whole 10,000.
    clock, eng = build(args.positions, ["BTCUSDT"], rng)
    settle(args.gc_freeze)
    stalls: list[float] = []
    for i in range(args.ticks):
        clock.advance(0.25)
        eng.on_tick("BTCUSDT", START["BTCUSDT"] + Decimal(i % 11), clock.now())
        chunks = eng.flush_chunks(chunk_size=2_000)
        while True:
            t0 = time.perf_counter()
            chunk = next(chunks, None)
            stalls.append((time.perf_counter() - t0) * 1000)
            if chunk is None:
                break
    print(
        f"{'loop stall':<14} one-symbol flush in 2,000-update chunks: per-chunk p50={pct(stalls, 50):.2f} "
        f"p99={pct(stalls, 99):.2f} max={max(stalls):.2f} ms"
    )


if __name__ == "__main__":
    main()
