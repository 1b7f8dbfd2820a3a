"""Real processes for crash tests: a private Redis server and TradeBridge services, each killable."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A Redis of the test's own on a free port, so it can be stopped and restarted without harming others."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            self.proc = None

    def start_on_same_port(self) -> None:
        """Restart (empty: it keeps nothing on disk, like the machine's Redis)."""
        self.start()


@contextmanager
def redis_server(workdir: Path) -> Iterator[RedisServer]:
    server = RedisServer(workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def stop_process(proc: subprocess.Popen[bytes] | None, *, grace_s: float = 15) -> None:
    """SIGTERM, then SIGKILL if it has not exited within `grace_s`."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_http(
    port: int | None,
    *,
    alive: Callable[[], bool],
    describe: Callable[[], str],
    path: str = "/healthz",
    timeout: float = 60,
) -> None:
    """Until GET `path` answers 200; fails at once if the process died, with `describe()` (its log) attached."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"process exited: {describe()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"not ready after {timeout}s: {describe()}")


class Service:
    """`tradebridge <name>` as a child process; `kill()` is kill -9."""

    def __init__(self, name: str, env: dict[str, str], log: Path, port: int | None = None) -> None:
        self.name = name
        self.env = env
        self.log = log
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [sys.executable, "-m", "tradebridge.cli", self.name]
        if self.port is not None:
            args += ["--port", str(self.port)]
        self._fh = open(self.log, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(args, env=self.env, cwd=ROOT, stdout=self._fh, stderr=subprocess.STDOUT)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> None:
        stop_process(self.proc)
        self.proc = None

    def wait_http(self, path: str = "/healthz", timeout: float = 60) -> None:
        wait_http(
            self.port,
            alive=lambda: self.proc is not None and self.proc.poll() is None,
            describe=lambda: f"{self.name}: {self.log.read_text()[-3000:]}",
            path=path,
            timeout=timeout,
        )


def service_env(database_url: str, redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "JWT_", "KEY_"))}
    env.update(
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        REDIS_PREFIX=prefix,
        JWT_SECRET="crash-test-secret-" + "z" * 32,
        KEY_ENCRYPTION_KEYS="xtCsEvHZO0Q8YTb6m0ZQ3z0s2m1w4dTqkq1xC0i4W5s=",
        PAPER_MARKET_MAKER="off",
        PAPER_STARTING_BALANCES="USDT=1000000,BTC=100",
        ORDER_RATE_LIMIT="100000/second",
        LOGIN_LIMIT_PER_ADDRESS="100000/minute",
        BCRYPT_ROUNDS="4",
        LOG_LEVEL="WARNING",
    )
    env.update(extra)
    return env
