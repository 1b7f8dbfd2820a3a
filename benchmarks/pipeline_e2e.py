"""End-to-end order pipeline benchmark (issue #16): TradeBridge measured as ratios against floors measured in
the same run, on the same machine, by the same load generator; prints every floor, figure, ratio and verdict.

    .venv/bin/python benchmarks/pipeline_e2e.py                       # the official run: a quiet machine
    .venv/bin/python benchmarks/pipeline_e2e.py --workers 2           # two execution processes
    .venv/bin/python benchmarks/pipeline_e2e.py --profile /tmp/prof   # + py-spy of every process at 0.2x
    .venv/bin/python benchmarks/pipeline_e2e.py --only floors --skip-bare   # the durable floor alone (R)
    .venv/bin/python benchmarks/pipeline_e2e.py --floor-steps 20,40 --fractions 0.2,0.4 \\
        --gateway-fractions 0.7 --duration 2 --step-duration 2 --users 8 --connections 8   # smoke run

Floors (each one uvicorn worker, `_e2e_floors.py`), ladders of fixed rates (`--floor-steps`):
- bare: FastAPI + `shared.schemas.orders.OrderIn` + one XADD;
- durable: the same + HS256 bearer-token verification as the gateway does it + ONE asyncpg statement, its own
  synchronous-commit transaction (order row, reservation only if the free balance covers it, outbox row) +
  one XADD. Its sustained rate R (the highest step with 0 errors, ack p99 <= 50 ms and no growing lag) is the
  reference every TradeBridge rate is a fraction of; its app CPU per order (and its PostgreSQL backends' CPU
  per order) is measured again at 0.2 R for the CPU target.
- pipeline: the durable floor + a fill floor (the commands read in batches, each batch filled at a fixed price in
  ONE synchronous-commit statement: status, balances, a fill row and an outbox row per order; its ORDER_UPDATEs
  published and the commands acked in one Redis round trip) + a fan-out floor (FastAPI WebSockets, one reader
  of the event stream), measured like TradeBridge: at 0.2 R and up the `--fractions` ladder, with the FILLED
  event over the WebSocket. What the durable hops of an order cost on this stack with no product around them;
  the summary sets each TradeBridge process beside its counterpart (gateway/durable, execution/fill,
  events/fan-out; the price feed has none), with CPU, read+write system calls and wake-ups per order.

TradeBridge, distributed: a fresh database `tb_bench_<random>` (migrated, dropped at the end), a private
redis-server, `tradebridge gateway`, `execution` (x `--workers`), `events`, `pricefeed` (synthetic prices,
market maker on). Then embedded: `tradebridge up` (SQLite file, in-process bus), measured the same way.

Targets (issue #16), each printed as figure, ratio and PASS/MISS:
1. latency-bounded throughput end to end (highest rate of the ladder 0.2 R, `--fractions` x R with 0 errors,
   every accepted order FILLED, ack p99 <= 50 ms, FILLED-event p99 <= 100 ms) >= 0.4 R;
2. at 0.2 R: ack p99 <= 25 ms and FILLED-event p99 <= 50 ms;
3. at 0.2 R: CPU per order of all TradeBridge processes together <= 4x the durable floor's app CPU per order
   (per process too: gateway, execution, events, pricefeed, from /proc/<pid>/stat);
4. gateway placement alone (every execution process stopped; `--gateway-fractions` x R, the floor's
   criterion) >= 0.7 R;
5. the embedded default: the same figures, and its latency-bounded throughput >= the distributed one's.

Load: small paper MARKET orders (0.0001 BTCUSDT, BUY/SELL alternating per user) from many users over
keep-alive HTTP connections, offered open loop by `_e2e_load.py` processes on a fixed schedule; latencies
from each order's due time (no coordinated omission). Each TradeBridge user also holds a WebSocket to the
events service: the FILLED latency is due time -> the order's final ORDER_UPDATE arriving there. CPU per
order is a process's CPU seconds from a stage's start until its last answer (TradeBridge: its last FILLED
event) divided by the orders accepted, so a process's idle work (price feed, market maker) is in it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing as mp
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, cast

from _e2e_floors import APP_NAME, create_fill_group, mint_users, prepare_database
from _e2e_load import Row, Stage
from _e2e_procs import (
    BENCH_SETTINGS,
    ROOT,
    Child,
    CpuMeter,
    ScratchDatabase,
    Snapshot,
    base_env,
    pg_backend_pids,
    run_migrate,
)

sys.path.insert(
    0, str(ROOT)
)  # the repository's test helpers: one implementation, shared with the crash tests
from shared.streams import paper_stream
from tests.support.procs import RedisServer, free_port

SYMBOL = "BTCUSDT"
QUANTITY = "0.0001"  # ~6.5 USDT at the synthetic start price, above the 5 USDT minimum notional
PASSWORD = "correct horse battery"
PROJECT_DIRS = ("gateway/", "execution/", "shared/", "events/", "pricefeed/", "tradebridge/")
KEK = "xtCsEvHZO0Q8YTb6m0ZQ3z0s2m1w4dTqkq1xC0i4W5s="
FLOORS_SCRIPT = Path(__file__).resolve().with_name("_e2e_floors.py")

# Issue #16's targets.
SUSTAINED_ACK_P99_MS = 50.0  # a floor's (and the gateway alone's) rate counts when ack p99 stays under this
E2E_ACK_P99_MS = 50.0
E2E_FILL_P99_MS = 100.0
E2E_MIN_RATIO = 0.4
LOW_FRACTION = 0.2
LOW_ACK_P99_MS = 25.0
LOW_FILL_P99_MS = 50.0
CPU_MAX_RATIO = 4.0
GATEWAY_MIN_RATIO = 0.7
TRADEBRIDGE = ("gateway", "execution", "events", "pricefeed")
PIPELINE_FLOOR = ("durable", "fill", "fanout")  # the pipeline floor's processes, TradeBridge's counterparts
COUNTERPART = {"gateway": "durable", "execution": "fill", "events": "fanout"}  # pricefeed has none


# ---------------------------------------------------------------------------------------------- statistics


def tail_of(per_order: Sequence[Sequence[float]], names: Sequence[str]) -> dict[str, float]:
    """Where the slowest 1% of orders (their hops' sum at or above its p99) spent their time: each hop's mean
    over them, beside the same hops' p99 (which may come from different orders), so a tail can be put on
    the hop that made it."""
    if not per_order:
        return {}
    cut = q([sum(d) for d in per_order], 0.99)
    slow = [d for d in per_order if sum(d) >= cut]
    return {"orders": len(slow)} | {k: sum(d[i] for d in slow) / len(slow) for i, k in enumerate(names)}


def q(values: Sequence[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, max(0, round(p * (len(s) - 1))))]


def analyse(rows: list[Row], stage: Stage) -> dict[str, Any]:
    rows = sorted(rows, key=lambda r: r[1])
    ok = [r for r in rows if 200 <= r[4] < 300]
    codes = Counter(r[4] for r in rows if not 200 <= r[4] < 300)
    ack = [(r[3] - r[1]) * 1000 for r in ok]
    send_lag = [(r[2] - r[1]) * 1000 for r in rows]
    out: dict[str, Any] = {
        "rate": stage.rate,
        "duration": stage.duration,
        "n": len(rows),
        "ok": len(ok),
        "errors": sum(codes.values()),
        "codes": dict(codes),
        "ack_p50": q(ack, 0.5),
        "ack_p99": q(ack, 0.99),
        "ack_max": max(ack, default=float("nan")),
        "send_lag_p99": q(send_lag, 0.99),
        "acks_per_s": len(ok) / max(max((r[3] for r in ok), default=stage.t0) - stage.t0, 1e-9),
    }
    quarter = max(1, len(ack) // 4)
    out["ack_growing"] = q(ack[-quarter:], 0.5) > 2 * q(ack[:quarter], 0.5) + 10
    if stage.want_fills:
        finals = Counter(r[7] or "missing" for r in ok)
        fill = [(r[6] - r[1]) * 1000 for r in ok if r[7] == "FILLED"]
        fin_rows = [r for r in ok if r[7]]
        lat_all = [(r[6] - r[1]) * 1000 for r in fin_rows]
        fq = max(1, len(lat_all) // 4)
        out.update(
            finals=dict(finals),
            missing=finals.get("missing", 0),
            not_filled=len(ok) - finals.get("FILLED", 0),
            fill_p50=q(fill, 0.5),
            fill_p99=q(fill, 0.99),
            fill_max=max(fill, default=float("nan")),
            fill_growing=q(lat_all[-fq:], 0.5) > 2 * q(lat_all[:fq], 0.5) + 10,
            fills_per_s=len(fin_rows) / max(max((r[6] for r in fin_rows), default=stage.t0) - stage.t0, 1e-9),
        )
    return out


def sustained(r: dict[str, Any], ack_ms: float = SUSTAINED_ACK_P99_MS) -> bool:
    """Every order answered 2xx, ack p99 within the bound, and the lag did not grow through the stage."""
    return r["n"] > 0 and r["errors"] == 0 and not r["ack_growing"] and r["ack_p99"] <= ack_ms


def e2e_bounded(r: dict[str, Any], ack_ms: float = E2E_ACK_P99_MS, fill_ms: float = E2E_FILL_P99_MS) -> bool:
    """`sustained` with its bound, and every accepted order FILLED with the FILLED-event p99 within its bound."""
    return (
        sustained(r, ack_ms) and r["not_filled"] == 0 and not r["fill_growing"] and r["fill_p99"] <= fill_ms
    )


def best(stages: list[dict[str, Any]]) -> float:
    """The highest rate of a ladder (stopped at its first miss) that met its criterion; 0 if none did."""
    rate = 0.0
    for r in stages:
        if not r["met"]:
            break
        rate = r["rate"]
    return rate


def cpu_ms(r: dict[str, Any], groups: Sequence[str]) -> float:
    """CPU milliseconds per accepted order of these process groups together during the stage."""
    if not r["ok"]:
        return float("nan")
    return 1000 * sum(float(r["cpu_s"].get(g, 0.0)) for g in groups) / int(r["ok"])


def partitioned_execution() -> bool:
    """Whether the execution service takes a partition of the books (issue #16's design change): then
    `--workers N` runs N partitions, each process taking its own (and any left free by a dead one)."""
    from shared.settings import Settings

    return "execution_partitions" in Settings.model_fields


def worker_env(env: dict[str, str], k: int, n: int) -> dict[str, str]:
    """The environment of execution worker k of n: its partition once the service has them (see above)."""
    if n > 1 and partitioned_execution():
        return {**env, "EXECUTION_PARTITIONS": str(n), "EXECUTION_PARTITION": str(k)}
    return env


# ---------------------------------------------------------------------------------------------- orchestration


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="tb_bench_"))
        self.db = ScratchDatabase(args.admin_dsn)
        self.redis = RedisServer(self.tmp)
        self.jwt_secret = "bench-secret-" + secrets.token_hex(24)
        self.redis_prefix = f"tbbench:{secrets.token_hex(3)}:"
        self.running: list[Child] = []  # a death of any of these fails the stage
        self.groups: dict[str, list[Child]] = {}  # what the CPU meter reads, by name
        self.pg: Callable[[], list[int]] | None = None  # the PostgreSQL backends of the stack under test
        self.uses_redis = True  # whether the private Redis is part of the stack under test
        self.loadgens: list[tuple[Any, Any]] = []
        self.db_created = False

    @property
    def dsn(self) -> str:
        return self.db.url.replace("+asyncpg", "")

    def env(self) -> dict[str, str]:
        env = base_env()
        env.update(
            DATABASE_URL=self.db.url,
            REDIS_URL=self.redis.url,
            REDIS_PREFIX=self.redis_prefix,
            JWT_SECRET=self.jwt_secret,
            KEY_ENCRYPTION_KEYS=KEK,
            **BENCH_SETTINGS,
            SECRETS_FILE=str(self.tmp / "secrets.json"),
        )
        return env

    # -- processes ----------------------------------------------------------------------------------------

    def start_base(self) -> None:
        self.redis.start()
        self.db.create()
        self.db_created = True

    def start(self, children: list[Child], http: list[Child]) -> None:
        for c in children:
            c.start()
            self.running.append(c)
        for c in http:
            c.wait_http()

    def stop(self, children: list[Child]) -> None:
        for c in children:
            if c in self.running:
                self.running.remove(c)
            c.stop()

    def check_alive(self) -> None:
        for c in self.running:
            if not c.alive():
                raise RuntimeError(f"{c.name} died:\n{c.tail()}")

    def start_loadgens(self, users: list[dict[str, str]], ws_url: str | None) -> None:
        import _e2e_load

        self.stop_loadgens()
        ctx = mp.get_context("spawn")
        p = self.args.loadgen_procs
        for k in range(p):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_e2e_load.main,
                args=(child, users[k::p], ws_url, k, p, max(1, self.args.connections // p)),
                daemon=True,
            )
            proc.start()
            self.loadgens.append((proc, parent))
        for _proc, conn in self.loadgens:
            if not conn.poll(60):
                raise RuntimeError("load generator did not connect its WebSockets in time")
            conn.recv()

    def stop_loadgens(self) -> None:
        for _, conn in self.loadgens:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for proc, _ in self.loadgens:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
        self.loadgens = []

    async def prepare_users(self, base: str, n: int) -> list[dict[str, str]]:
        """Registered, logged-in users of the stack at `base`, each with one order behind them (the first use
        funds the paper account: that one-off write stays out of the measured stages)."""
        import httpx

        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as c:
            deadline = time.monotonic() + 60
            while True:  # the market maker quotes once the first ticker reached the worker
                r = await c.get(f"/api/markets/{SYMBOL}/depth")
                if r.status_code == 200 and r.json().get("asks") and r.json().get("bids"):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no paper book for {SYMBOL}: {r.status_code} {r.text[:300]}")
                await asyncio.sleep(0.2)
            sem = asyncio.Semaphore(16)

            async def one(i: int) -> dict[str, str]:
                email = f"bench{i}@example.com"
                async with sem:
                    for attempt in range(5):  # PostgreSQL may be shared and briefly out of connections
                        r = await c.post("/auth/register", json={"email": email, "password": PASSWORD})
                        if r.status_code == 201 or (r.status_code == 409 and attempt) or r.status_code < 500:
                            break
                        await asyncio.sleep(1)
                    assert r.status_code in (201, 409), r.text
                    r = await c.post("/auth/login", json={"email": email, "password": PASSWORD})
                    assert r.status_code == 200, r.text
                    token = r.json()["access_token"]
                    r = await c.post(
                        "/api/orders",
                        json={"symbol": SYMBOL, "side": "BUY", "type": "MARKET", "quantity": QUANTITY},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    assert r.status_code == 202, r.text
                    return {"email": email, "token": token}

            return list(await asyncio.gather(*(one(i) for i in range(n))))

    # -- stages -------------------------------------------------------------------------------------------

    def meter(self) -> CpuMeter:
        pids = {name: [c.pid for c in cs if c.alive()] for name, cs in self.groups.items()}
        pids["loadgen"] = [proc.pid for proc, _ in self.loadgens]
        if self.uses_redis and self.redis.proc is not None:
            pids["redis"] = [self.redis.proc.pid]
        return CpuMeter(pids, {"pg": self.pg} if self.pg else None)

    def run_stage(
        self, target: str, url: str, rate: float, duration: float, *, fills: bool
    ) -> dict[str, Any]:
        t0 = time.monotonic() + 0.3
        stage = Stage(
            url=url,
            rate=rate,
            duration=duration,
            t0=t0,
            drain_s=self.args.drain,
            want_fills=fills,
            symbol=SYMBOL,
            quantity=QUANTITY,
            sides=self.args.sides,
        )
        meter = self.meter()
        before: Snapshot = meter.snapshot()
        for _, conn in self.loadgens:
            conn.send(("stage", stage))
        rows: list[Row] = []
        last_check = 0.0
        for _, conn in self.loadgens:
            while not conn.poll(0.02):  # finely: the CPU window closes when the last answer is in
                if time.monotonic() - last_check > 1:
                    self.check_alive()
                    last_check = time.monotonic()
            rows.extend(conn.recv()[1])
        after = meter.snapshot()
        res = analyse(rows, stage)
        res["cpu_s"] = CpuMeter.seconds(before, after)
        res["io"] = CpuMeter.wakeups(before, after)
        res["cpu"] = CpuMeter.percent(before, after)
        res["target"] = target
        res["_rows"] = rows
        return res

    def ladder(
        self,
        target: str,
        url: str,
        rates: Sequence[float],
        *,
        fills: bool,
        met: Callable[[dict[str, Any]], bool],
        after: Callable[[dict[str, Any]], None] | None = None,
    ) -> list[dict[str, Any]]:
        """Stages at rising rates until the first that misses `met` (kept: it shows how it missed)."""
        out: list[dict[str, Any]] = []
        for rate in rates:
            res = self.run_stage(target, url, rate, self.args.step_duration, fills=fills)
            res["met"] = met(res)
            if after is not None:
                after(res)
            print_stage(res)
            out.append(res)
            if not res["met"]:
                break
        return out

    def warmup(self, target: str, url: str, rate: float, *, fills: bool) -> None:
        if self.args.warmup > 0:
            self.run_stage(target, url, rate, self.args.warmup, fills=fills)

    # -- phases -------------------------------------------------------------------------------------------

    def floors(self) -> dict[str, Any]:
        """Both floors' ladders, then the durable floor again at 0.2 R (its CPU per order at the rate the CPU
        target compares at). The floors are stopped before TradeBridge starts: nothing idle skews either."""
        args = self.args
        users = mint_users(self.jwt_secret, args.users)
        asyncio.run(prepare_database(self.dsn, [u["id"] for u in users]))
        env = {**self.env(), "FLOOR_DSN": self.dsn}
        floors = {}
        for kind in ("bare", "durable"):
            port = free_port()
            argv = [sys.executable, str(FLOORS_SCRIPT), kind, str(port)]
            floors[kind] = Child(f"{kind}-floor", argv, env, self.tmp / f"{kind}-floor.log", port)
        self.start(list(floors.values()), http=list(floors.values()))
        self.groups = {kind: [c] for kind, c in floors.items()}
        self.pg = lambda: pg_backend_pids(args.admin_dsn, self.db.name, APP_NAME)
        self.start_loadgens(users, ws_url=None)
        steps = _rates(args.floor_steps)
        out: dict[str, Any] = {}
        try:
            for kind in ("bare", "durable") if not args.skip_bare else ("durable",):
                url = f"http://127.0.0.1:{floors[kind].port}/api/orders"
                print(f"\n== {kind} floor: ladder {args.floor_steps}/s, {args.step_duration:g} s each")
                self.warmup(kind, url, steps[0], fills=False)
                out[kind] = self.ladder(kind, url, steps, fills=False, met=sustained)
                out[f"{kind}_rate"] = best(out[kind])
            ref = out["durable_rate"]
            if not ref:
                ref = steps[0]
                print(
                    f"  WARNING: the durable floor sustained none of the offered rates; {ref:,.0f}/s stands in "
                    "as R so that every stage still runs (ratios against it mean nothing: lower --floor-steps)"
                )
            out["ref"] = ref
            low = LOW_FRACTION * ref
            url = f"http://127.0.0.1:{floors['durable'].port}/api/orders"
            print(f"\n== durable floor at {LOW_FRACTION:g} R = {low:,.1f}/s for {args.duration:g} s")
            out["durable_low"] = self.run_stage("durable", url, low, args.duration, fills=False)
            out["durable_low"]["met"] = sustained(out["durable_low"])
            print_stage(out["durable_low"])
            if not args.skip_pipeline_floor:
                out.update(self.pipeline_floor(floors["durable"], users, env, ref))
        finally:
            self.stop_loadgens()
            self.stop(list(floors.values()))
            self.groups, self.pg = {}, None
        return out

    def pipeline_floor(
        self, durable: Child, users: list[dict[str, str]], env: dict[str, str], ref: float
    ) -> dict[str, Any]:
        """The durable floor + the fill floor + the fan-out floor, measured as TradeBridge is: at 0.2 R (the
        CPU per order each of its processes compares with), then the ladder of `--fractions` above it."""
        args = self.args
        asyncio.run(create_fill_group(self.redis.url))
        port = free_port()
        fill = Child("fill-floor", [sys.executable, str(FLOORS_SCRIPT), "fill"], env, self.tmp / "fill.log")
        fanout = Child(
            "fanout-floor",
            [sys.executable, str(FLOORS_SCRIPT), "fanout", str(port)],
            env,
            self.tmp / "fanout.log",
            port,
        )
        try:
            self.start([fill, fanout], http=[fanout])
            self.groups = {
                "durable": [durable],
                "fill": [fill],
                "fanout": [fanout],
            }
            self.start_loadgens(users, ws_url=f"ws://127.0.0.1:{port}/ws")
            url = f"http://127.0.0.1:{durable.port}/api/orders"
            low_rate = LOW_FRACTION * ref
            print(
                f"\n== pipeline floor (durable + fill + fan-out, one process each): {LOW_FRACTION:g} R = "
                f"{low_rate:,.1f}/s for {args.duration:g} s"
            )
            res = self.pipeline_stages("pipeline", url, ref, hops=False, idle=False)
            return {"pipeline_low": res["low"], "pipeline": res["ladder"], "pipeline_rate": res["rate"]}
        finally:
            self.stop_loadgens()
            self.stop([fill, fanout])

    def distributed(self, ref: float) -> dict[str, Any]:
        """Every service its own process on PostgreSQL and Redis: 0.2 R, the ladder, then the gateway alone."""
        args = self.args
        env = self.env()
        run_migrate(env)
        gw_port, ev_port = free_port(), free_port()
        n = args.workers
        if n > 1 and partitioned_execution():  # every process routes (gateway) or consumes by the same count
            env = {**env, "EXECUTION_PARTITIONS": str(n)}
        gateway = Child.tradebridge("gateway", env, self.tmp, gw_port)
        workers = [
            Child.tradebridge(
                "execution",
                worker_env(env, k, n),
                self.tmp,
                name="execution" if n == 1 else f"execution-{k + 1}",
            )
            for k in range(n)
        ]
        events = Child.tradebridge("events", env, self.tmp, ev_port)
        pricefeed = Child.tradebridge("pricefeed", env, self.tmp)
        everything = [gateway, *workers, events, pricefeed]
        out: dict[str, Any] = {}
        try:
            self.start(everything, http=[gateway, events])
            self.groups = {
                "gateway": [gateway],
                "execution": workers,
                "events": [events],
                "pricefeed": [pricefeed],
            }
            self.pg = lambda: pg_backend_pids(args.admin_dsn, self.db.name)
            base = f"http://127.0.0.1:{gw_port}"
            users = asyncio.run(self.prepare_users(base, args.users))
            self.start_loadgens(users, ws_url=f"ws://127.0.0.1:{ev_port}/ws")
            url = f"{base}/api/orders"
            print(
                f"\n== TradeBridge distributed (gateway, {n} execution, events, pricefeed; PostgreSQL, Redis): "
                f"{LOW_FRACTION:g} R = {LOW_FRACTION * ref:,.1f}/s for {args.duration:g} s"
            )
            if n > 1:
                print(f"  {workers_note(n)}")
            out.update(self.pipeline_stages("distributed", url, ref, hops=True))
            if args.profile is not None:
                self.profile("distributed", url, LOW_FRACTION * ref)
            self.stop(workers)
            self.groups["execution"] = []
            print(
                f"\n== gateway placement alone (execution stopped): {args.gateway_fractions} x R, "
                f"{args.step_duration:g} s each"
            )
            rates = [f * ref for f in _rates(args.gateway_fractions)]
            out["gateway"] = self.ladder("gateway", url, rates, fills=False, met=sustained)
            out["gateway_rate"] = best(out["gateway"])
        finally:
            self.stop_loadgens()
            self.stop(everything)
            self.groups, self.pg = {}, None
        return out

    def embedded(self, ref: float) -> dict[str, Any]:
        """`tradebridge up` in a folder of its own: a SQLite file and the in-process bus, one process."""
        args = self.args
        home = self.tmp / "embedded"
        home.mkdir()
        env = {k: v for k, v in self.env().items() if not k.startswith("REDIS_")}
        env["DATABASE_URL"] = f"sqlite+aiosqlite:///{home / 'tradebridge.db'}"
        env["SECRETS_FILE"] = str(home / "secrets.json")
        port = free_port()
        up = Child.tradebridge("up", env, self.tmp, port, cwd=home)
        out: dict[str, Any] = {}
        try:
            self.start([up], http=[up])
            self.groups, self.uses_redis = {"up": [up]}, False
            base = f"http://127.0.0.1:{port}"
            users = asyncio.run(self.prepare_users(base, args.users))
            self.start_loadgens(users, ws_url=f"ws://127.0.0.1:{port}/ws")
            print(
                f"\n== TradeBridge embedded (tradebridge up: SQLite, in-process bus, one process): "
                f"{LOW_FRACTION:g} R = {LOW_FRACTION * ref:,.1f}/s for {args.duration:g} s"
            )
            out.update(self.pipeline_stages("embedded", f"{base}/api/orders", ref, hops=False))
            if args.profile is not None:
                self.profile("embedded", f"{base}/api/orders", LOW_FRACTION * ref)
        finally:
            self.stop_loadgens()
            self.stop([up])
            self.groups, self.uses_redis = {}, True
        return out

    def pipeline_stages(
        self, target: str, url: str, ref: float, *, hops: bool, idle: bool = True
    ) -> dict[str, Any]:
        """Targets 1-3 of one layout (or the pipeline floor's figures): the stage at 0.2 R, then the ladder of
        `--fractions` above it; `hops`: where each order's time went (TradeBridge distributed); `idle`: each
        process's CPU with no orders first (the floor has no work that follows prices)."""
        args = self.args

        def settle(res: dict[str, Any]) -> None:
            if hops:
                res["backlog"] = asyncio.run(self.backlog())

        low_rate = LOW_FRACTION * ref
        self.warmup(target, url, low_rate, fills=True)
        if hops:
            asyncio.run(self.backlog())
        idle_cpu = self.idle(target, low_rate) if idle else {}
        low = self.run_stage(target, url, low_rate, args.duration, fills=True)
        low["met"] = e2e_bounded(low)
        if hops:
            low["hops"], low["tails"] = asyncio.run(self.hops(low["_rows"]))
            settle(low)
        print_stage(low)
        ladder = [low]
        rates = [f * ref for f in _rates(args.fractions) if f > LOW_FRACTION]
        if low["met"] and rates:
            print(f"  ladder {args.fractions} x R above it, {args.step_duration:g} s each")
            ladder += self.ladder(target, url, rates, fills=True, met=e2e_bounded, after=settle)
        return {"low": low, "ladder": ladder, "rate": best(ladder), "idle": idle_cpu}

    def idle(self, target: str, low_rate: float) -> dict[str, float]:
        """Each process's CPU with no orders for `--idle` seconds (after the warm-up: the users hold positions
        and WebSockets, the feed ticks, the market maker quotes): the work that follows prices, not orders,
        which a stage's CPU per order carries as (idle % of a core x 10) / rate."""
        if self.args.idle <= 0:
            return {}
        meter = self.meter()
        before = meter.snapshot()
        time.sleep(self.args.idle)
        pct = CpuMeter.percent(before, meter.snapshot())
        shown = {k: v for k, v in sorted(pct.items(), key=lambda kv: -kv[1]) if k != "loadgen" and v >= 0.05}
        print(
            f"  {target:11} idle {self.args.idle:g} s, % of a core: "
            + " ".join(f"{k}={v:.1f}" for k, v in shown.items())
            + f" | as CPU ms/order at {low_rate:,.1f}/s: "
            + " ".join(f"{k}={10 * v / low_rate:.2f}" for k, v in shown.items() if k != "OTHER")
        )
        return pct

    # -- what the pipeline leaves behind ------------------------------------------------------------------

    async def hops(
        self, rows: list[Row]
    ) -> tuple[dict[str, tuple[float, float]], dict[str, dict[str, float]]]:
        """Where a filled order's time went, hop by hop (p50, p99 in ms), from the timestamps the pipeline
        leaves anyway: the order row's created_at (gateway, before its commit), the command's stream id
        (the relay's XADD), the FILLED order_event's ts (worker, before its commit), the FILLED
        ORDER_UPDATE's stream id (the relay's XADD) and the WebSocket arrival seen by the load process."""
        import asyncpg
        import orjson
        import redis.asyncio as aioredis

        off = time.time() - time.monotonic()  # the load processes' monotonic clock -> wall clock (seconds)
        done = {r[5]: r for r in rows if r[5] and r[7] == "FILLED"}
        if not done:
            return {}, {}
        t_from = int((min(r[1] for r in done.values()) + off - 5) * 1000)
        dsn = self.db.url.replace("+asyncpg", "")
        conn = await asyncpg.connect(dsn)
        try:
            ids = list(done)
            created = dict(await conn.fetch("SELECT id, created_at FROM orders WHERE id = ANY($1)", ids))
            filled = dict(
                await conn.fetch(
                    "SELECT order_id, max(ts) FROM order_events WHERE order_id = ANY($1) AND status = 'FILLED' "
                    "GROUP BY order_id",
                    ids,
                )
            )
        finally:
            await conn.close()
        r = aioredis.from_url(self.redis.url)
        cmd_at: dict[str, float] = {}
        evt_at: dict[str, float] = {}
        try:
            n = self.args.workers
            commands = [(self.redis_prefix + paper_stream(k, n), cmd_at) for k in range(max(n, 1))]
            for stream, into in (*commands, (self.redis_prefix + "events.private", evt_at)):
                start = f"{t_from}-0"
                while True:
                    batch = cast(
                        list[tuple[bytes, dict[bytes, bytes]]], await r.xrange(stream, min=start, count=5000)
                    )
                    if not batch:
                        break
                    for sid, fields in batch:
                        d = orjson.loads(fields[b"d"])
                        ms = int(sid.split(b"-")[0]) / 1000
                        if into is cmd_at and d.get("kind") == "place":
                            into.setdefault(str(d.get("order_id")), ms)
                        elif (
                            d.get("type") == "ORDER_UPDATE"
                            and (d.get("data") or {}).get("status") == "FILLED"
                        ):
                            into.setdefault(str(d["data"]["order_id"]), ms)
                    start = "(" + batch[-1][0].decode()
        finally:
            await r.aclose()
        segs: dict[str, list[float]] = {
            k: []
            for k in ("due->gateway", "gateway->command", "command->worker", "worker->event", "event->ws")
        }
        per_order: list[list[float]] = []
        for oid, row in done.items():
            pts = [
                row[1] + off,
                created[oid].timestamp() if oid in created else None,
                cmd_at.get(oid),
                filled[oid].timestamp() if oid in filled else None,
                evt_at.get(oid),
                row[6] + off,
            ]
            if any(p is None for p in pts):
                continue
            durations = [(b - a) * 1000 for a, b in itertools.pairwise(pts)]  # type: ignore[operator]
            per_order.append(durations)
            for vals, d in zip(segs.values(), durations, strict=True):
                vals.append(d)
        acks = [
            [
                (row[2] - row[1]) * 1000,
                (created[oid].timestamp() - off - row[2]) * 1000,
                (row[3] - row[2]) * 1000,
            ]
            for oid, row in done.items()
            if oid in created
        ]
        out = {k: (q(v, 0.5), q(v, 0.99)) for k, v in segs.items() if v}
        tails = {
            "FILLED": tail_of(per_order, list(segs)),
            "ack": tail_of(acks, ["due->sent", "sent->gateway", "gateway->ack"]),
        }
        return out, tails

    async def backlog(self, settle_s: float = 30.0) -> dict[str, int]:
        """Wait (bounded) for the pipeline to go idle; report what was still queued when the stage's drain ended."""
        import asyncpg

        dsn = self.db.url.replace("+asyncpg", "")
        conn = await asyncpg.connect(dsn)
        try:
            first: dict[str, int] | None = None
            deadline = time.monotonic() + settle_s
            while True:
                outbox = await conn.fetchval("SELECT count(*) FROM outbox")
                pending = await conn.fetchval("SELECT count(*) FROM orders WHERE status = 'PENDING'")
                now = {"outbox": int(outbox), "pending_orders": int(pending)}
                first = first or now
                if (outbox == 0 and pending == 0) or time.monotonic() > deadline:
                    return {**first, "settle_ms": int((settle_s - (deadline - time.monotonic())) * 1000)}
                await asyncio.sleep(0.1)
        finally:
            await conn.close()

    # -- profile ------------------------------------------------------------------------------------------

    def profile(self, target: str, url: str, rate: float) -> None:
        """A stage at `rate` with py-spy sampling every process of the stack (raw stacks in --profile)."""
        outdir: Path = self.args.profile
        outdir.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).with_name("py-spy")
        if not spy.exists():
            print("  py-spy is not installed (it is in the dev extras: pip install -e '.[dev]'); no profile")
            return
        duration = max(self.args.duration, 2.0)
        procs = []
        for children in self.groups.values():
            for c in children:
                if not c.alive():
                    continue
                out = outdir / f"{target}-{c.name}.txt"
                argv = [str(spy), "record", "--pid", str(c.pid), "--duration", str(int(duration) + 2)]
                argv += ["--rate", "100", "--format", "raw", "--output", str(out)]
                # --native: C extensions' frames (uvloop, asyncpg, httptools) by name; it pauses the process to
                # read them, so it is slower than the default (which reads without stopping the process)
                argv.append("--native" if self.args.profile_native else "--nonblocking")
                procs.append(
                    (c.name, out, subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))
                )
        # perf (where installed): each process's CPU by what ran it (the interpreter, the kernel, C extensions),
        # which py-spy cannot tell apart from waiting in the event loop
        perf = shutil.which("perf")
        perfs = []
        for children in self.groups.values() if perf else ():
            for c in children:
                if c.alive():
                    data = outdir / f"{target}-{c.name}.perf"
                    argv = [str(perf), "record", "-q", "-e", "cpu-clock", "-F", "499", "-p", str(c.pid)]
                    argv += ["-o", str(data), "--", "sleep", str(int(duration) + 2)]
                    perfs.append(
                        (
                            c.name,
                            data,
                            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
                        )
                    )
        time.sleep(1.0)  # py-spy attaches
        print(f"\n== {target}: profile at {rate:,.1f}/s (py-spy raw stacks in {outdir})")
        res = self.run_stage(target, url, rate, duration, fills=True)
        print_stage(res, note="(under py-spy)")
        for name, out, p in procs:
            _, err = p.communicate(timeout=60 + duration)
            if p.returncode != 0 or not out.exists():
                print(f"  py-spy on {name} failed: {err.decode()[-500:]}")
                continue
            print_profile(f"{target} {name}", out, self.args.profile_top)
        for name, data, p in perfs:
            _, err = p.communicate(timeout=60 + duration)
            split = perf_split(data) if p.returncode == 0 and data.exists() else None
            print(f"  perf {target} {name}: " + (split or f"failed: {err.decode()[-300:]}"))

    # -- tear-down ----------------------------------------------------------------------------------------

    def close(self) -> None:
        self.stop_loadgens()
        self.stop(list(self.running))
        if self.db_created:
            try:
                self.db.drop()
            except Exception as exc:  # report, then go on cleaning up
                print(f"could not drop {self.db.name}: {exc}")
        self.redis.stop()


# ---------------------------------------------------------------------------------------------- printing


def fmt(v: float, unit: str = "ms") -> str:
    if v != v:  # NaN
        return "-"
    return f"{v:,.1f} {unit}" if v < 100 else f"{v:,.0f} {unit}"


def print_stage(r: dict[str, Any], note: str = "") -> None:
    line = (
        f"  {r['target']:11} {r['rate']:>8,.1f}/s n={r['n']:<6} err={r['errors']:<4} "
        f"ack p50 {fmt(r['ack_p50']):>9} p99 {fmt(r['ack_p99']):>9}"
    )
    if "fill_p50" in r:
        others = {k: v for k, v in r["finals"].items() if k != "FILLED"}
        line += f" | FILLED p50 {fmt(r['fill_p50']):>9} p99 {fmt(r['fill_p99']):>9} {others or ''}"
        if r["fill_growing"]:
            line += " lag growing"
    if "met" in r:
        line += f"  {'met' if r['met'] else 'MISSED'}"
    print(f"{line} {note}".rstrip())
    ms = [
        (k, 1000 * v / r["ok"])
        for k, v in sorted(r["cpu_s"].items(), key=lambda kv: -kv[1])
        if r["ok"] and 1000 * v / r["ok"] >= 0.05
    ]
    extra = f"      gen send-lag p99 {fmt(r['send_lag_p99'])}; CPU ms/order " + " ".join(
        f"{k}={v:.2f}" for k, v in ms
    )
    if r.get("codes"):
        extra += f"; error codes {r['codes']}"
    if "backlog" in r:
        extra += f"; backlog after drain {r['backlog']}"
    print(extra, flush=True)
    if r.get("hops"):
        hops = ", ".join(f"{k} {a:.1f}/{b:.1f}" for k, (a, b) in r["hops"].items())
        print(f"      hops p50/p99 ms: {hops}")
    for what, tail in r.get("tails", {}).items():
        if tail:
            means = {k: v for k, v in tail.items() if k != "orders"}
            print(
                f"      the slowest 1% by {what} ({tail['orders']:.0f} orders, >= its p99), mean ms per hop: "
                + ", ".join(f"{k} {v:.1f}" for k, v in means.items())
            )


def workers_note(n: int) -> str:
    if partitioned_execution():
        return (
            f"{n} execution workers (processes), one paper partition each (EXECUTION_PARTITIONS={n}, "
            "EXECUTION_PARTITION=k). "
            f"The load is one symbol ({SYMBOL}), so one partition's process matches every order while the others "
            "stand by: on this 2-core machine the figures show the cost of partitioning (more processes and "
            "ticker readers, one lease per partition), not a speed-up"
        )
    return (
        f"{n} execution workers, but execution is not partitioned yet: the extra workers compete for the one "
        "paper lease, so the figures show the cost of that (not a partitioned layout)"
    )


# perf's DSOs, named by what runs in them
_DSO_KINDS = (
    ("libpython", "Python interpreter"),
    ("[kernel", "kernel"),
    ("libc.so", "libc"),
    ("loop.", "uvloop"),
    ("protocol.", "asyncpg"),
    ("pgproto.", "asyncpg"),
    ("record.", "asyncpg"),
    ("_pydantic_core", "pydantic-core"),
    ("orjson", "orjson"),
    ("hiredis", "hiredis"),
    ("parser.", "httptools"),
    ("_mypyc", "compiled paper modules"),
    ("_decimal", "decimal"),
)


def perf_split(data: Path) -> str | None:
    """A process's CPU by DSO kind (``perf report --sort dso``), the largest first, e.g. "Python interpreter 74%,
    kernel 12%, ..."."""
    try:
        out = subprocess.run(
            ["perf", "report", "-i", str(data), "--no-children", "--sort", "dso", "--stdio"],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    shares: dict[str, float] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].endswith("%") and not line.startswith("#"):
            dso = parts[1]
            kind = next((k for pat, k in _DSO_KINDS if pat in dso), "other")
            shares[kind] = shares.get(kind, 0.0) + float(parts[0].rstrip("%"))
    if not shares:
        return None
    return ", ".join(f"{k} {v:.0f}%" for k, v in sorted(shares.items(), key=lambda kv: -kv[1]) if v >= 0.5)


def print_profile(name: str, path: Path, top: int) -> None:
    """Self time per frame and inclusive time per project function, from py-spy's collapsed stacks."""
    self_t: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    root = str(ROOT) + "/"
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        count = int(n)
        total += count
        frames = stack.split(";")
        self_t[_short(frames[-1], root)] += count
        seen = set()
        for f in frames:
            s = _short(f, root)
            if s.split("(", 1)[-1].startswith(PROJECT_DIRS) and s not in seen:
                seen.add(s)
                incl[s] += count
    print(f"\n  py-spy {name}: {total} samples")
    print("    self time:")
    for f, c in self_t.most_common(top):
        print(f"      {100 * c / max(total, 1):5.1f}%  {f}")
    print("    inclusive, project code:")
    for f, c in incl.most_common(top):
        print(f"      {100 * c / max(total, 1):5.1f}%  {f}")


def _short(frame: str, root: str) -> str:
    frame = frame.replace(root, "")
    for marker in ("site-packages/", "lib/python3.11/"):
        if marker in frame:
            head, _, tail = frame.partition("(")
            frame = f"{head}({tail.split(marker, 1)[-1]}"
    return frame


def top_stage(stages: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The stage of a ladder's figure: its highest rate that met the criterion."""
    met = None
    for r in stages:
        if not r["met"]:
            break
        met = r
    return met


def summary(floors: dict[str, Any], dist: dict[str, Any], emb: dict[str, Any] | None) -> dict[str, Any]:
    """Prints every floor, figure, ratio and verdict; returns them (for --json)."""
    ref = floors["ref"]
    real = bool(floors["durable_rate"])  # False: R is a stand-in and every ratio against it is meaningless
    verdict = {True: "PASS", False: "MISS"}

    def vs_ref(rate: float, minimum: float) -> tuple[str, str]:
        if not real:
            return "n/a", "n/a"
        return f"{rate / ref:.2f} R", verdict[rate >= minimum * ref]

    out: dict[str, Any] = {"R": ref if real else None, "floors": [], "targets": []}
    print(
        "\n== summary (R = the durable floor's sustained rate; latencies from each order's due time; 2 cores "
        "shared by every process, load generator included)"
    )
    print(f"  {'floor':48} {'sustained':>11} {'ack p99':>10} {'app CPU/order':>14} {'PG CPU/order':>13}")
    low_f = floors["durable_low"]
    floor_rows: list[tuple[str, str, float, dict[str, Any] | None]] = []
    if "bare" in floors:
        floor_rows.append(
            ("bare (FastAPI + OrderIn + one XADD)", "bare", floors["bare_rate"], top_stage(floors["bare"]))
        )

    def ladder_and_low(label: str, kind: str, low_stage: dict[str, Any]) -> None:
        """A floor's two rows: its ladder's figure, then its stage at 0.2 R."""
        floor_rows.append((label, kind, floors[f"{kind}_rate"], top_stage(floors[kind])))
        low_label = f"{kind} at {LOW_FRACTION:g} R ({low_stage['rate']:,.1f}/s)"
        floor_rows.append((low_label, kind, float("nan"), low_stage))

    ladder_and_low("durable = R (+ JWT, 1 PG statement, XADD)", "durable", low_f)
    if "pipeline_low" in floors:
        ladder_and_low("pipeline (durable + fill + fan-out), end to end", "pipeline", floors["pipeline_low"])
    for name, kind, rate, st in floor_rows:
        groups = list(PIPELINE_FLOOR) if kind == "pipeline" else [kind]
        app = cpu_ms(st, groups) if st else float("nan")
        pg = cpu_ms(st, ["pg"]) if st and kind != "bare" else float("nan")
        ack = st["ack_p99"] if st else float("nan")
        sus = "-" if rate != rate else f"{rate:,.0f}/s"
        print(f"  {name:48} {sus:>11} {fmt(ack):>10} {fmt(app):>14} {fmt(pg):>13}")
        out["floors"].append(
            {"floor": name, "sustained": rate, "ack_p99": ack, "app_cpu_ms": app, "pg_cpu_ms": pg}
        )

    rows: list[tuple[str, str, str, str, str, str]] = []
    low = dist["low"]
    floor_cpu = cpu_ms(low_f, ["durable"])
    tb_cpu = cpu_ms(low, TRADEBRIDGE)
    r1 = vs_ref(dist["rate"], E2E_MIN_RATIO)
    rows.append(
        (
            "1",
            "latency-bounded throughput end to end",
            f">= {E2E_MIN_RATIO:.2f} R",
            f"{dist['rate']:,.0f}/s",
            *r1,
        )
    )
    rows.append(
        (
            "2",
            f"ack p99 at {LOW_FRACTION:g} R ({low['rate']:,.1f}/s)",
            f"<= {LOW_ACK_P99_MS:g} ms",
            fmt(low["ack_p99"]),
            "",
            verdict[sustained(low, LOW_ACK_P99_MS)],
        )
    )
    rows.append(
        (
            "2",
            f"FILLED-event p99 at {LOW_FRACTION:g} R",
            f"<= {LOW_FILL_P99_MS:g} ms",
            fmt(low["fill_p99"]),
            "",
            verdict[low["not_filled"] == 0 and low["fill_p99"] <= LOW_FILL_P99_MS],
        )
    )
    cpu_ratio = tb_cpu / floor_cpu if floor_cpu == floor_cpu and floor_cpu > 0 else float("nan")
    rows.append(
        (
            "3",
            f"CPU/order, all TradeBridge processes, {LOW_FRACTION:g} R",
            f"<= {CPU_MAX_RATIO:g}x floor app",
            fmt(tb_cpu),
            f"{cpu_ratio:.2f}x",
            verdict[cpu_ratio <= CPU_MAX_RATIO] if real else "n/a",
        )
    )
    r4 = vs_ref(dist["gateway_rate"], GATEWAY_MIN_RATIO)
    rows.append(
        (
            "4",
            "gateway placement alone (execution stopped)",
            f">= {GATEWAY_MIN_RATIO:.2f} R",
            f"{dist['gateway_rate']:,.0f}/s",
            *r4,
        )
    )
    if emb is not None:
        e_low = emb["low"]
        e_ratio = f"{emb['rate'] / dist['rate']:.2f}x dist" if dist["rate"] else "n/a"
        if emb["rate"] or dist["rate"]:
            # the same ladder step is a tie at the ladder's resolution: not slower
            e_ok = emb["rate"] >= dist["rate"]
        else:  # neither met its bounds at 0.2 R: the FILLED-event p99 there decides
            e_ok = e_low["not_filled"] == 0 and e_low["fill_p99"] <= low["fill_p99"]
        rows.append(
            (
                "5",
                "embedded: latency-bounded throughput end to end",
                ">= distributed",
                f"{emb['rate']:,.0f}/s",
                e_ratio,
                verdict[e_ok],
            )
        )
        rows.append(
            (
                "5",
                f"embedded: ack / FILLED p99 at {LOW_FRACTION:g} R",
                "recorded",
                f"{fmt(e_low['ack_p99'])} / {fmt(e_low['fill_p99'])}",
                "",
                "",
            )
        )
        e_cpu = cpu_ms(e_low, ["up"])
        rows.append(
            (
                "5",
                f"embedded: CPU/order at {LOW_FRACTION:g} R",
                "recorded",
                fmt(e_cpu),
                f"{e_cpu / floor_cpu:.2f}x" if floor_cpu == floor_cpu and floor_cpu > 0 else "",
                "",
            )
        )
    print(f"\n  {'#':2} {'figure':50} {'target':>20} {'measured':>16} {'ratio':>13}  verdict")
    for num, name, target, measured, ratio, v in rows:
        print(f"  {num:2} {name:50} {target:>20} {measured:>16} {ratio:>13}  {v}")
        out["targets"].append(
            {
                "target": num,
                "figure": name,
                "required": target,
                "measured": measured,
                "ratio": ratio,
                "verdict": v,
            }
        )
    per = {g: cpu_ms(low, [g]) for g in (*TRADEBRIDGE, "pg", "redis", "loadgen", "OTHER")}
    out["cpu_per_order_ms"] = per
    print(
        f"\n  CPU ms/order at {LOW_FRACTION:g} R by process (target 3): "
        + ", ".join(f"{g} {fmt(per[g], '')}".rstrip() for g in TRADEBRIDGE)
        + f"; together {fmt(tb_cpu)} vs the durable floor's app {fmt(floor_cpu)}"
        + f" | PostgreSQL backends {fmt(per['pg'])} (floor's {fmt(cpu_ms(low_f, ['pg']))}),"
        + f" redis {fmt(per['redis'])}, load generator {fmt(per['loadgen'])}, rest of the machine {fmt(per['OTHER'])}"
    )
    if "pipeline_low" in floors:
        out["pipeline_floor"] = pipeline_floor_summary(floors, low, floor_cpu)
    notes = []
    if not real:
        notes.append("the durable floor sustained none of --floor-steps: R is a stand-in, ratios are n/a")
    for label, stages in (
        ("the bare floor", floors.get("bare", [])),
        ("the durable floor", floors["durable"]),
        ("the distributed ladder", dist["ladder"]),
        ("the gateway alone", dist["gateway"]),
        ("the embedded ladder", emb["ladder"] if emb else []),
    ):
        if stages and stages[-1]["met"]:
            notes.append(f"{label} met every offered rate: its real figure may be higher (raise the ladder)")
    if dist.get("workers", 1) > 1:
        notes.append(workers_note(dist["workers"]))
    for note in notes:
        print(f"  note: {note}")
    out["notes"] = notes
    return out


def per_order_io(r: dict[str, Any], group: str) -> tuple[float, float]:
    """Read+write system calls and voluntary context switches per accepted order of one process group."""
    calls, switches = r.get("io", {}).get(group, (0, 0))
    n = max(int(r["ok"]), 1)
    return calls / n, switches / n


def _times(a: float, b: float) -> float:
    """a / b, NaN where b is no figure (a stage too short for the CPU clock's ticks reads 0)."""
    return a / b if b == b and b > 0 else float("nan")


def pipeline_floor_summary(floors: dict[str, Any], low: dict[str, Any], floor_cpu: float) -> dict[str, Any]:
    """TradeBridge's processes against their counterparts in the pipeline floor, at 0.2 R: what the durable
    hops themselves cost on this stack, and what each process adds to them."""
    p_low = floors["pipeline_low"]
    p_cpu = cpu_ms(p_low, PIPELINE_FLOOR)
    tb_cpu = cpu_ms(low, TRADEBRIDGE)
    per: dict[str, dict[str, float]] = {}
    parts = []
    io_parts = []
    for g in TRADEBRIDGE:
        mine = cpu_ms(low, [g])
        theirs = cpu_ms(p_low, [COUNTERPART[g]]) if g in COUNTERPART else 0.0
        calls, switches = per_order_io(low, g)
        f_calls, f_switches = per_order_io(p_low, COUNTERPART[g]) if g in COUNTERPART else (0.0, 0.0)
        per[g] = {
            "tradebridge_ms": mine,
            "floor_ms": theirs,
            "extra_ms": mine - theirs,
            "syscalls": calls,
            "floor_syscalls": f_calls,
            "wakeups": switches,
            "floor_wakeups": f_switches,
        }
        vs = f"{fmt(theirs, '').strip()} ({_times(mine, theirs):.1f}x)" if g in COUNTERPART else "none"
        parts.append(f"{g} {fmt(mine, '').strip()} vs {COUNTERPART.get(g, '-')} {vs}")
        io_parts.append(f"{g} {calls:.1f} / {switches:.1f} vs {f_calls:.1f} / {f_switches:.1f}")
    pg_tb, pg_floor = cpu_ms(low, ["pg"]), cpu_ms(p_low, ["pg"])
    ratio = _times(p_cpu, floor_cpu)
    print(
        f"\n  pipeline floor at {LOW_FRACTION:g} R: ack / FILLED p99 {fmt(p_low['ack_p99'])} / "
        f"{fmt(p_low['fill_p99'])}, CPU ms/order {fmt(p_cpu)} = {ratio:.2f}x the durable floor's app "
        f"(target 3 allows {CPU_MAX_RATIO:g}x); TradeBridge {fmt(tb_cpu)} = {_times(tb_cpu, p_cpu):.2f}x "
        "the pipeline floor"
        + f"\n  by process, TradeBridge vs its counterpart: {'; '.join(parts)}"
        + f"\n  PostgreSQL backends {fmt(pg_tb)} vs the pipeline floor's {fmt(pg_floor)}"
        + "\n  per order, read+write system calls / wake-ups (voluntary context switches), TradeBridge vs "
        + f"counterpart: {'; '.join(io_parts)}"
    )
    return {
        "accepted": p_low["ok"],
        "not_filled": p_low["not_filled"],
        "ack_p99": p_low["ack_p99"],
        "fill_p99": p_low["fill_p99"],
        "cpu_ms": p_cpu,
        "x_durable_app": ratio,
        "tradebridge_x_pipeline": _times(tb_cpu, p_cpu),
        "rate": floors["pipeline_rate"],
        "per_process": per,
        "pg_ms": {"tradebridge": pg_tb, "floor": pg_floor},
    }


# ---------------------------------------------------------------------------------------------- main


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--floor-steps",
        default="250,500,750,1000,1250,1500,2000,2500,3000,4000",
        help="the floors' ladder, orders/s, comma-separated (the durable floor's highest sustained step is R)",
    )
    ap.add_argument(
        "--fractions",
        default="0.2,0.3,0.4,0.5,0.6,0.7,0.8,1.0",
        help="TradeBridge's end-to-end ladder as fractions of R (0.2 is the long stage of targets 2-3)",
    )
    ap.add_argument(
        "--gateway-fractions", default="0.5,0.6,0.7,0.8,0.9,1.0,1.2", help="gateway-alone ladder, x R"
    )
    ap.add_argument("--duration", type=float, default=20, help="seconds of the 0.2 R stages (default 20)")
    ap.add_argument("--step-duration", type=float, default=8, help="seconds per ladder stage (default 8)")
    ap.add_argument("--warmup", type=float, default=3, help="seconds of load before a layout's first stage")
    ap.add_argument("--drain", type=float, default=5, help="seconds to wait for FILLED events after a stage")
    ap.add_argument("--workers", type=int, default=1, help="execution processes, one paper partition each")
    ap.add_argument("--sides", default="BUY,SELL", help="order sides cycled per user: BUY,SELL | SELL | BUY")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--connections", type=int, default=128, help="keep-alive HTTP connections in all")
    ap.add_argument("--loadgen-procs", type=int, default=1)
    ap.add_argument("--skip-bare", action="store_true", help="measure the durable floor only")
    ap.add_argument("--skip-embedded", action="store_true")
    ap.add_argument(
        "--skip-pipeline-floor",
        action="store_true",
        help="skip the pipeline floor (durable + fill + fan-out)",
    )
    ap.add_argument(
        "--ref",
        type=float,
        default=None,
        help="use this R (orders/s) instead of measuring the floors: a partial run for working on one layout, "
        "no summary (the targets are ratios to floors measured in the same run)",
    )
    ap.add_argument(
        "--only",
        choices=("floors", "distributed", "embedded"),
        default=None,
        help="measure the floors alone, or one layout (partial run)",
    )
    ap.add_argument("--profile", type=Path, default=None, help="also py-spy every process at 0.2 R into DIR")
    ap.add_argument(
        "--idle",
        type=float,
        default=10.0,
        help="seconds of no orders before a layout's 0.2 R stage: each process's idle CPU (0: skip)",
    )
    ap.add_argument(
        "--profile-native",
        action="store_true",
        help="py-spy --native: time in C extensions by their own frames, not the Python frame that called them",
    )
    ap.add_argument("--profile-top", type=int, default=15)
    ap.add_argument("--json", type=Path, default=None, help="also write the summary's figures to this file")
    ap.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args(argv)
    if args.workers < 1:
        ap.error("--workers must be at least 1")
    if not _rates(args.floor_steps):
        ap.error("--floor-steps needs at least one rate")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    started = time.monotonic()
    bench = Bench(args)
    try:
        print(f"setting up: database {bench.db.name}, private redis; logs in {bench.tmp}", flush=True)
        bench.start_base()
        if args.ref is not None or args.only is not None:
            partial(bench, args)
            return
        floors = bench.floors()
        dist = bench.distributed(floors["ref"])
        dist["workers"] = args.workers
        emb = None if args.skip_embedded else bench.embedded(floors["ref"])
        result = summary(floors, dist, emb)
        if args.json is not None:
            args.json.write_text(json.dumps(result, indent=2, default=str))
    finally:
        bench.close()
        print(f"\ntotal run time {time.monotonic() - started:.0f} s", flush=True)


def partial(bench: Bench, args: argparse.Namespace) -> None:
    """`--ref`/`--only`: the floors (unless R is given) and one layout or both, without the summary's verdicts."""
    floors = bench.floors() if args.ref is None else None
    ref = args.ref if floors is None else floors["ref"]
    result: dict[str, Any] = {"ref": ref}
    if floors is not None:
        result["floors"] = {k: v for k, v in floors.items() if k.endswith("rate") or k == "ref"}
    if args.only in (None, "distributed"):
        result["distributed"] = bench.distributed(ref)
    if args.only in (None, "embedded") and not args.skip_embedded:
        result["embedded"] = bench.embedded(ref)
    print(f"\n  partial run (R = {ref:,.0f}/s{' given' if args.ref is not None else ''}): no summary")
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2, default=str))


def _rates(csv: str) -> list[float]:
    return [float(x) for x in csv.split(",") if x.strip()]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
