"""Process plumbing for `pipeline_e2e.py`: a throwaway PostgreSQL database, a private Redis server, the
TradeBridge services as child processes, and CPU accounting per process. Nothing here runs at import."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
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
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @classmethod
    def tradebridge(cls, name: str, env: dict[str, str], logdir: Path, port: int | None = None) -> Child:
        argv = [sys.executable, "-m", "tradebridge.cli", name]
        if port is not None:
            argv += ["--port", str(port)]
        return cls(name, argv, env, logdir / f"{name}.log", port)

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        fh = open(self.log, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT)
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

    def wait_http(self, path: str = "/healthz", timeout: float = 60) -> None:
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


class CpuMeter:
    """CPU seconds per named group of processes between two snapshots (utime+stime, children excluded).

    PostgreSQL backends come and go, so the `postgres` group is every process of that name at each snapshot;
    a backend that exits between snapshots loses its time, which only under-counts PostgreSQL."""

    def __init__(self, pids: dict[str, list[int]], include_postgres: bool = True) -> None:
        self.pids = pids
        self.include_postgres = include_postgres

    def _groups(self) -> dict[str, dict[int, float]]:
        out: dict[str, dict[int, float]] = {}
        for name, pids in self.pids.items():
            out[name] = {}
            for pid in pids:
                try:
                    t = psutil.Process(pid).cpu_times()
                    out[name][pid] = t.user + t.system
                except psutil.Error:
                    pass
        if self.include_postgres:
            out["postgres"] = {}
            for p in psutil.process_iter(["name", "cpu_times"]):
                if (p.info["name"] or "").startswith("postgres") and p.info["cpu_times"] is not None:
                    out["postgres"][p.pid] = p.info["cpu_times"].user + p.info["cpu_times"].system
        return out

    def snapshot(self) -> tuple[float, dict[str, dict[int, float]]]:
        groups = self._groups()
        t = psutil.cpu_times()
        groups["_machine"] = {0: t.user + t.system + t.nice + t.irq + t.softirq}
        return time.monotonic(), groups

    @staticmethod
    def percent(
        a: tuple[float, dict[str, dict[int, float]]], b: tuple[float, dict[str, dict[int, float]]]
    ) -> dict[str, float]:
        """Percent of one core per group (200% = both cores of this machine)."""
        wall = max(b[0] - a[0], 1e-9)
        out: dict[str, float] = {}
        for name, after in b[1].items():
            before = a[1].get(name, {})
            used = sum(t - before.get(pid, 0.0) for pid, t in after.items())
            out[name] = 100.0 * used / wall
        # Everything else on the machine (other users' jobs skew the figures: worth seeing).
        machine = out.pop("_machine", 0.0)
        out["OTHER"] = max(0.0, machine - sum(out.values()))
        return out


def base_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "JWT_", "KEY_"))}
