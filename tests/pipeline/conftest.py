from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.api import Api, make_settings, running_api


@pytest.fixture
async def system(pg_url: str, redis_url: str, redis_prefix: str) -> AsyncIterator[Api]:
    """Gateway + execution worker in one process, on real PostgreSQL and Redis Streams."""
    settings = make_settings(
        pg_url, redis_url=redis_url, redis_prefix=redis_prefix, paper_starting_balances_csv="USDT=10000,BTC=1"
    )
    async with running_api(settings, services=("execution",)) as api:
        await api.system.worker.ready.wait()
        yield api


@pytest.fixture
async def embedded(tmp_path: Path) -> AsyncIterator[Api]:
    """The embedded default: SQLite file and the in-process bus."""
    settings = make_settings(
        f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}", paper_starting_balances_csv="USDT=10000,BTC=1"
    )
    async with running_api(settings, services=("execution",), migrate=True) as api:
        await api.system.worker.ready.wait()
        yield api
