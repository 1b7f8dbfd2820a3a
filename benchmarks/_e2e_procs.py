"""Process plumbing for `pipeline_e2e.py`: a throwaway PostgreSQL database, a private Redis server, the
TradeBridge services as child processes, and CPU accounting per process. Nothing here runs at import."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"

sys.path.insert(
    0, str(ROOT)
)  # the repository's test helpers: one implementation, shared with the crash tests
from tests.support.procs import stop_process, wait_http  # noqa: E402


class ScratchDatabase:
    """`tb_bench_<random>` created on entry and dropped (with its connections) on exit."""

    def __init__(self, admin_dsn: str = ADMIN_DSN) -> None:
        self.admin_dsn = admin_dsn
        self.name = f"tb_bench_{secrets.token_hex(4)}"

    @property
    def url(self) -> str:
        base = self.admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        return f"{base}/{self.name}"

    def create(self) -> None:
        asyncio.run(self._exec(f'CREATE DATABASE "{self.name}"'))

    def drop(self) -> None:
        asyncio.run(self._exec(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))

    async def _exec(self, sql: str) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.admin_dsn)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()


@dataclass
class Child:
    """A child process with its log file; `argv` is run from the repository root."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: Path
    port: int | None = None
    cwd: Path = ROOT
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def tradebridge(
        cls,
        command: str,
        env: dict[str, str],
        logdir: Path,
        port: int | None = None,
        *,
        name: str | None = None,
        cwd: Path = ROOT,
    ) -> Child:
        """`tradebridge COMMAND` (`name` tells several processes of one command apart)."""
        argv = [sys.executable, "-m", "tradebridge.cli", command]
        if port is not None:
            argv += ["--port", str(port)]
        name = name or command
        return cls(name, argv, env, logdir / f"{name}.log", port, cwd)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        fh = open(self.log, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(
            self.argv, env=self.env, cwd=self.cwd, stdout=fh, stderr=subprocess.STDOUT
        )
        fh.close()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def wait_http(self, path: str = "/healthz", timeout: float = 300) -> None:
        """Up to 5 minutes: on a loaded 2-core machine a process took over a minute to answer."""
        wait_http(
            self.port,
            alive=self.alive,
            describe=lambda: f"{self.name}:\n{self.tail()}",
            path=path,
            timeout=timeout,
        )


def run_migrate(env: dict[str, str]) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tradebridge.cli", "migrate"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{out.stdout}\n{out.stderr}")


def pg_backend_pids(admin_dsn: str, database: str, application_name: str | None = None) -> list[int]:
    """Server processes of one database's sessions (optionally one application's), from pg_stat_activity;
    their CPU is read from /proc like any other process's (PostgreSQL runs on this machine)."""

    async def fetch() -> list[int]:
        import asyncpg

        conn = await asyncpg.connect(admin_dsn)
        try:
            rows = await conn.fetch(
                "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid() "
                "AND ($2::text IS NULL OR application_name = $2::text)",
                database,
                application_name,
            )
            return [int(r["pid"]) for r in rows]
        finally:
            await conn.close()

    return asyncio.run(fetch())


# (when, CPU seconds per group and pid, (read + write system calls, voluntary context switches) per group and pid)
Snapshot = tuple[float, dict[str, dict[int, float]], dict[str, dict[int, tuple[int, int]]]]


class CpuMeter:
    """CPU seconds per named group of processes between two snapshots (utime+stime from /proc/<pid>/stat
    through psutil, children excluded).

    `dynamic` groups are looked up again at each snapshot (PostgreSQL backends come and go): a process that
    appears between snapshots counts its whole life (it was born in the window), one that exits between them
    loses its time, which only under-counts."""

    def __init__(
        self, pids: dict[str, list[int]], dynamic: dict[str, Callable[[], list[int]]] | None = None
    ) -> None:
        self.pids = pids
        self.dynamic = dynamic or {}

    def _groups(self) -> tuple[dict[str, dict[int, float]], dict[str, dict[int, tuple[int, int]]]]:
        cpu: dict[str, dict[int, float]] = {}
        io: dict[str, dict[int, tuple[int, int]]] = {}
        groups = {**self.pids, **{name: find() for name, find in self.dynamic.items()}}
        for name, pids in groups.items():
            cpu[name], io[name] = {}, {}
            for pid in pids:
                try:
                    proc = psutil.Process(pid)
                    t = proc.cpu_times()
                    cpu[name][pid] = t.user + t.system
                except psutil.Error:
                    continue
                try:  # another user's process (PostgreSQL's backends) may keep its I/O counters to itself
                    c = proc.io_counters()
                    io[name][pid] = (c.read_count + c.write_count, proc.num_ctx_switches().voluntary)
                except psutil.Error:
                    pass
        return cpu, io

    def snapshot(self) -> Snapshot:
        groups, io = self._groups()
        t = psutil.cpu_times()
        groups["_machine"] = {0: t.user + t.system + t.nice + t.irq + t.softirq}
        return time.monotonic(), groups, io

    @staticmethod
    def wakeups(a: Snapshot, b: Snapshot) -> dict[str, tuple[int, int]]:
        """Per group between the snapshots: read/write system calls (sockets included: the round trips) and
        voluntary context switches (each time a process slept waiting and was woken)."""
        out: dict[str, tuple[int, int]] = {}
        for name, after in b[2].items():
            before = a[2].get(name, {})
            calls = sum(v[0] - before.get(pid, (0, 0))[0] for pid, v in after.items())
            switches = sum(v[1] - before.get(pid, (0, 0))[1] for pid, v in after.items())
            out[name] = (calls, switches)
        return out

    @staticmethod
    def seconds(a: Snapshot, b: Snapshot) -> dict[str, float]:
        """CPU seconds per group between the snapshots; OTHER is the rest of the machine (other users' jobs
        and the kernel's own work skew the figures: worth seeing)."""
        out: dict[str, float] = {}
        for name, after in b[1].items():
            before = a[1].get(name, {})
            out[name] = sum(t - before.get(pid, 0.0) for pid, t in after.items())
        machine = out.pop("_machine", 0.0)
        out["OTHER"] = max(0.0, machine - sum(out.values()))
        return out

    @staticmethod
    def percent(a: Snapshot, b: Snapshot) -> dict[str, float]:
        """Percent of one core per group (200% = both cores of this machine)."""
        wall = max(b[0] - a[0], 1e-9)
        return {name: 100.0 * s / wall for name, s in CpuMeter.seconds(a, b).items()}


# What a benchmarked TradeBridge runs with: synthetic prices and the market maker on three markets, funded
# users, and no throttle or background job in the way of the load.
BENCH_SETTINGS: dict[str, str] = {
    "TRADEBRIDGE_ENV": "development",
    "PRICEFEED_SOURCE": "synthetic",
    "SYMBOLS": "BTCUSDT,ETHUSDT,BNBUSDT",
    "PAPER_MARKET_MAKER": "on",
    "PAPER_STARTING_BALANCES": "USDT=100000000,BTC=100000",
    "ORDER_RATE_LIMIT": "1000000/second",
    "LOGIN_LIMIT_PER_ADDRESS": "1000000/minute",
    "LOGIN_LIMIT_PER_ACCOUNT": "100000/minute",
    "BCRYPT_ROUNDS": "4",
    "ACCESS_TOKEN_TTL_S": "7200",
    "RECONCILIATION_INTERVAL_S": "0",
    "LOG_LEVEL": "WARNING",
}


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "JWT_", "KEY_"))}
