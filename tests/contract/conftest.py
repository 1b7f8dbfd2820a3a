"""The embedded default (`tradebridge up`'s app: create_app on SQLite and the in-process bus, every service in
one process) on a real port, with the Binance double as its testnet, once per module."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.binance_double.server import BinanceDouble
from tests.browser.server import RunningSystem, running_system
from tests.support.eventually import eventually_sync


def _ready(url: str) -> bool:
    """A /readyz slower than its timeout (a loaded machine, the app still starting) is "not yet", not an error."""
    try:
        return httpx.get(f"{url}/readyz", timeout=5).status_code == 200
    except httpx.TimeoutException:
        return False


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSystem]:
    with BinanceDouble() as binance:
        db = tmp_path_factory.mktemp("contract") / "tradebridge.db"
        with running_system(db, binance.url) as running:
            # Ready: database, bus, and the market maker quoting every symbol (else /readyz is a 503).
            eventually_sync(
                lambda: _ready(running.url),
                timeout=60,
                interval=0.2,
                message="/readyz never answered 200",
            )
            yield running


@pytest.fixture(scope="module")
def user_token(system: RunningSystem) -> str:
    """A registered user's access token, so the protected routes are exercised past authentication."""
    creds = {"email": "schemathesis@example.com", "password": "correct horse battery"}
    r = httpx.post(f"{system.url}/auth/register", json=creds, timeout=30)  # bcrypt on a loaded machine
    assert r.status_code == 201, r.text
    r = httpx.post(f"{system.url}/auth/login", json=creds, timeout=30)
    assert r.status_code == 200, r.text
    return str(r.json()["access_token"])
