"""The Binance-compatible API against our own REST API: the same strategy loop, side by side, in one run.

Starts `tradebridge up` (SQLite, market maker off: the loop rests orders far from the market) as its own process on a free port, registers a user, issues
an API key, then runs rounds of one loop (place a LIMIT buy far below the market, fetch it, cancel it):

- binance:     ccxt's binance, unmodified, its URLs set to /binance/api/v3 (ccxt asks newOrderRespType=FULL,
               so the answer waits for the paper book to take the order; a cancel waits for CANCELED)
- binance-ack: the same with ccxt's option newOrderRespType=ACK for limit orders (answers at acceptance)
- ours:        httpx against /api/orders (202 at acceptance; a cancel is 202 PENDING_CANCEL)

Rounds of the three alternate, so a busy machine affects them alike. Printed per loop: requests/s, p50 and
p99 per call (place, fetch, cancel), and the server's CPU per call (utime+stime of its process from /proc,
sampled around each loop's rounds, less the process's idle rate measured first for the price feed and other
background work over the same wall time): the cost per call, and its ratio to ours (target: within 1.5x).

    .venv/bin/python benchmarks/binance_api.py [--rounds 200] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
TICKS = os.sysconf("SC_CLK_TCK")
LOOPS = ("binance", "binance-ack", "ours")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def start(workdir: Path, port: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "KEY_", "JWT_"))}
    env.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{workdir / 'tb.db'}",
        SECRETS_FILE=str(workdir / "secrets.json"),
        PAPER_MARKET_MAKER="off",  # the loop needs no liquidity; less background CPU to separate out
        ORDER_RATE_LIMIT="100000/second",
        BINANCE_API_WEIGHT_LIMIT="10000000/minute",
        LOG_LEVEL="WARNING",
    )
    log = (workdir / "server.log").open("wb")
    return subprocess.Popen(
        [sys.executable, "-m", "tradebridge.cli", "up", "--port", str(port)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


async def wait_ready(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(base_url=base) as c:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError("tradebridge up exited; see server.log")
            try:
                if (await c.get("/readyz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("tradebridge up not ready after 90 s")


Timings = dict[str, list[float]]


async def timed(timings: Timings, call: str, action: Awaitable[Any]) -> Any:
    t0 = time.perf_counter()
    result = await action
    timings.setdefault(call, []).append(time.perf_counter() - t0)
    return result


def ccxt_loop(
    base: str, key: dict[str, Any], *, ack: bool
) -> tuple[Any, Callable[[Timings], Awaitable[None]]]:
    import ccxt.async_support as ccxt

    options: dict[str, Any] = {
        "defaultType": "spot",
        "fetchMarkets": {"types": ["spot"]},
        "fetchCurrencies": False,
        "fetchMargins": False,
    }
    if ack:
        options["newOrderRespType"] = {"market": "FULL", "limit": "ACK"}
    exchange = ccxt.binance({"apiKey": key["api_key"], "secret": key["secret"], "enableRateLimit": False,
                             "options": options})  # fmt: skip
    api = base + "/binance/api/v3"
    exchange.urls["api"] = {"public": api, "private": api}

    async def one(timings: Timings) -> None:
        order = await timed(timings, "place", exchange.create_order("BTC/USDT", "limit", "buy", 0.001, 20000))
        await timed(timings, "fetch", exchange.fetch_order(order["id"], "BTC/USDT"))
        await timed(timings, "cancel", exchange.cancel_order(order["id"], "BTC/USDT"))

    return exchange, one


def ours_loop(client: httpx.AsyncClient) -> Callable[[Timings], Awaitable[None]]:
    body = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001", "price": "20000"}

    async def one(timings: Timings) -> None:
        r = await timed(timings, "place", client.post("/api/orders", json=body))
        order_id = r.json()["order_id"]
        await timed(timings, "fetch", client.get(f"/api/orders/{order_id}"))
        r = await timed(timings, "cancel", client.delete(f"/api/orders/{order_id}"))
        if r.status_code not in (202, 409):  # 409: the book had not taken it yet; the loop goes on regardless
            raise RuntimeError(r.text)

    return one


def p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="tb-binance-bench-") as tmp:
        workdir = Path(tmp)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start(workdir, port)
        try:
            await wait_ready(base, proc)
            async with httpx.AsyncClient(base_url=base, timeout=30) as c:
                email = "bench@example.com"
                await c.post("/auth/register", json={"email": email, "password": "correct horse battery"})
                token = (
                    await c.post("/auth/login", json={"email": email, "password": "correct horse battery"})
                ).json()
                c.headers["Authorization"] = f"Bearer {token['access_token']}"
                key = (await c.post("/api/api-keys", json={"label": "bench"})).json()
                full, full_one = ccxt_loop(base, key, ack=False)
                ack, ack_one = ccxt_loop(base, key, ack=True)
                await full.load_markets()
                await ack.load_markets()
                loops = {"binance": full_one, "binance-ack": ack_one, "ours": ours_loop(c)}
                timings: dict[str, Timings] = {name: {} for name in LOOPS}
                wall = dict.fromkeys(LOOPS, 0.0)
                cpu = dict.fromkeys(LOOPS, 0.0)
                for name in LOOPS:  # warm-up
                    for _ in range(5):
                        await loops[name]({})
                await asyncio.sleep(1)  # the warm-up's cancels settle
                c0, t0 = cpu_seconds(proc.pid), time.perf_counter()
                await asyncio.sleep(args.idle)  # background CPU of the process while no request comes
                idle_rate = (cpu_seconds(proc.pid) - c0) / (time.perf_counter() - t0)
                block = 10
                for _ in range(max(1, args.rounds // block)):
                    for name in LOOPS:
                        c0, t0 = cpu_seconds(proc.pid), time.perf_counter()
                        for _ in range(block):
                            await loops[name](timings[name])
                        wall[name] += time.perf_counter() - t0
                        cpu[name] += cpu_seconds(proc.pid) - c0 - idle_rate * (time.perf_counter() - t0)
                await full.close()
                await ack.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    result: dict[str, Any] = {"idle_cpu_ms_per_s": idle_rate * 1000}
    for name in LOOPS:
        calls = sum(len(v) for v in timings[name].values())
        result[name] = {
            "calls": calls,
            "requests_per_s": calls / wall[name],
            "server_cpu_ms_per_call": cpu[name] / calls * 1000,
            **{f"{call}_p50_ms": p(v, 0.5) for call, v in timings[name].items()},
            **{f"{call}_p99_ms": p(v, 0.99) for call, v in timings[name].items()},
            "mean_ms_per_call": statistics.fmean(x for v in timings[name].values() for x in v) * 1000,
        }
    for name in ("binance", "binance-ack"):
        result[name]["cpu_ratio_to_ours"] = (
            result[name]["server_cpu_ms_per_call"] / result["ours"]["server_cpu_ms_per_call"]
        )
    return result


def report(result: dict[str, Any]) -> None:
    cols = ["requests_per_s", "server_cpu_ms_per_call", "place_p50_ms", "place_p99_ms", "fetch_p50_ms",
            "fetch_p99_ms", "cancel_p50_ms", "cancel_p99_ms"]  # fmt: skip
    print(f"{'loop':<12}" + "".join(f"{c:>24}" for c in cols))
    print(f"idle: the server process used {result['idle_cpu_ms_per_s']:.1f} ms CPU/s (subtracted)")
    for name in LOOPS:
        print(f"{name:<12}" + "".join(f"{result[name][c]:>24.2f}" for c in cols))
    for name in ("binance", "binance-ack"):
        ratio = result[name]["cpu_ratio_to_ours"]
        verdict = "within" if ratio <= 1.5 else "ABOVE"
        print(f"{name}: server CPU per call {ratio:.2f}x ours ({verdict} the 1.5x target)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=200, help="loops per API (multiples of 10)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds to measure the idle CPU rate")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    figures = asyncio.run(main(args))
    print(json.dumps(figures, indent=2)) if args.json else report(figures)
