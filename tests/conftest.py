"""Fixtures shared by the whole suite: real PostgreSQL and Redis, isolated per test; the Binance double."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import Api, running_api_on
from tests.support.services import PG_ADMIN_DSN, REDIS_URL, service_missing, unique_name

pytest_plugins = ["tests.binance_double.plugin"]


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """The real Redis URL; the test must namespace its keys with `redis_prefix`."""
    import redis.asyncio as aioredis

    client = aioredis.from_url(REDIS_URL)
    try:
        await client.ping()
    except Exception as exc:
        service_missing("Redis", exc)
    finally:
        await client.aclose()
    yield REDIS_URL


@pytest.fixture
async def redis_prefix(redis_url: str) -> AsyncIterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    import redis.asyncio as aioredis

    prefix = unique_name("test") + ":"
    yield prefix
    client = aioredis.from_url(redis_url)
    try:
        keys = [k async for k in client.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def _admin_sql(sql: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(PG_ADMIN_DSN)
    try:
        await admin.execute(sql)
    finally:
        await admin.close()


def _url(name: str) -> str:
    return f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"


@pytest.fixture
async def pg_empty_url() -> AsyncIterator[str]:
    """A brand-new, empty PostgreSQL database of this test's own, dropped afterwards."""
    name = unique_name("tb")
    try:
        await _admin_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:
        service_missing("PostgreSQL", exc)
    yield _url(name)
    await _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def _pg_template() -> Iterator[str]:
    """A database migrated to head once per test worker; each test clones it (fast) with CREATE ... TEMPLATE."""
    import asyncio

    import asyncpg

    from shared.migrate import upgrade

    name = unique_name("tbtpl")

    async def create() -> None:
        await _admin_sql(f'CREATE DATABASE "{name}"')
        await upgrade(_url(name))

    try:
        asyncio.run(create())
    except (OSError, asyncpg.PostgresError) as exc:
        service_missing("PostgreSQL", exc)
    yield name
    asyncio.run(_admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def pg_url(_pg_template: str) -> AsyncIterator[str]:
    """A PostgreSQL database of this test's own, migrated to head, dropped afterwards."""
    name = unique_name("tb")
    await _admin_sql(f'CREATE DATABASE "{name}" TEMPLATE "{_pg_template}"')
    yield _url(name)
    await _admin_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["postgresql", "sqlite"])
def api_on(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path, redis_url: str, redis_prefix: str
) -> Callable[..., AbstractAsyncContextManager[Api]]:
    """The app as `create_app` builds it, once on PostgreSQL + Redis and once on SQLite + the in-process bus:
    `async with api_on(services=..., **settings) as api` (``tests.support.api.running_api_on``)."""

    def start(**overrides: Any) -> AbstractAsyncContextManager[Api]:
        return running_api_on(
            request.param,
            pg_url=pg_url,
            sqlite_dir=tmp_path,
            redis_url=redis_url,
            redis_prefix=redis_prefix,
            **overrides,
        )

    return start
