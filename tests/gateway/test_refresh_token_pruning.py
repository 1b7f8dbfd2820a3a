"""Refresh tokens are pruned on a schedule (issue #20: every login and every refresh adds a row, and nothing ever
deleted one, so `refresh_tokens` grew for ever): a token expired for more than one TTL is deleted; one expired more
recently is kept, so the reuse of a recently rotated token still revokes its family. On PostgreSQL and SQLite,
through the app as the composition root builds it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.services.accounts import prune_refresh_tokens
from shared.clock import ManualClock
from shared.models import RefreshToken
from tests.support.api import Api, make_settings, running_api
from tests.support.eventually import eventually

TTL_S = 60  # the smallest allowed; the schedule runs every eighth of it (7.5 s)


@pytest.fixture(params=["postgresql", "sqlite"])
async def gateway(
    request: pytest.FixtureRequest, pg_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[Api, ManualClock]]:
    clock = ManualClock()
    if request.param == "postgresql":
        settings = make_settings(
            pg_url, redis_url=redis_url, redis_prefix=redis_prefix, refresh_token_ttl_s=TTL_S
        )
        migrate = False
    else:
        settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}", refresh_token_ttl_s=TTL_S)
        migrate = True
    async with running_api(settings, clock=clock, migrate=migrate) as api:
        yield api, clock


async def _tokens(api: Api) -> int:
    async with api.parts.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(RefreshToken))).scalar_one())


async def _session_with_one_rotation(api: Api) -> str:
    """Register, log in, refresh once: two rows (the rotated token and the current one); returns the rotated."""
    await api.register("pruned@example.com")
    first = (await api.login("pruned@example.com"))["refresh_token"]
    r = await api.client.post("/auth/refresh", json={"refresh_token": first})
    assert r.status_code == 200, r.text
    assert await _tokens(api) == 2
    return str(first)


async def test_expired_tokens_are_kept_one_ttl_then_pruned(gateway: tuple[Api, ManualClock]) -> None:
    api, clock = gateway
    rotated = await _session_with_one_rotation(api)

    clock.advance(TTL_S + 1)  # expired, but within the window that still detects reuse
    assert await prune_refresh_tokens(api.parts.sessions, clock, keep_expired_s=TTL_S) == 0
    assert await _tokens(api) == 2
    r = await api.client.post("/auth/refresh", json={"refresh_token": rotated})
    assert r.status_code == 401  # reuse: still recognised, the family revoked

    clock.advance(TTL_S)
    assert await prune_refresh_tokens(api.parts.sessions, clock, keep_expired_s=TTL_S) == 2
    assert await _tokens(api) == 0


async def test_the_gateway_prunes_on_its_own_schedule(gateway: tuple[Api, ManualClock]) -> None:
    api, clock = gateway
    await _session_with_one_rotation(api)
    clock.advance(2 * TTL_S + 1)
    await eventually(lambda: _none_left(api), timeout=20, interval=0.2, message="refresh tokens not pruned")


async def _none_left(api: Api) -> bool:
    return await _tokens(api) == 0
