"""CPU per order of `tradebridge up` (the embedded default) for a fixed amount of work (issue #16, target 5).

    .venv/bin/python benchmarks/embedded_work.py --orders 300 --clients 8

Starts `tradebridge up` on a fresh SQLite file with the settings `pipeline_e2e.py` uses (synthetic prices,
market maker on), registers and funds `--users` users (their first order, outside the measurement), measures
the idle CPU for 10 s, then places `--orders` small MARKET BTCUSDT orders from `--clients` clients at once
(closed loop) and waits until none is open. Prints the process's CPU (from /proc) per accepted order over that
window, and the idle share. Unlike an open-loop rate with load shedding, CPU spent on a fixed amount of work
depends little on how loaded the machine is, so on a shared machine it is the figure to compare, run
alternately (another tree: `PYTHONPATH=/that/tree`, which `up` inherits). Not a test; prints figures."""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _e2e_procs import BENCH_SETTINGS, base_env

TICK = os.sysconf("SC_CLK_TCK")


def cpu(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / TICK


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run(orders: int, clients: int, users: int) -> None:
    home = Path(tempfile.mkdtemp(prefix="fw_"))
    port = free_port()
    env = base_env()
    env.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{home / 'tb.db'}",
        SECRETS_FILE=str(home / "secrets.json"),
        **BENCH_SETTINGS,
    )
    with open(home / "up.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tradebridge.cli", "up", "--port", str(port)],
            env=env,
            cwd=home,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        asyncio.run(measure(proc, f"http://127.0.0.1:{port}", orders, clients, users))
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(home, ignore_errors=True)


async def measure(proc: subprocess.Popen[bytes], base: str, n: int, conc: int, n_users: int) -> None:
    async with httpx.AsyncClient(
        base_url=base, timeout=60, limits=httpx.Limits(max_connections=conc + 4)
    ) as c:
        deadline = time.monotonic() + 300
        while True:
            try:
                r = await c.get("/api/markets/BTCUSDT/depth")
                if r.status_code == 200 and r.json().get("asks") and r.json().get("bids"):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("no book")
            await asyncio.sleep(0.5)
        tokens = []
        for i in range(n_users):
            email = f"fw{i}@example.com"
            r = await c.post("/auth/register", json={"email": email, "password": "a long password"})
            r = await c.post("/auth/login", json={"email": email, "password": "a long password"})
            tokens.append(r.json()["access_token"])
        order = {"symbol": "BTCUSDT", "type": "MARKET", "quantity": "0.0001"}
        for t in tokens:  # first order funds the account: out of the measurement
            await c.post(
                "/api/orders", json={**order, "side": "BUY"}, headers={"authorization": f"Bearer {t}"}
            )
        await asyncio.sleep(5)
        i0, t0 = cpu(proc.pid), time.monotonic()
        await asyncio.sleep(10)
        idle = (cpu(proc.pid) - i0) / (time.monotonic() - t0)
        start_cpu, start = cpu(proc.pid), time.monotonic()
        counter = iter(range(n))
        codes: dict[int, int] = {}

        async def worker() -> None:
            for k in counter:
                t = tokens[k % n_users]
                side = "BUY" if (k // n_users) % 2 == 0 else "SELL"
                r = await c.post(
                    "/api/orders", json={**order, "side": side}, headers={"authorization": f"Bearer {t}"}
                )
                codes[r.status_code] = codes.get(r.status_code, 0) + 1

        await asyncio.gather(*(worker() for _ in range(conc)))
        placed = time.monotonic()
        while True:
            r = await c.get(
                "/api/orders?status=open&limit=10", headers={"authorization": f"Bearer {tokens[-1]}"}
            )
            if not r.json()["items"]:
                # every user's orders: check a few more
                opens = 0
                for t in tokens[:: max(1, n_users // 8)]:
                    r = await c.get(
                        "/api/orders?status=open&limit=10", headers={"authorization": f"Bearer {t}"}
                    )
                    opens += len(r.json()["items"])
                if not opens:
                    break
            await asyncio.sleep(0.5)
        end_cpu, end = cpu(proc.pid), time.monotonic()
        accepted = codes.get(202, 0)
        print(
            f"orders {n} clients {conc}: codes {codes}; CPU ms/order {1000 * (end_cpu - start_cpu) / accepted:.2f} "
            f"(minus idle share {1000 * (end_cpu - start_cpu - idle * (end - start)) / accepted:.2f}); "
            f"idle {100 * idle:.1f}% of a core; placing {placed - start:.1f} s, until final {end - start:.1f} s; "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--orders", type=int, default=300)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--users", type=int, default=40)
    a = p.parse_args()
    run(a.orders, a.clients, a.users)
