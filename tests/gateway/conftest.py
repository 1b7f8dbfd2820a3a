from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.support.api import Api, make_settings, running_api


@pytest.fixture
async def api(pg_url: str, redis_url: str, redis_prefix: str) -> AsyncIterator[Api]:
    """The gateway on its own PostgreSQL database and Redis key prefix."""
    settings = make_settings(pg_url, redis_url=redis_url, redis_prefix=redis_prefix)
    async with running_api(settings) as api:
        yield api
