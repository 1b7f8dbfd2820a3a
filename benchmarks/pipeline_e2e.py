"""End-to-end order pipeline benchmark: every service its own process on PostgreSQL and Redis; prints figures.

    .venv/bin/python benchmarks/pipeline_e2e.py                      # ~3-4 minutes with the defaults
    .venv/bin/python benchmarks/pipeline_e2e.py --rate 500 --duration 10 --steps 1000,1500 --bare-steps 2000
    .venv/bin/python benchmarks/pipeline_e2e.py --profile /tmp/prof  # + py-spy profiles of the services

What runs: a fresh database `tb_bench_<random>` (created with asyncpg, migrated with `tradebridge migrate`,
dropped at the end), a private redis-server on a free port, and `tradebridge gateway`, `execution`, `events`
and `pricefeed` as processes (synthetic prices, market maker on). Load: small paper MARKET orders
(0.0001 BTCUSDT, BUY/SELL alternating per user) from many users over keep-alive HTTP connections, offered
open loop by `_e2e_load.py` processes at a fixed schedule; latencies are measured from each order's due
time. Each user also holds a WebSocket to the events service; "fill" latency is due time -> the order's
final ORDER_UPDATE (FILLED) arriving there.

Stages: the main rate (default 1,000/s for 30 s), then a ladder of short stages (default 8 s each) to find the
highest rate sustained. A stage is sustained when: no errors (non-2xx, timeouts), every accepted order's final
ORDER_UPDATE arrived within the drain time, p99 <= 1 s, and the lag does not grow (p50 of the stage's last
quarter <= 2 x p50 of its first quarter + 10 ms). "Submission" uses the acknowledgement alone, "end to end"
the fill event. The floor of the stack: a bare FastAPI endpoint (below, served by uvicorn in its own process)
that validates the same body with `shared.schemas.orders.OrderIn` and does one XADD, at the same rates.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from _e2e_load import Row, Stage
from _e2e_procs import ROOT, Child, CpuMeter, ScratchDatabase, base_env, run_migrate

from shared.schemas.orders import OrderIn  # module level: FastAPI resolves the body annotation here

sys.path.insert(0, str(ROOT))  # the repository's test helpers: one implementation, shared with the crash tests
from tests.support.procs import RedisServer, free_port

SYMBOL = "BTCUSDT"
QUANTITY = "0.0001"  # ~6.5 USDT at the synthetic start price, above the 5 USDT minimum notional
PASSWORD = "correct horse battery"
PROJECT_DIRS = ("gateway/", "execution/", "shared/", "events/", "pricefeed/", "tradebridge/")
KEK = "xtCsEvHZO0Q8YTb6m0ZQ3z0s2m1w4dTqkq1xC0i4W5s="


# ---------------------------------------------------------------------------------------------- bare endpoint


def create_bare_app(redis_url: str, stream: str) -> Any:
    """The stack's floor: FastAPI + the same pydantic body model + one XADD, nothing else."""
    import uuid
    from contextlib import asynccontextmanager

    import orjson
    import redis.asyncio as aioredis
    from fastapi import FastAPI, status

    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        # A blocking pool like a careful service would use (redis-py 8's default pool raises past 100 conns).
        pool = aioredis.BlockingConnectionPool.from_url(redis_url, max_connections=64, timeout=10)
        state["r"] = aioredis.Redis(connection_pool=pool)
        yield
        await state["r"].aclose()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/api/orders", status_code=status.HTTP_202_ACCEPTED)
    async def place(body: OrderIn) -> dict[str, str]:
        order_id = uuid.uuid4().hex
        payload = orjson.dumps({"order_id": order_id, **body.model_dump(mode="json")})
        await state["r"].xadd(stream, {"d": payload}, maxlen=100_000, approximate=True)
        return {"order_id": order_id, "status": "PENDING"}

    return app


def serve_bare(port: int, redis_url: str, stream: str) -> None:
    import uvicorn

    config = uvicorn.Config(
        create_bare_app(redis_url, stream), host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    uvicorn.Server(config).run()


# ---------------------------------------------------------------------------------------------- statistics


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
    out["submit_ok"] = (
        out["errors"] == 0 and not out["ack_growing"] and out["ack_p99"] <= 1000 and len(rows) > 0
    )
    if stage.want_fills:
        finals = Counter(r[7] or "missing" for r in ok)
        fill = [(r[6] - r[1]) * 1000 for r in ok if r[7] == "FILLED"]
        fin_rows = [r for r in ok if r[7]]
        lat_all = [(r[6] - r[1]) * 1000 for r in fin_rows]
        fq = max(1, len(lat_all) // 4)
        out.update(
            finals=dict(finals),
            missing=finals.get("missing", 0),
            fill_p50=q(fill, 0.5),
            fill_p99=q(fill, 0.99),
            fill_max=max(fill, default=float("nan")),
            fill_growing=q(lat_all[-fq:], 0.5) > 2 * q(lat_all[:fq], 0.5) + 10,
            fills_per_s=len(fin_rows) / max(max((r[6] for r in fin_rows), default=stage.t0) - stage.t0, 1e-9),
        )
        out["e2e_ok"] = (
            out["submit_ok"] and out["missing"] == 0 and not out["fill_growing"] and out["fill_p99"] <= 1000
        )
    return out


# ---------------------------------------------------------------------------------------------- orchestration


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="tb_bench_"))
        self.db = ScratchDatabase(args.admin_dsn)
        self.redis = RedisServer(self.tmp)
        self.children: list[Child] = []
        self.gw_port = free_port()
        self.ev_port = free_port()
        self.bare_port = free_port()
        self.loadgens: list[tuple[Any, Any]] = []
        self.db_created = False

    # -- set-up -------------------------------------------------------------------------------------------

    redis_prefix = f"tbbench:{secrets.token_hex(3)}:"

    def env(self) -> dict[str, str]:
        env = base_env()
        env.update(
            DATABASE_URL=self.db.url,
            REDIS_URL=self.redis.url,
            REDIS_PREFIX=self.redis_prefix,
            JWT_SECRET="bench-secret-" + secrets.token_hex(24),
            KEY_ENCRYPTION_KEYS=KEK,
            TRADEBRIDGE_ENV="development",
            PRICEFEED_SOURCE="synthetic",
            SYMBOLS="BTCUSDT,ETHUSDT,BNBUSDT",
            PAPER_MARKET_MAKER="on",
            PAPER_STARTING_BALANCES="USDT=100000000,BTC=100000",
            ORDER_RATE_LIMIT="1000000/second",
            LOGIN_LIMIT_PER_ADDRESS="1000000/minute",
            LOGIN_LIMIT_PER_ACCOUNT="100000/minute",
            BCRYPT_ROUNDS="4",
            ACCESS_TOKEN_TTL_S="7200",
            RECONCILIATION_INTERVAL_S="0",
            LOG_LEVEL="WARNING",
            SECRETS_FILE=str(self.tmp / "secrets.json"),
        )
        return env

    def start(self) -> None:
        self.redis.start()
        self.db.create()
        self.db_created = True
        env = self.env()
        run_migrate(env)
        self.children = [
            Child.tradebridge("gateway", env, self.tmp, self.gw_port),
            Child.tradebridge("execution", env, self.tmp),
            Child.tradebridge("events", env, self.tmp, self.ev_port),
            Child.tradebridge("pricefeed", env, self.tmp),
        ]
        bare_argv = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--serve-bare",
            str(self.bare_port),
            "--redis-url",
            self.redis.url,
        ]
        self.bare = Child("bare", bare_argv, env, self.tmp / "bare.log", self.bare_port)
        for c in [*self.children, self.bare]:
            c.start()
        for c in (self.children[0], self.children[2], self.bare):
            c.wait_http()
        self.by_name = {c.name: c for c in [*self.children, self.bare]}

    async def prepare_users(self) -> list[dict[str, str]]:
        import httpx

        base = f"http://127.0.0.1:{self.gw_port}"
        limits = httpx.Limits(max_connections=20)
        async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as c:
            deadline = time.monotonic() + 60
            while True:  # the market maker quotes once the first ticker reached the worker
                r = await c.get(f"/api/markets/{SYMBOL}/depth")
                if r.status_code == 200 and r.json().get("asks") and r.json().get("bids"):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"no paper book for {SYMBOL}: {r.status_code} {r.text[:300]}\n"
                        f"{self.by_name['execution'].tail()}"
                    )
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
                    # First use funds the paper account: keep that one-off write out of the measured stages.
                    r = await c.post(
                        "/api/orders",
                        json={"symbol": SYMBOL, "side": "BUY", "type": "MARKET", "quantity": QUANTITY},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    assert r.status_code == 202, r.text
                    return {"email": email, "token": token}

            return list(await asyncio.gather(*(one(i) for i in range(self.args.users))))

    def start_loadgens(self, users: list[dict[str, str]]) -> None:
        import _e2e_load

        ctx = mp.get_context("spawn")
        p = self.args.loadgen_procs
        ws_url = f"ws://127.0.0.1:{self.ev_port}/ws"
        for k in range(p):
            parent, child = ctx.Pipe()
            proc = ctx.Process(
                target=_e2e_load.main,
                args=(child, users[k::p], ws_url, k, p, self.args.connections // p),
                daemon=True,
            )
            proc.start()
            self.loadgens.append((proc, parent))
        for _proc, conn in self.loadgens:
            if not conn.poll(60):
                raise RuntimeError("load generator did not connect its WebSockets in time")
            conn.recv()

    # -- stages -------------------------------------------------------------------------------------------

    def meter(self) -> CpuMeter:
        pids = {c.name: [c.pid] for c in [*self.children, self.bare]}
        pids["loadgen"] = [proc.pid for proc, _ in self.loadgens]
        assert self.redis.proc is not None
        pids["redis"] = [self.redis.proc.pid]
        return CpuMeter(pids)

    def run_stage(self, target: str, rate: float, duration: float) -> dict[str, Any]:
        port = self.gw_port if target == "pipeline" else self.bare_port
        t0 = time.monotonic() + 0.3
        stage = Stage(
            url=f"http://127.0.0.1:{port}/api/orders",
            rate=rate,
            duration=duration,
            t0=t0,
            drain_s=self.args.drain,
            want_fills=target == "pipeline",
            symbol=SYMBOL,
            quantity=QUANTITY,
            sides=self.args.sides,
        )
        meter = self.meter()
        before = meter.snapshot()
        for _, conn in self.loadgens:
            conn.send(("stage", stage))
        rows: list[Row] = []
        cpu_at_end: dict[str, float] = {}
        for _, conn in self.loadgens:
            while not conn.poll(1):
                if not cpu_at_end and time.monotonic() >= t0 + duration:
                    cpu_at_end = CpuMeter.percent(before, meter.snapshot())
                for c in self.children:
                    if not c.alive():
                        raise RuntimeError(f"{c.name} died:\n{c.tail()}")
            rows.extend(conn.recv()[1])
        res = analyse(rows, stage)
        res["cpu"] = cpu_at_end or CpuMeter.percent(before, meter.snapshot())
        res["target"] = target
        if target == "pipeline":
            res["backlog"] = asyncio.run(self.backlog())
            res["hops"] = asyncio.run(self.hops(rows))
        return res

    async def hops(self, rows: list[Row]) -> dict[str, tuple[float, float]]:
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
            return {}
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
            for stream, into in (
                (self.redis_prefix + "orders.commands.paper", cmd_at),
                (self.redis_prefix + "events.private", evt_at),
            ):
                start = f"{t_from}-0"
                while True:
                    batch = await r.xrange(stream, min=start, count=5000)
                    if not batch:
                        break
                    for sid, fields in batch:
                        d = orjson.loads(fields[b"d"])
                        ms = int(sid.split(b"-")[0]) / 1000
                        if into is cmd_at and d.get("kind") == "place":
                            into.setdefault(str(d.get("order_id")), ms)
                        elif d.get("type") == "ORDER_UPDATE" and (d.get("data") or {}).get("status") == "FILLED":
                            into.setdefault(str(d["data"]["order_id"]), ms)
                    start = "(" + batch[-1][0].decode()
        finally:
            await r.aclose()
        segs: dict[str, list[float]] = {
            k: [] for k in ("due->gateway", "gateway->command", "command->worker", "worker->event", "event->ws")
        }
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
            for vals, a, b in zip(segs.values(), pts, pts[1:], strict=False):
                vals.append((b - a) * 1000)  # type: ignore[operator]
        return {k: (q(v, 0.5), q(v, 0.99)) for k, v in segs.items() if v}

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

    def ladder(self, target: str, steps: list[float], duration: float, log: list[dict[str, Any]]) -> None:
        for rate in steps:
            res = self.run_stage(target, rate, duration)
            log.append(res)
            print_stage(res)
            if not res["submit_ok"]:
                break

    # -- profile ------------------------------------------------------------------------------------------

    def profile(self, outdir: Path, rate: float, duration: float) -> None:
        outdir.mkdir(parents=True, exist_ok=True)
        spy = Path(sys.executable).with_name("py-spy")
        procs = []
        for name in ("gateway", "execution", "events"):
            out = outdir / f"{name}.txt"
            procs.append(
                (
                    name,
                    out,
                    subprocess.Popen(
                        [
                            str(spy),
                            "record",
                            "--pid",
                            str(self.by_name[name].pid),
                            "--duration",
                            str(int(duration)),
                            "--rate",
                            "100",
                            "--format",
                            "raw",
                            "--nonblocking",
                            "--output",
                            str(out),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.PIPE,
                    ),
                )
            )
        time.sleep(1.0)  # py-spy attaches
        res = self.run_stage("pipeline", rate, duration - 2)
        print_stage(res, note="(under py-spy)")
        for name, out, p in procs:
            _, err = p.communicate(timeout=60)
            if p.returncode != 0 or not out.exists():
                print(f"py-spy on {name} failed: {err.decode()[-500:]}")
                continue
            print_profile(name, out, self.args.profile_top)

    # -- tear-down ----------------------------------------------------------------------------------------

    def close(self) -> None:
        for _, conn in self.loadgens:
            with contextlib.suppress(OSError):
                conn.send(("stop",))
        for proc, _ in self.loadgens:
            proc.join(10)
            if proc.is_alive():
                proc.terminate()
        for c in [*self.children, getattr(self, "bare", None)]:
            if c is not None:
                c.stop()
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
    cpu = " ".join(f"{k}={v:.0f}%" for k, v in sorted(r["cpu"].items(), key=lambda kv: -kv[1]) if v >= 1)
    line = (
        f"  {r['target']:8} {r['rate']:>6,.0f}/s n={r['n']:<6} err={r['errors']:<4} "
        f"ack p50 {fmt(r['ack_p50']):>9} p99 {fmt(r['ack_p99']):>9} acks/s {r['acks_per_s']:>7,.0f}"
    )
    if "fill_p50" in r:
        others = {k: v for k, v in r["finals"].items() if k != "FILLED"}
        line += (
            f" | fill p50 {fmt(r['fill_p50']):>9} p99 {fmt(r['fill_p99']):>9} fills/s {r['fills_per_s']:>7,.0f}"
            f" {others or ''} lag-growing={r['fill_growing']}"
        )
        line += f" e2e={'OK' if r['e2e_ok'] else 'FAIL'}"
    line += f" submit={'OK' if r['submit_ok'] else 'FAIL'} {note}"
    print(line)
    extra = f"      gen send-lag p99 {fmt(r['send_lag_p99'])}; cpu(% of one core) {cpu}"
    if r.get("codes"):
        extra += f"; error codes {r['codes']}"
    if "backlog" in r:
        extra += f"; backlog after drain {r['backlog']}"
    print(extra, flush=True)
    if r.get("hops"):
        print("      hops p50/p99 ms: " + ", ".join(f"{k} {a:.1f}/{b:.1f}" for k, (a, b) in r["hops"].items()))


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


def summary(
    main: dict[str, Any],
    bare_main: dict[str, Any] | None,
    ladder: list[dict[str, Any]],
    bare_ladder: list[dict[str, Any]],
) -> None:
    def best(rows: list[dict[str, Any]], key: str) -> float:
        rate = 0.0
        for r in rows:
            if not r.get(key):
                break
            rate = r["rate"]
        return rate

    pipe_rows = [main, *ladder]
    e2e_max = best(pipe_rows, "e2e_ok")
    sub_max = best(pipe_rows, "submit_ok")
    bare_rows = [r for r in [bare_main, *bare_ladder] if r]
    bare_max = best(bare_rows, "submit_ok")
    rate = main["rate"]
    mark = {True: "met", False: "MISSED"}
    ratio = sub_max / bare_max if bare_max else float("nan")
    top_note = " (ladder top reached: real max may be higher)"
    print("\n== summary (latencies from each order's due time; 2 cores shared by every process incl. load)")
    print(f"  {'figure':44} {'target':>12} {'pipeline':>12} {'bare':>12}  verdict")
    rows = [
        (
            f"ack p50 @ {rate:,.0f}/s",
            "",
            fmt(main["ack_p50"]),
            fmt(bare_main["ack_p50"]) if bare_main else "-",
            "",
        ),
        (
            f"ack p99 @ {rate:,.0f}/s",
            "<= 10 ms",
            fmt(main["ack_p99"]),
            fmt(bare_main["ack_p99"]) if bare_main else "-",
            mark[main["ack_p99"] <= 10],
        ),
        (f"fill event p50 @ {rate:,.0f}/s", "", fmt(main["fill_p50"]), "", ""),
        (
            f"fill event p99 @ {rate:,.0f}/s",
            "<= 15 ms",
            fmt(main["fill_p99"]),
            "",
            mark[main["fill_p99"] <= 15],
        ),
        (
            f"errors / not FILLED @ {rate:,.0f}/s",
            "0",
            f"{main['errors']} / {main['ok'] - main['finals'].get('FILLED', 0)}",
            str(bare_main["errors"]) if bare_main else "-",
            mark[main["errors"] == 0],
        ),
        ("max rate sustained end to end", ">= 2,000/s", f"{e2e_max:,.0f}/s", "", mark[e2e_max >= 2000]),
        ("max submission rate sustained", "", f"{sub_max:,.0f}/s", f"{bare_max:,.0f}/s", ""),
        ("submission vs bare endpoint", ">= 0.6x", f"{ratio:.2f}x", "1.00x", mark[ratio >= 0.6]),
    ]
    for name, target, a, b, verdict in rows:
        print(f"  {name:44} {target:>12} {a:>12} {b:>12}  {verdict}")
    if bare_rows and bare_rows[-1]["submit_ok"]:
        print(f"  note: the bare endpoint sustained every offered rate{top_note}")
    if pipe_rows[-1]["submit_ok"] and len(pipe_rows) > 1:
        print(f"  note: the pipeline sustained submission at every offered rate{top_note}")


# ---------------------------------------------------------------------------------------------- main


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=1000, help="main stage rate, orders/s (default 1000)")
    ap.add_argument("--duration", type=float, default=30, help="main stage seconds (default 30)")
    ap.add_argument("--steps", default="1500,2000,2500,3000", help="pipeline ladder rates, comma-separated")
    ap.add_argument("--step-duration", type=float, default=8, help="seconds per ladder stage (default 8)")
    ap.add_argument("--bare-duration", type=float, default=10, help="bare endpoint seconds at --rate")
    ap.add_argument("--bare-steps", default="2000,3000,4000,5000", help="bare endpoint ladder rates")
    ap.add_argument("--drain", type=float, default=5, help="seconds to wait for fill events after a stage")
    ap.add_argument("--sides", default="BUY,SELL", help="order sides cycled per user: BUY,SELL | SELL | BUY")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--connections", type=int, default=128, help="keep-alive HTTP connections in all")
    ap.add_argument("--loadgen-procs", type=int, default=1)
    ap.add_argument("--warmup", type=float, default=3, help="seconds of load at --rate before measuring")
    ap.add_argument("--skip-bare", action="store_true")
    ap.add_argument("--profile", type=Path, default=None, help="also py-spy the services into this dir")
    ap.add_argument("--profile-only", action="store_true", help="with --profile: skip the measured stages")
    ap.add_argument("--profile-top", type=int, default=15)
    ap.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    ap.add_argument("--serve-bare", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--redis-url", default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main() -> None:
    args = parse()
    if args.serve_bare is not None:
        serve_bare(args.serve_bare, args.redis_url, "bench:bare:orders")
        return
    started = time.monotonic()
    bench = Bench(args)
    try:
        print(
            f"setting up: database {bench.db.name}, private redis, gateway/execution/events/pricefeed, "
            f"bare endpoint; logs in {bench.tmp}",
            flush=True,
        )
        bench.start()
        users = asyncio.run(bench.prepare_users())
        bench.start_loadgens(users)
        print(
            f"ready in {time.monotonic() - started:.0f} s: {len(users)} users, {args.connections} keep-alive "
            f"connections, {args.loadgen_procs} load process(es); order {SYMBOL} MARKET {QUANTITY}",
            flush=True,
        )
        if not args.profile_only:
            bare_main = None
            bare_ladder: list[dict[str, Any]] = []
            if not args.skip_bare:
                print("\n== bare endpoint (FastAPI + OrderIn + one XADD): same rate, then ladder")
                bench.run_stage("bare", args.rate, 2)  # warm-up
                bare_main = bench.run_stage("bare", args.rate, args.bare_duration)
                print_stage(bare_main)
                if bare_main["submit_ok"]:
                    bench.ladder("bare", _rates(args.bare_steps), args.step_duration, bare_ladder)
            print(
                "\n== pipeline: main stage, then ladder (after the bare endpoint: a backlog cannot skew it)"
            )
            if args.warmup > 0:
                bench.run_stage("pipeline", args.rate, args.warmup)
            main_res = bench.run_stage("pipeline", args.rate, args.duration)
            print_stage(main_res)
            ladder: list[dict[str, Any]] = []
            if main_res["submit_ok"]:
                bench.ladder("pipeline", _rates(args.steps), args.step_duration, ladder)
            summary(main_res, bare_main, ladder, bare_ladder)
        if args.profile is not None:
            print(f"\n== profile at {args.rate:,.0f}/s (py-spy raw stacks in {args.profile})")
            bench.profile(args.profile, args.rate, max(args.duration, 12))
    finally:
        bench.close()
        print(f"\ntotal run time {time.monotonic() - started:.0f} s", flush=True)


def _rates(csv: str) -> list[float]:
    return [float(x) for x in csv.split(",") if x.strip()]


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
