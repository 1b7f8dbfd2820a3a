"""TradeBridge as `tradebridge up` builds it (create_app with every service inside), served by uvicorn on a
free port (ccxt and python-binance need a real HTTP server), on SQLite or PostgreSQL; a user with API keys."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ccxt.async_support as ccxt
import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from tests.support.api import make_settings
from tests.support.eventually import eventually
from tests.support.tasks import ended
from tradebridge.cli import WS_IMPLEMENTATION
from tradebridge.embedded import create_embedded_app


def parts(app: FastAPI) -> Any:
    """The app's parts (sessions, clock, ...), wherever the composition root keeps them."""
    return getattr(app.state, "parts", None) or app.state.runtime


@dataclass
class Served:
    app: FastAPI
    base: str  # http://127.0.0.1:PORT

    @property
    def parts(self) -> Any:
        return parts(self.app)

    async def user(self, email: str) -> dict[str, str]:
        """Register and log in: the bearer header of our own API."""
        async with httpx.AsyncClient(base_url=self.base) as c:
            r = await c.post("/auth/register", json={"email": email, "password": "correct horse battery"})
            assert r.status_code == 201, r.text
            r = await c.post("/auth/login", json={"email": email, "password": "correct horse battery"})
            assert r.status_code == 200, r.text
            return {"Authorization": f"Bearer {r.json()['access_token']}"}

    async def api_key(self, bearer: dict[str, str], **body: Any) -> dict[str, Any]:
        async with httpx.AsyncClient(base_url=self.base) as c:
            r = await c.post("/api/api-keys", json=body, headers=bearer)
            assert r.status_code == 201, r.text
            return r.json()

    def ccxt(self, key: dict[str, Any] | None = None, **options: Any) -> Any:
        """ccxt's binance, unmodified, its API URLs set to TradeBridge's Binance-compatible prefix."""
        config: dict[str, Any] = {
            "enableRateLimit": False,
            "timeout": 10000,
            "options": {
                "defaultType": "spot",
                "fetchMarkets": {"types": ["spot"]},
                "fetchMargins": False,
                "fetchCurrencies": False,
                **options,
            },
        }
        if key is not None:
            config.update(apiKey=key["api_key"], secret=key["secret"])
        exchange = ccxt.binance(config)
        api = self.base + "/binance/api/v3"
        exchange.urls["api"] = {"public": api, "private": api, "v1": self.base + "/binance/api/v1"}
        return exchange


@asynccontextmanager
async def serve(database_url: str, **overrides: Any) -> AsyncIterator[Served]:
    settings = make_settings(database_url, **{"paper_market_maker": "on", **overrides})
    app = create_embedded_app(settings)
    cfg = uvicorn.Config(
        app, host="127.0.0.1", port=0, log_level="warning", lifespan="on", ws=WS_IMPLEMENTATION
    )
    server = uvicorn.Server(cfg)
    server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
    task = asyncio.create_task(server.serve())
    try:
        await eventually(lambda: server.started or task.done(), timeout=60, message="server start")
        if task.done():
            task.result()
        port = server.servers[0].sockets[0].getsockname()[1]
        served = Served(app, f"http://127.0.0.1:{port}")
        async with httpx.AsyncClient(base_url=served.base) as c:

            async def ready() -> bool:
                try:
                    return (await c.get("/readyz")).status_code == 200
                except httpx.TimeoutException:  # a slow first answer on a busy machine: ask again
                    return False

            await eventually(ready, timeout=60, interval=0.1, message="readyz (market maker quoting)")
        yield served
    finally:
        server.should_exit = True
        await ended(task, 30)


@pytest.fixture(params=["sqlite", "postgresql"])
async def tb(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> AsyncIterator[Served]:
    """TradeBridge on SQLite, then on PostgreSQL."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'tradebridge.db'}" if request.param == "sqlite" else pg_url
    async with serve(url) as served:
        yield served


@pytest.fixture
async def tb_sqlite(tmp_path: Path) -> AsyncIterator[Served]:
    async with serve(f"sqlite+aiosqlite:///{tmp_path / 'tradebridge.db'}") as served:
        yield served
