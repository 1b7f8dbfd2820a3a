"""The whole system on a real port for the browser: `tradebridge up`'s embedded app (gateway, execution
worker with the market maker, synthetic price feed, events `/ws`) on a tmp SQLite file and the in-process bus,
plus `mount_web`.

Parts still being integrated are used when present and stood in for when not: no price feed / events service
in the tree: gateway + worker by hand, a ticker pump publishing TICKERs, and the UI's REST polling fallback if
`/ws` is missing.

`RunningSystem.call` runs a coroutine on the server's own event loop (to seed data through its parts).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from fastapi import FastAPI

from shared.streams import MARKET_TICKER, public_event
from tests.support.api import make_settings

ADMIN_EMAIL = "admin@example.com"
ADMIN_PASSWORD = "admin password 123"
BASE_PRICES = {"BTCUSDT": Decimal("60000.00"), "ETHUSDT": Decimal("3000.00"), "BNBUSDT": Decimal("500.0")}


T = TypeVar("T")


@dataclass
class RunningSystem:
    url: str
    app: FastAPI
    has_ws: bool
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


def ticker_pump(interval_s: float = 0.5):
    """A service hook publishing a gently moving ticker per market, as the price feed would."""

    async def hook(rt: Any, stack: AsyncExitStack) -> None:
        async def run() -> None:
            step = 0
            while True:
                step += 1
                for symbol, base in BASE_PRICES.items():
                    if symbol not in rt.markets:
                        continue
                    wiggle = Decimal((step % 7) - 3) * rt.markets[symbol].tick_size * 10
                    price = str(base + wiggle)
                    now = rt.clock.now()
                    data = {"symbol": symbol, "price": price, "ts": now.isoformat()}
                    await rt.market_data.put("ticker", symbol, data)
                    await rt.bus.publish(MARKET_TICKER, public_event("TICKER", symbol, now, {"price": price}))
                await asyncio.sleep(interval_s)

        task = asyncio.create_task(run(), name="test-ticker-pump")

        async def stop() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        stack.push_async_callback(stop)

    return hook


def build_app(db_path: Path, binance_url: str, **overrides: Any) -> tuple[FastAPI, bool]:
    """`tradebridge up`'s own app (`create_embedded_app`) when the tree has it all; else its parts by hand.
    `overrides`: further settings (e.g. the double's `binance_testnet_ws_url`)."""
    from gateway.web import mount_web

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
    try:
        from tradebridge.embedded import create_embedded_app

        app = create_embedded_app(settings)
    except ImportError:  # the price feed or events service is not in this tree yet
        app = _assembled_app(settings)
    paths = {getattr(r, "path", None) for r in app.routes}
    has_ws = "/ws" in paths
    if not any(type(r).__name__ == "_ClientRoutes" for r in app.routes):
        mount_web(app)
    return app, has_ws


def _assembled_app(settings: Any) -> FastAPI:
    from tradebridge.app import create_app

    return create_app(settings, migrate=True, services=("events", "execution"), hooks=[ticker_pump()])


@contextlib.contextmanager
def running_system(db_path: Path, binance_url: str, **overrides: Any) -> Iterator[RunningSystem]:
    app, has_ws = build_app(db_path, binance_url, **overrides)
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", ws="websockets-sansio", lifespan="on"
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
        yield RunningSystem(f"http://127.0.0.1:{port}", app, has_ws, loop)
    finally:
        server.should_exit = True
        thread.join(timeout=15)
