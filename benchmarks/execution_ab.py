"""A/B of the execution worker (issue #16): one distributed stack (gateway, events, pricefeed, PostgreSQL, a
private Redis) and only the execution process swapped between variants, alternating, back to back: idle CPU (% of
a core) and, at a fixed load, the execution process's CPU ms per order, ack and FILLED p50/p99 and the hops.
Each variant is a source tree run with its own working directory, e.g. the commit before a change:

    git archive --prefix=a/ HEAD~2 | tar -x -C /tmp/ab     # the variant's tree (uses this checkout's .venv)
    cp --parents execution/paper/*.so shared/paper/*.so shared/paper/accel-manifest.json /tmp/ab/a  # compiled
    .venv/bin/python benchmarks/execution_ab.py --variant A=/tmp/ab/a --variant NEW=. --orders 150 --concurrency 1
    .venv/bin/python benchmarks/execution_ab.py --variant A=/tmp/ab/a --variant NEW=. --open 100
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "benchmarks"), str(ROOT)]
import pipeline_e2e as pe  # noqa: E402
from _e2e_procs import Child  # noqa: E402


def proc_cpu(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


async def sequential(
    base: str, users: list[dict[str, str]], n: int, conc: int, ready_wait: float = 0
) -> list[float]:
    """`conc` clients, each placing a MARKET order and polling it until FILLED, `n` orders in all."""
    import httpx

    lat: list[float] = []
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        if ready_wait:
            deadline = time.monotonic() + ready_wait
            while (await c.get("/readyz")).status_code != 200 and time.monotonic() < deadline:  # noqa: ASYNC110
                await asyncio.sleep(0.2)
        todo = list(range(n))

        async def client(k: int) -> None:
            while todo:
                i = todo.pop()
                u = users[i % len(users)]
                h = {"Authorization": f"Bearer {u['token']}"}
                t = time.monotonic()
                r = await c.post(
                    "/api/orders",
                    headers=h,
                    json={
                        "symbol": "BTCUSDT",
                        "side": "BUY" if i % 2 else "SELL",
                        "type": "MARKET",
                        "quantity": "0.0001",
                    },
                )
                assert r.status_code == 202, r.text
                oid = r.json()["order_id"]
                while True:
                    o = (await c.get(f"/api/orders/{oid}", headers=h)).json()
                    if o["status"] in ("FILLED", "REJECTED", "CANCELED", "EXPIRED"):
                        assert o["status"] == "FILLED", o
                        break
                    await asyncio.sleep(0.005)
                lat.append(1000 * (time.monotonic() - t))

        await asyncio.gather(*(client(k) for k in range(conc)))
    return lat


def counters(bench) -> tuple[int, int, dict[str, int]]:
    """(PostgreSQL transactions committed in the bench database, Redis commands processed, the same by
    command): every process's."""
    import redis

    out = subprocess.run(
        [
            "psql",
            "-h",
            "127.0.0.1",
            "-U",
            "postgres",
            "-Atc",
            f"select xact_commit + xact_rollback from pg_stat_database where datname = '{bench.db.name}'",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PGPASSWORD": "postgres"},
    )
    x = int(out.stdout.strip() or 0)
    info = redis.Redis.from_url(bench.redis.url).info("commandstats")
    by_name = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}
    return x, sum(by_name.values()), by_name


def per_order(before: dict[str, int], after: dict[str, int], orders: int) -> str:
    """Redis commands per order by command, the most frequent first."""
    diff = {k: (n - before.get(k, 0)) / max(orders, 1) for k, n in after.items()}
    top = sorted(((v, k) for k, v in diff.items() if v >= 0.05), reverse=True)
    return " ".join(f"{k} {v:.2f}" for v, k in top)


def paper_mode(tree: Path) -> str:
    """Whether a tree runs the compiled paper modules or their pure Python (``shared.paper.MODE``): a tree made
    with ``git archive`` has the sources but neither the built extensions nor their manifest
    (``shared/paper/accel-manifest.json``), and then runs the pure Python, a different worker altogether."""
    out = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", "import shared.paper as p; print(p.MODE)"],
        cwd=tree,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", action="append", required=True, help="NAME=DIR")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--idle", type=float, default=15)
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--duration", type=float, default=15)
    ap.add_argument("--profile", type=Path, default=None)
    ap.add_argument("--users", type=int, default=100)
    ap.add_argument("--orders", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=1)
    ap.add_argument("--open", type=float, default=0, help="open-loop stage at this rate instead")
    ap.add_argument("--mixed", action="store_true", help="run variants whose paper modules differ")
    ab = ap.parse_args()
    variants = [v.split("=", 1) for v in ab.variant]
    modes = {name: paper_mode(Path(d)) for name, d in variants}
    print("paper modules:", ", ".join(f"{name} {mode}" for name, mode in modes.items()))
    if len(set(modes.values())) > 1 and not ab.mixed:
        sys.exit(
            "the variants run different paper modules (compiled / pure Python): copy the built extensions"
            " and shared/paper/accel-manifest.json into each tree, or pass --mixed"
        )
    args = pe.parse(
        [
            "--ref",
            "500",
            "--only",
            "distributed",
            "--users",
            str(ab.users),
            "--connections",
            "64",
            "--drain",
            "5",
        ]
    )
    bench = pe.Bench(args)
    try:
        bench.start_base()
        env = bench.env()
        pe.run_migrate(env)
        gw_port, ev_port = pe.free_port(), pe.free_port()
        gateway = Child.tradebridge("gateway", env, bench.tmp, gw_port)
        events = Child.tradebridge("events", env, bench.tmp, ev_port)
        pricefeed = Child.tradebridge("pricefeed", env, bench.tmp)
        first = Child.tradebridge(
            "execution", env, bench.tmp, name="execution-init", cwd=Path(variants[0][1])
        )
        bench.start([gateway, events, pricefeed, first], http=[gateway, events])
        bench.groups = {
            "gateway": [gateway],
            "events": [events],
            "pricefeed": [pricefeed],
            "execution": [first],
        }
        bench.pg = lambda: pe.pg_backend_pids(args.admin_dsn, bench.db.name)
        base = f"http://127.0.0.1:{gw_port}"
        users = asyncio.run(bench.prepare_users(base, args.users))
        url = f"{base}/api/orders"
        if ab.open:
            bench.start_loadgens(users, ws_url=f"ws://127.0.0.1:{ev_port}/ws")
        bench.stop([first])
        for rnd in range(ab.rounds):
            for name, d in variants:
                ex = Child.tradebridge("execution", env, bench.tmp, name=f"execution-{name}", cwd=Path(d))
                bench.start([ex], http=[])
                bench.groups["execution"] = [ex]
                time.sleep(4)
                asyncio.run(sequential(base, users, 20, 1, ready_wait=120))  # warm: ready, quoting
                asyncio.run(bench.backlog())
                la = os.getloadavg()[0]
                k0 = counters(bench)
                c0, t0 = proc_cpu(ex.pid), time.monotonic()
                time.sleep(ab.idle)
                idle_wall = time.monotonic() - t0
                idle = 100 * (proc_cpu(ex.pid) - c0) / idle_wall
                k1 = counters(bench)
                spy = None
                if ab.profile is not None:
                    ab.profile.mkdir(parents=True, exist_ok=True)
                    out = ab.profile / f"{name}-{rnd}.txt"
                    spy = subprocess.Popen(
                        [
                            str(Path(sys.executable).with_name("py-spy")),
                            "record",
                            "--pid",
                            str(ex.pid),
                            "--duration",
                            str(int(ab.duration) + 3),
                            "--rate",
                            "200",
                            "--format",
                            "raw",
                            "--gil",
                            "--nonblocking",
                            "--output",
                            str(out),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    time.sleep(1)
                if ab.open:
                    res = bench.run_stage("distributed", url, ab.open, ab.duration, fills=True)
                    hops, _ = asyncio.run(bench.hops(res["_rows"]))
                    k2 = counters(bench)
                    print(
                        f"[{time.strftime('%H:%M:%S', time.gmtime())} load {la:.1f}] round {rnd} {name:>6}: idle {idle:5.1f}% | "
                        f"{ab.open:g}/s ok={res['ok']} err={res['errors']} not_filled={res['not_filled']} exec "
                        f"{pe.cpu_ms(res, ['execution']):.2f} ms CPU/order | ack p50/p99 {res['ack_p50']:.1f}/{res['ack_p99']:.1f}"
                        f" FILLED p50/p99 {res['fill_p50']:.1f}/{res['fill_p99']:.1f} | PG xact/order {(k2[0] - k1[0]) / max(res['ok'], 1):.2f}"
                        f" redis cmd/order {(k2[1] - k1[1]) / max(res['ok'], 1):.1f}",
                        flush=True,
                    )
                    print(
                        f"      hops { ({k: (round(a, 1), round(b, 1)) for k, (a, b) in hops.items()}) }",
                        flush=True,
                    )
                    print(f"      redis per order: {per_order(k1[2], k2[2], res['ok'])}", flush=True)
                    bench.stop([ex])
                    continue
                c0, t0 = proc_cpu(ex.pid), time.monotonic()
                lat = asyncio.run(sequential(base, users, ab.orders, ab.concurrency))
                cpu, wall = proc_cpu(ex.pid) - c0, time.monotonic() - t0
                k2 = counters(bench)
                if spy is not None:
                    spy.wait()
                lat.sort()
                per = 1000 * cpu / ab.orders
                net = 1000 * (cpu - idle / 100 * wall) / ab.orders
                print(
                    f"[{time.strftime('%H:%M:%S', time.gmtime())} load {la:.1f}] round {rnd} {name:>6}: "
                    f"idle {idle:5.1f}% | {ab.orders} orders x{ab.concurrency} in {wall:.1f} s: exec {per:.2f} ms CPU/order"
                    f" (less idle {net:.2f}) | FILLED seen p50/p90 {lat[len(lat) // 2]:.1f}/{lat[int(len(lat) * 0.9)]:.1f} ms"
                    f" | idle PG xact/s {(k1[0] - k0[0]) / idle_wall:.1f} redis cmd/s {(k1[1] - k0[1]) / idle_wall:.0f}"
                    f" | per order PG xact {(k2[0] - k1[0]) / ab.orders:.2f} redis cmd {(k2[1] - k1[1]) / ab.orders:.1f}",
                    flush=True,
                )
                bench.stop([ex])
    finally:
        bench.close()


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
