"""An admin locks a user: the user's open `/ws` sockets close at once with 4401 "signed out" (not when their
access token expires), their refresh token no longer works, and their old token opens no new socket; other
users' sockets stay. Both layouts: the events service apart (`create_events_app`, the distributed layout) and
the hub in the gateway's process (`tradebridge up`), on SQLite and PostgreSQL, on real Redis (and the
in-process bus `up` uses by default)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.events.helpers import Client, client, serve
from tests.support.api import make_settings, running_api
from tests.support.eventually import eventually
from tradebridge.app import create_app, create_events_app

ADMIN = ("admin@example.com", "admin password 123")
PW = "correct horse battery"


@dataclass
class Layout:
    http: httpx.AsyncClient  # the gateway's API
    ws_url: str  # an events service's /ws


@asynccontextmanager
async def _layout(
    name: str, database: str, *, pg_url: str, tmp_path: Path, redis_url: str, redis_prefix: str
) -> AsyncIterator[Layout]:
    url = pg_url if database == "postgresql" else f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}"
    redis = None if name == "up" else redis_url
    settings = make_settings(
        url, redis_url=redis, redis_prefix=redis_prefix, admin_email=ADMIN[0], admin_password=ADMIN[1]
    )
    migrate = database == "sqlite"
    async with AsyncExitStack() as stack:
        if name == "distributed":
            api = await stack.enter_async_context(running_api(settings, migrate=migrate))
            events = await stack.enter_async_context(serve(create_events_app(settings)))
            yield Layout(api.client, events.url)
        else:  # one process: the hub beside the API, served for real so /ws is reachable
            served = await stack.enter_async_context(
                serve(create_app(settings, migrate=migrate, services=("events",)))
            )
            base = served.url.removeprefix("ws://").removesuffix("/ws")
            http = await stack.enter_async_context(httpx.AsyncClient(base_url=f"http://{base}", timeout=30))
            yield Layout(http, served.url)


CASES = [
    pytest.param(("distributed", "sqlite"), id="distributed-sqlite"),
    pytest.param(("distributed", "postgresql"), id="distributed-postgresql"),
    pytest.param(("up", "sqlite"), id="up-sqlite-memory-bus"),
    pytest.param(("same-process", "postgresql"), id="same-process-postgresql"),
]


@pytest.fixture(params=CASES)
def case(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    """(layout, database, PostgreSQL URL or ""): the PostgreSQL fixtures are set up only where used."""
    name, database = request.param
    return name, database, request.getfixturevalue("pg_url") if database == "postgresql" else ""


@pytest.fixture
async def layout(
    case: tuple[str, str, str], tmp_path: Path, redis_url: str, redis_prefix: str
) -> AsyncIterator[Layout]:
    name, database, pg_url = case
    async with _layout(
        name, database, pg_url=pg_url, tmp_path=tmp_path, redis_url=redis_url, redis_prefix=redis_prefix
    ) as lay:
        yield lay


async def _login(http: httpx.AsyncClient, email: str, password: str = PW) -> dict[str, Any]:
    r = await http.post("/auth/login", json={"email": email, "password": password})
    assert r.status_code == 200, r.text
    tokens: dict[str, Any] = r.json()
    return tokens


async def _register(http: httpx.AsyncClient, email: str) -> str:
    r = await http.post("/auth/register", json={"email": email, "password": PW})
    assert r.status_code == 201, r.text
    return str(r.json()["id"])


async def test_locking_a_user_closes_their_sockets_at_once(layout: Layout) -> None:
    http = layout.http
    admin = {"Authorization": f"Bearer {(await _login(http, *ADMIN))['access_token']}"}
    user_id = await _register(http, "locked@example.com")
    await _register(http, "bystander@example.com")
    tokens = await _login(http, "locked@example.com")
    other = (await _login(http, "bystander@example.com"))["access_token"]

    async with (
        client(layout.ws_url, tokens["access_token"]) as first,
        client(layout.ws_url, tokens["access_token"]) as second,
        client(layout.ws_url, other) as bystander,
    ):
        for c in (first, second, bystander):
            await c.ping()  # registered with the hub
        r = await http.post(f"/api/admin/users/{user_id}/lock", headers=admin)
        assert r.status_code == 200, r.text
        locked = time.monotonic()
        for c in (first, second):
            assert await c.closed_code(timeout=10) == 4401
            assert c.ws.close_reason == "signed out"
        took = time.monotonic() - locked
        assert took < 5, f"the sockets closed {took:.1f} s after the lock"
        await bystander.ping()  # everyone else stays connected

    r = await http.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 401, r.text
    async with client(layout.ws_url, tokens["access_token"]) as again:  # the token is still unexpired
        assert await again.closed_code() == 4401
        assert again.ws.close_reason == "signed out"
        assert again.messages == []


async def _socket_stays(c: Client) -> None:
    await c.ping()
    assert c.ws.close_code is None


async def test_unlocked_user_connects_again_with_a_new_login(layout: Layout) -> None:
    """The lock refuses tokens issued before it only: after an unlock, a new login's token opens a socket."""
    http = layout.http
    admin = {"Authorization": f"Bearer {(await _login(http, *ADMIN))['access_token']}"}
    user_id = await _register(http, "relocked@example.com")
    async with client(layout.ws_url, (await _login(http, "relocked@example.com"))["access_token"]) as c:
        await c.ping()
        assert (await http.post(f"/api/admin/users/{user_id}/lock", headers=admin)).status_code == 200
        assert await c.closed_code() == 4401
    assert (await http.post(f"/api/admin/users/{user_id}/unlock", headers=admin)).status_code == 200
    unlocked = time.time()
    # A token's issue time has whole seconds (JWT): the next login's must come after the lock's second.
    await eventually(lambda: int(time.time()) > int(unlocked), timeout=3)
    async with client(layout.ws_url, (await _login(http, "relocked@example.com"))["access_token"]) as c:
        await _socket_stays(c)
