"""The distributed deployment on servers of its own, for runs that kill and restart things (chaos, soak).

A private PostgreSQL cluster (initdb into a temporary folder, run as the `postgres` OS user on a free port),
a private Redis (append-only file on or off: "restart with its data" and "restart empty" are both possible),
the Binance spot double as its own process, and the services as `tradebridge` child processes: gateway x2,
execution, events x2, pricefeed. Everything can be SIGKILLed and started again; nothing shared with other
engineers on the machine is ever restarted.

Use from a script in benchmarks/ (the folder is on sys.path when a script there runs):

    from _cluster import Cluster
    with Cluster() as c:           # starts everything, waits until the gateways are ready
        c.gateway_urls, c.events_urls, c.double_url, c.pg.dsn, c.redis.url
        c.kill("execution"); c.start_service("execution")
        c.redis.restart(keep_data=False); c.pg.restart()

Nothing here runs at import.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from _e2e_procs import ROOT, Child, base_env  # also puts the repository on sys.path for these two:

from tests.binance_double.control import DoubleControl
from tests.support.procs import free_port

KEK = "xtCsEvHZO0Q8YTb6m0ZQ3z0s2m1w4dTqkq1xC0i4W5s="
ADMIN_EMAIL = "chaos-admin@example.com"
ADMIN_PASSWORD = "chaos-admin-password"


def _wait_port(port: int, timeout: float, alive: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise RuntimeError(f"process on port {port} exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port} after {timeout}s")


def _pg_bin(name: str) -> str:
    found = sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    if not found:
        raise RuntimeError(f"no PostgreSQL {name} under /usr/lib/postgresql/*/bin")
    return str(found[-1])


class PrivatePostgres:
    """A PostgreSQL cluster of this run's own: initdb into `workdir/pg`, served on a free port by the `postgres`
    OS user (`runuser`, since the run is root and PostgreSQL refuses to run as root).

    fsync is off: a killed server loses nothing the kernel already has (only a machine crash would), so a
    `restart()` (immediate stop = crash recovery on start) still keeps every committed transaction."""

    def __init__(self, workdir: Path, *, port: int | None = None, database: str = "tradebridge") -> None:
        self.dir = workdir / "pg"
        self.port = port or free_port()
        self.database = database
        self.log = workdir / "postgres.log"
        self.restarts = 0

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def url(self) -> str:
        return self.dsn.replace("postgresql://", "postgresql+asyncpg://", 1)

    def _as_postgres(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = list(argv) if os.geteuid() != 0 else ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(cmd, capture_output=True, text=True, check=check)

    def start(self) -> None:
        if not (self.dir / "PG_VERSION").exists():
            self.dir.mkdir(parents=True, exist_ok=True)
            if os.geteuid() == 0:
                shutil.chown(self.dir.parent, "postgres")
                shutil.chown(self.dir, "postgres")
            self._as_postgres(
                _pg_bin("initdb"), "-D", str(self.dir), "-A", "trust", "-U", "postgres", "--no-sync"
            )
            if os.geteuid() == 0:
                self.log.touch()
                shutil.chown(self.log, "postgres")
        options = (
            f"-p {self.port} -k {self.dir.parent} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c full_page_writes=off -c max_connections=300 -c shared_buffers=64MB"
        )
        out = self._as_postgres(
            _pg_bin("pg_ctl"),
            "-D",
            str(self.dir),
            "-l",
            str(self.log),
            "-o",
            options,
            "-w",
            "start",
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"pg_ctl start failed: {out.stdout}{out.stderr}{self.tail()}")
        asyncio.run(self._ensure_database())

    async def _ensure_database(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(f"postgresql://postgres@127.0.0.1:{self.port}/postgres")
        try:
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", self.database):
                await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()

    def stop(self, mode: str = "fast") -> None:
        """`fast` (clean shutdown) or `immediate` (like a crash: recovery on the next start)."""
        if (self.dir / "postmaster.pid").exists():
            self._as_postgres(_pg_bin("pg_ctl"), "-D", str(self.dir), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "immediate", down_s: float = 0.0) -> None:
        """Stop (a crash by default), stay down `down_s`, start again with the same data and port."""
        self.stop(mode)
        time.sleep(down_s)
        self.start()
        self.restarts += 1

    def tail(self, n: int = 2000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-n:]
        return ""


class PrivateRedis:
    """A Redis of this run's own on a free port. With `appendonly` its data survives a restart (every write is
    in the append-only file before the restart reads it back); `restart(keep_data=False)` deletes the files:
    Redis comes back empty, as after losing its disk."""

    def __init__(self, workdir: Path, *, port: int | None = None, appendonly: bool = True) -> None:
        self.dir = workdir / "redis"
        self.port = port or free_port()
        self.appendonly = appendonly
        self.log = workdir / "redis.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts: dict[str, int] = {"with_data": 0, "empty": 0}

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        argv = [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", ""]
        argv += (
            ["--appendonly", "yes", "--appendfsync", "always"] if self.appendonly else ["--appendonly", "no"]
        )
        with open(self.log, "ab") as fh:
            self.proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT)
        _wait_port(self.port, 20, alive=lambda: self.proc is not None and self.proc.poll() is None)
        # A port that accepts is not yet a Redis that answers: loading the append-only file comes first.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), 1) as s:
                s.sendall(b"PING\r\n")
                if s.recv(64).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise RuntimeError("private redis did not answer PING")

    def stop(self, *, kill: bool = False) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def restart(self, *, keep_data: bool, down_s: float = 0.0) -> None:
        """With its data: SIGKILL (the append-only file has every write), start again. Empty: SIGKILL, delete
        every file, start again."""
        self.stop(kill=True)
        if not keep_data:
            shutil.rmtree(self.dir, ignore_errors=True)
        time.sleep(down_s)
        self.start()
        self.restarts["with_data" if keep_data else "empty"] += 1

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid


class DoubleProcess:
    """`python -m tests.binance_double` as a child process, driven through `DoubleControl` (`.control`)."""

    def __init__(self, workdir: Path, *, duplicate_client_id: str = "open", root: Path = ROOT) -> None:
        self.root = root
        self.log = workdir / "binance-double.log"
        self.duplicate_client_id = duplicate_client_id
        self.proc: subprocess.Popen[str] | None = None
        self.url = ""
        self.control: DoubleControl | None = None

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://", 1)

    def start(self) -> None:
        argv = [sys.executable, "-m", "tests.binance_double", "--port", "0"]
        argv += ["--duplicate-client-id", self.duplicate_client_id]
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen(argv, cwd=self.root, stdout=subprocess.PIPE, stderr=err, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("READY "):
            raise RuntimeError(f"binance double did not start: {line!r}")
        self.url = line.split(" ", 1)[1]
        self.control = DoubleControl(self.url, timeout=30)

    def stop(self) -> None:
        if self.control is not None:
            self.control.close()
            self.control = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


def export_head(dest: Path, overlay: list[str] | tuple[str, ...] = ()) -> Path:
    """The committed tree (HEAD) in `dest`, with the compiled paper modules and the `overlay` paths of the
    working tree copied over it: runs the services from a consistent code base while others edit the
    checkout. Returns `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)
    for built in [*ROOT.glob("execution/paper/*.so"), ROOT / "execution/paper/accel-manifest.json"]:
        if built.exists():
            shutil.copy2(built, dest / built.relative_to(ROOT))
    for rel in overlay:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest / rel)
    return dest


@dataclass
class Cluster:
    """Everything above plus the services. `services` maps a name (gateway-1, gateway-2, execution, events-1,
    events-2, pricefeed) to its `Child`; `kill(name)` is SIGKILL, `start_service(name)` starts it again with
    the same environment, port and log (appended)."""

    workdir: Path | None = None
    gateways: int = 2
    events: int = 2
    redis_appendonly: bool = True
    with_double: bool = True
    env_extra: dict[str, str] = field(default_factory=dict)
    keep: bool = False  # keep the folder (logs) after close
    root: Path = ROOT  # the code the services run (`export_head()` for a snapshot)

    def __post_init__(self) -> None:
        self._own_dir = self.workdir is None
        self.dir = self.workdir or Path(tempfile.mkdtemp(prefix="tb_cluster_"))
        self.pg = PrivatePostgres(self.dir)
        self.redis = PrivateRedis(self.dir, appendonly=self.redis_appendonly)
        self.double = DoubleProcess(self.dir, root=self.root) if self.with_double else None
        self.services: dict[str, Child] = {}
        self.kills: dict[str, int] = {}
        self.jwt_secret = "cluster-secret-" + secrets.token_hex(24)

    # -- environment --------------------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        env = base_env()
        env.update(
            DATABASE_URL=self.pg.url,
            REDIS_URL=self.redis.url,
            REDIS_PREFIX="tb:",
            JWT_SECRET=self.jwt_secret,
            KEY_ENCRYPTION_KEYS=KEK,
            TRADEBRIDGE_ENV="development",
            PRICEFEED_SOURCE="synthetic",
            SYMBOLS="BTCUSDT,ETHUSDT,BNBUSDT",
            PAPER_MARKET_MAKER="on",
            PAPER_STARTING_BALANCES="USDT=1000000,BTC=100,ETH=1000",
            ORDER_RATE_LIMIT="1000000/second",
            LOGIN_LIMIT_PER_ADDRESS="1000000/minute",
            LOGIN_LIMIT_PER_ACCOUNT="100000/minute",
            LOGIN_LIMIT_PER_ACCOUNT_ADDRESS="100000/minute",
            BCRYPT_ROUNDS="4",
            ACCESS_TOKEN_TTL_S="86400",
            RECONCILIATION_INTERVAL_S="0",
            ADMIN_EMAIL=ADMIN_EMAIL,
            ADMIN_PASSWORD=ADMIN_PASSWORD,
            LOG_LEVEL="WARNING",
            SECRETS_FILE=str(self.dir / "secrets.json"),
        )
        if self.double is not None:
            env.update(BINANCE_TESTNET_URL=self.double.url, BINANCE_TESTNET_WS_URL=self.double.ws_url)
        env.update(self.env_extra)
        return env

    @property
    def gateway_urls(self) -> list[str]:
        return [f"http://127.0.0.1:{c.port}" for n, c in self.services.items() if n.startswith("gateway")]

    @property
    def events_urls(self) -> list[str]:
        return [f"ws://127.0.0.1:{c.port}/ws" for n, c in self.services.items() if n.startswith("events")]

    @property
    def control(self) -> DoubleControl:
        """The double's control client (prices, faults, its own record of orders)."""
        if self.double is None or self.double.control is None:
            raise RuntimeError("this cluster runs without the Binance double (or it is not started)")
        return self.double.control

    @property
    def double_url(self) -> str:
        return "" if self.double is None else self.double.url

    # -- life cycle ---------------------------------------------------------------------------------------

    def start(self) -> Cluster:
        self.pg.start()
        self.redis.start()
        if self.double is not None:
            self.double.start()
        env = self.env()
        migrate = subprocess.run(
            [sys.executable, "-m", "tradebridge.cli", "migrate"],
            env=env,
            cwd=self.root,
            capture_output=True,
            text=True,
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"migrate failed:\n{migrate.stdout}\n{migrate.stderr}")
        for i in range(self.gateways):
            self._add(
                Child.tradebridge(
                    "gateway", env, self.dir, free_port(), name=f"gateway-{i + 1}", cwd=self.root
                )
            )
        self._add(Child.tradebridge("execution", env, self.dir, cwd=self.root))
        for i in range(self.events):
            self._add(
                Child.tradebridge("events", env, self.dir, free_port(), name=f"events-{i + 1}", cwd=self.root)
            )
        self._add(Child.tradebridge("pricefeed", env, self.dir, cwd=self.root))
        for c in self.services.values():
            c.start()
        self.wait_ready()
        return self

    def _add(self, child: Child) -> None:
        self.services[child.name] = child
        self.kills[child.name] = 0

    def wait_ready(self, timeout: float = 300) -> None:
        """Every HTTP service answers: gateways `/readyz` (database, bus and paper liquidity), events
        `/healthz`."""
        for name, c in self.services.items():
            if name.startswith("gateway"):
                c.wait_http("/readyz", timeout=timeout)
            elif c.port is not None:
                c.wait_http("/healthz", timeout=timeout)

    def kill(self, name: str) -> None:
        """SIGKILL, no grace."""
        c = self.services[name]
        if c.proc is not None and c.proc.poll() is None:
            c.proc.send_signal(signal.SIGKILL)
            c.proc.wait(timeout=10)
        c.proc = None
        self.kills[name] += 1

    def start_service(self, name: str) -> None:
        self.services[name].start()

    def dead(self) -> list[str]:
        """Services that exited without being killed by us."""
        return [n for n, c in self.services.items() if c.proc is not None and c.proc.poll() is not None]

    def pids(self) -> dict[str, int]:
        out = {n: c.pid for n, c in self.services.items() if c.alive()}
        if self.redis.pid is not None:
            out["redis"] = self.redis.pid
        return out

    def close(self) -> None:
        for c in self.services.values():
            with contextlib.suppress(Exception):
                c.stop()
        if self.double is not None:
            self.double.stop()
        self.redis.stop()
        self.pg.stop("immediate")
        if self._own_dir and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Cluster:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
