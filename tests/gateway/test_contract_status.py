"""The contract's status codes for path symbols, chunked bodies and control characters (issue #14, item 4)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.api import Api, running_api_on

pytestmark = pytest.mark.asyncio

PW = "correct horse battery"


@pytest.fixture(params=["postgresql", "sqlite"])
async def gateway(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path, redis_url: str, redis_prefix: str
) -> AsyncIterator[Api]:
    async with running_api_on(
        request.param, pg_url=pg_url, sqlite_dir=tmp_path, redis_url=redis_url, redis_prefix=redis_prefix
    ) as api:
        yield api


def _problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"] and body["detail"]
    return body


@pytest.mark.parametrize("tail", ["ticker", "depth", "trades", "candles"])
async def test_unknown_symbol_in_the_path_is_404(gateway: Api, tail: str) -> None:
    body = _problem(await gateway.client.get(f"/api/markets/NOPEUSDT/{tail}"), 404)
    assert "NOPEUSDT" in body["detail"]
    # a known symbol in any spelling is found
    assert (await gateway.client.get(f"/api/markets/btcusdt/{tail}")).status_code in (200, 404)
    if tail != "ticker":  # no price yet is a 404 of its own; the others answer empty
        assert (await gateway.client.get(f"/api/markets/BTCUSDT/{tail}")).status_code == 200


async def test_unknown_symbol_in_a_body_stays_422(gateway: Api) -> None:
    auth = await gateway.user("body@example.com")
    order = {"symbol": "NOPEUSDT", "side": "BUY", "type": "LIMIT", "quantity": "1", "price": "1"}
    body = _problem(await gateway.client.post("/api/orders", json=order, headers=auth), 422)
    assert any(e["field"] == "symbol" for e in body["errors"])
    quote = {"symbol": "NOPEUSDT", "side": "BUY", "quantity": "1"}
    _problem(await gateway.client.post("/api/orders/quote", json=quote, headers=auth), 422)


async def _chunks(total: int, size: int = 8192) -> AsyncIterator[bytes]:
    sent = 0
    while sent < total:
        yield b"x" * min(size, total - sent)
        sent += size


async def test_chunked_body_over_the_limit_is_413(gateway: Api) -> None:
    """No Content-Length, Transfer-Encoding: chunked: the limit applies as the bytes arrive."""
    r = await gateway.client.post(
        "/auth/register", content=_chunks(200_000), headers={"content-type": "application/json"}
    )
    assert "content-length" not in r.request.headers
    assert r.request.headers["transfer-encoding"] == "chunked"
    _problem(r, 413)
    # the same on a route with authentication and a larger model
    r = await gateway.client.post(
        "/api/orders", content=_chunks(70_000), headers={"content-type": "application/json"}
    )
    _problem(r, 413)
    # a chunked body under the limit is read as usual
    r = await gateway.client.post(
        "/auth/register",
        content=_chunks(0),
        headers={"content-type": "application/json"},
    )
    assert r.status_code in (400, 422), r.text


async def test_control_characters_in_credentials_are_422(gateway: Api) -> None:
    """NUL reached the database (PostgreSQL refuses it in text: a 500); the schema refuses every control
    character (C0, DEL, C1) in emails and passwords instead."""
    await gateway.register("ctl@example.com")
    for bad in ("\x00", "\x07", "\x1b", "\x7f", "\x85"):
        cases = [
            ("/auth/register", {"email": f"c{bad}tl2@example.com", "password": PW}, "email"),
            ("/auth/register", {"email": "ctl3@example.com", "password": f"correct{bad}horse"}, "password"),
            ("/auth/login", {"email": f"ctl@example.com{bad}", "password": PW}, "email"),
            ("/auth/login", {"email": "ctl@example.com", "password": f"{PW}{bad}"}, "password"),
        ]
        for path, payload, field in cases:
            body = _problem(await gateway.client.post(path, json=payload), 422)
            assert [e["field"] for e in body["errors"]] == [field], (repr(bad), path, body)
    # ordinary non-ASCII passwords still work
    await gateway.register("uni@example.com", "pässwörd ünïcode ✓")
    await gateway.login("uni@example.com", "pässwörd ünïcode ✓")
