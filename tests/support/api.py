"""Run the real application in-process (lifespan included) and talk to it over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from asgi_lifespan import LifespanManager
from fastapi import FastAPI

from shared.clock import Clock
from shared.security.crypto import generate_key
from shared.settings import Settings
from tests.support.tasks import ended

# Stopping an app with every service in it on a loaded 2-core machine (CI runs two test processes) may take a
# few seconds; one that hangs still fails, with the stacks of what held it.
SHUTDOWN_S = 20.0


def make_settings(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "jwt_secret": "test-jwt-secret-" + "x" * 32,
        "key_encryption_keys": generate_key(),
        "bcrypt_rounds": 4,
        "paper_market_maker": "off",
        # Nothing a test builds may reach the real testnet (the settings' defaults): a closed local port.
        "binance_testnet_url": "http://127.0.0.1:9",
        "binance_testnet_ws_url": "ws://127.0.0.1:9",
        "secrets_file": "/nonexistent/never-written.json",
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@dataclass
class Api:
    app: FastAPI
    client: httpx.AsyncClient

    @property
    def parts(self) -> Any:
        """The gateway's parts (`gateway.deps.GatewayParts`)."""
        return self.app.state.parts

    @property
    def system(self) -> Any:
        """What else runs in the process (`tradebridge.app.System`: worker, hub, pricefeed, scheduler)."""
        return self.app.state.system

    async def register(
        self, email: str, password: str = "correct horse battery", **extra: Any
    ) -> dict[str, Any]:
        r = await self.client.post("/auth/register", json={"email": email, "password": password, **extra})
        assert r.status_code == 201, r.text
        return r.json()

    async def login(self, email: str, password: str = "correct horse battery") -> dict[str, Any]:
        r = await self.client.post("/auth/login", json={"email": email, "password": password})
        assert r.status_code == 200, r.text
        return r.json()

    async def user(self, email: str, password: str = "correct horse battery") -> dict[str, str]:
        """Register and log in; returns the Authorization header."""
        await self.register(email, password)
        tokens = await self.login(email, password)
        return {"Authorization": f"Bearer {tokens['access_token']}"}


@asynccontextmanager
async def running_api(
    settings: Settings,
    *,
    clock: Clock | None = None,
    app: FastAPI | None = None,
    migrate: bool = False,
    **kwargs: Any,
) -> AsyncIterator[Api]:
    from tradebridge.app import create_app

    app = app or create_app(settings, clock=clock, migrate=migrate, **kwargs)
    manager = LifespanManager(app, startup_timeout=60, shutdown_timeout=None)
    await manager.__aenter__()
    try:
        transport = httpx.ASGITransport(app=manager.app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield Api(app, client)
    except BaseException as exc:
        await _shut_down(manager, exc)
        raise
    await _shut_down(manager, None)


async def _shut_down(manager: LifespanManager, exc: BaseException | None) -> None:
    """The app's lifespan shutdown; one that hangs (once in CI, 2026-12-04: past asgi-lifespan's default 5 s,
    with nothing to say why) fails with the stacks of the tasks that held it, taken while they still run."""

    async def shut_down() -> None:
        await manager.__aexit__(type(exc) if exc else None, exc, exc.__traceback__ if exc else None)

    stopping = asyncio.ensure_future(shut_down())
    try:
        await ended(stopping, SHUTDOWN_S)
    finally:
        stopping.cancel()


@asynccontextmanager
async def running_api_on(
    database: str,
    *,
    pg_url: str,
    sqlite_dir: Path,
    redis_url: str,
    redis_prefix: str,
    services: tuple[str, ...] = (),
    **overrides: Any,
) -> AsyncIterator[Api]:
    """`running_api` on "postgresql" (the test's database and Redis prefix, migrated by its template) or on
    "sqlite" (a file of the test's own with the in-process bus, migrated at start): one fixture body for the
    tests that run on both databases. `services`: what else runs in the app's process (as `create_app`)."""
    if database == "postgresql":
        settings = make_settings(pg_url, redis_url=redis_url, redis_prefix=redis_prefix, **overrides)
        migrate = False
    else:
        settings = make_settings(f"sqlite+aiosqlite:///{sqlite_dir / 'tb.db'}", **overrides)
        migrate = True
    async with running_api(settings, migrate=migrate, services=services) as api:
        yield api
