"""The whole system on a real port for the browser: `tradebridge up`'s embedded app (gateway, execution
worker with the market maker, synthetic price feed, events `/ws`, the web app) on a tmp SQLite file and the
in-process bus.

`RunningSystem.call` runs a coroutine on the server's own event loop (to seed data through its parts).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from tests.support.api import make_settings
from tradebridge.cli import WS_IMPLEMENTATION

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin password 123"


T = TypeVar("T")


@dataclass
class RunningSystem:
    url: str
    app: FastAPI
    loop: asyncio.AbstractEventLoop

    @property
    def parts(self) -> Any:
        return self.app.state.parts

    def call(self, work: Callable[[Any], Coroutine[Any, Any, T]], timeout: float = 30) -> T:
        """`work(parts)` on the server's event loop (the parts' engine and bus belong to it)."""
        return asyncio.run_coroutine_threadsafe(work(self.parts), self.loop).result(timeout)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_app(db_path: Path, binance_url: str, **overrides: Any) -> FastAPI:
    """`tradebridge up`'s own app (`create_embedded_app`). `overrides`: further settings (e.g. the double's
    `binance_testnet_ws_url`)."""
    from tradebridge.embedded import create_embedded_app

    settings = make_settings(
        f"sqlite+aiosqlite:///{db_path}",
        paper_market_maker="on",
        pricefeed_source="synthetic",
        admin_email=ADMIN_EMAIL,
        admin_password=ADMIN_PASSWORD,
        binance_testnet_url=binance_url,
        login_limit_per_account="100/minute",
        login_limit_per_account_address="100/minute",
        login_limit_per_address="1000/minute",
        **overrides,
    )
    return create_embedded_app(settings)


@contextlib.contextmanager
def running_system(db_path: Path, binance_url: str, **overrides: Any) -> Iterator[RunningSystem]:
    app = build_app(db_path, binance_url, **overrides)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws=WS_IMPLEMENTATION, lifespan="on"
    )
    server = uvicorn.Server(config)
    # A loop factory of our own: Runner then leaves this thread's current event loop alone.
    runner = asyncio.Runner(loop_factory=config.get_loop_factory() or asyncio.new_event_loop)

    def serve() -> None:
        with runner:
            runner.run(server.serve())

    loop = runner.get_loop()  # made here, so the tests have it before the thread runs
    thread = threading.Thread(target=serve, name="uvicorn-browser-tests", daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.05)  # polling a thread's start flag; not a test wait
    try:
        yield RunningSystem(f"http://127.0.0.1:{port}", app, loop)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
