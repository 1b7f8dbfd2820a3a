"""The process-memory rate limiter (`tradebridge up`'s default) under logins that clear their counters: the
library's expiry task must not die with a KeyError ("Task exception was never retrieved" in `up`'s log, seen
under many logins: limits' MemoryStorage.clear deleted a key its expiry sweep was about to read)."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.ratelimit import RateLimiter
from tests.support.api import make_settings, running_api
from tests.support.eventually import eventually
from tradebridge.embedded import create_embedded_app

pytestmark = pytest.mark.asyncio

RULE = "5/minute"


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """What reaches the event loop's exception handler (where asyncio reports a task's unretrieved error)."""
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    seen: list[dict[str, Any]] = []

    def handler(lp: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        seen.append(context)
        if previous is not None:
            previous(lp, context)
        else:
            lp.default_exception_handler(context)

    loop.set_exception_handler(handler)
    yield seen
    loop.set_exception_handler(previous)


def _task_errors(seen: list[dict[str, Any]]) -> list[str]:
    gc.collect()  # a failed task reports its error when it is freed
    return [f"{c.get('message')}: {c.get('exception')!r}" for c in seen]


async def test_a_clear_during_the_expiry_sweep(loop_errors: list[dict[str, Any]]) -> None:
    """The exact interleaving: the sweep has listed both keys and waits on the first when the second is
    cleared (a correct password does that to its account-and-address counter)."""
    limiter: RateLimiter | None = RateLimiter(None, "mem")
    assert limiter is not None
    await limiter.hit(RULE, "first")  # starts the expiry sweep, which runs at the next await
    await limiter.hit(RULE, "second")
    await asyncio.sleep(0)  # the sweep has listed both keys and is in a thread for "first"
    await limiter.reset(RULE, "second")
    for _ in range(50):  # let the sweep finish
        await asyncio.sleep(0.01)
    assert await limiter.allowed(RULE, "second")
    del limiter
    assert _task_errors(loop_errors) == []


async def test_many_concurrent_logins_on_the_embedded_default(
    loop_errors: list[dict[str, Any]], tmp_path: Path
) -> None:
    """Logins from four addresses at once, eight accounts each, several rounds; then the app stops and is freed
    (so a failed sweep still referenced by the store reports too)."""
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}",
        login_limit_per_address="10000/minute",
        login_limit_per_account="10000/minute",
        login_limit_per_account_address="10000/minute",
    )
    users = [f"burst{i}@example.com" for i in range(8)]

    async def login(client: httpx.AsyncClient, email: str) -> int:
        r = await client.post("/auth/login", json={"email": email, "password": "correct horse battery"})
        return r.status_code

    async with running_api(settings, app=create_embedded_app(settings)) as up:
        for email in users:
            await up.register(email)
        clients = [
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=up.app, client=(f"198.51.100.{n}", 40000)),
                base_url="http://testserver",
            )
            for n in range(1, 5)
        ]
        try:
            for _ in range(4):
                codes = await asyncio.gather(*(login(c, email) for c in clients for email in users))
                assert codes == [200] * len(codes)
        finally:
            for c in clients:
                await c.aclose()
        del clients
    del up
    assert _task_errors(loop_errors) == []


async def test_hits_sweep_inline_at_most_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue #16: the library's sweep awaited a thread per key and restarted on the next hit once done, so
    steady orders from many users kept a thread hand-off per user's key going all the time. Hits on 200 keys
    now use no thread at all, and expired entries still go (within the sweep interval)."""
    handoffs = 0
    to_thread = asyncio.to_thread

    async def counted(func: Any, /, *args: Any, **kwargs: Any) -> Any:
        nonlocal handoffs
        handoffs += 1
        return await to_thread(func, *args, **kwargs)

    monkeypatch.setattr(asyncio, "to_thread", counted)
    limiter = RateLimiter(None, "mem")
    for round_ in range(3):
        for n in range(200):
            await limiter.hit("1000/second", f"user{n}")
        await asyncio.sleep(0)  # a sweep task started by the hits would run now
    assert handoffs == 0

    events = limiter._storage.events  # type: ignore[attr-defined]
    assert len(events) == 200

    async def swept() -> bool:
        await limiter.hit("1000/second", "late")  # a hit after the entries expired sweeps them
        return len(events) == 1  # the late hit's own key

    await eventually(swept, timeout=5, message="expired entries were not swept")
    assert await limiter.allowed("1000/second", "user0")
