from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.settings import Settings
from tests.events.helpers import Served, events_settings, serve
from tradebridge.app import create_events_app


@pytest.fixture
def settings(tmp_path: Path, redis_url: str, redis_prefix: str) -> Settings:
    return events_settings(tmp_path, redis_url, redis_prefix)


@pytest.fixture
async def events(settings: Settings) -> AsyncIterator[Served]:
    """One events service on real Redis, on a free port."""
    async with serve(create_events_app(settings)) as served:
        yield served
