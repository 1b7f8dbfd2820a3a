"""A running process keeps what start-up made out of the collector's full passes: walking those objects (about a
million with ccxt, SQLAlchemy and FastAPI loaded) took 120-290 ms per full collection, and every request and batch
of the moment waited (the gateway's 350/s benchmark stage, p99 179 ms). Frozen while the app runs, given back to
the collector when it stops (a test process starts many apps)."""

from __future__ import annotations

import gc
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from tests.events.helpers import events_settings, serve
from tests.support.api import Api
from tradebridge.app import SERVICES, create_events_app


async def test_the_app_runs_with_its_start_up_heap_frozen(
    api_on: Callable[..., AbstractAsyncContextManager[Api]],
) -> None:
    gc.unfreeze()  # whatever an earlier test's process left
    async with api_on(services=SERVICES) as api:
        assert gc.get_freeze_count() > 100_000
        assert (await api.client.get("/healthz")).status_code == 200
    assert gc.get_freeze_count() == 0


async def test_the_events_service_runs_with_its_start_up_heap_frozen(
    tmp_path: Path, redis_url: str, redis_prefix: str
) -> None:
    gc.unfreeze()
    settings = events_settings(tmp_path, redis_url, redis_prefix)
    async with serve(create_events_app(settings)):
        assert gc.get_freeze_count() > 100_000
    assert gc.get_freeze_count() == 0
