"""The testnet venue's long-running loops end when cancelled, even when the cancellation arrives as the event
they wait on is set (the poller's wake-up: an order was placed; the status publisher's: a user's stream went up
or down). They waited with Python 3.11's `asyncio.wait_for`, which then returns normally: the loop went on, and
a shutdown that cancels it without `stop()` (a task group, `asyncio.run`'s final cancel) waited for ever."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from execution.testnet.venue import TestnetVenue, TestnetVenueConfig
from execution.venues.base import VenueResult
from shared.clock import SystemClock
from shared.marketdata import MemoryMarketData

NOWHERE = "http://127.0.0.1:9"  # nothing listens: no order is tracked and no stream connects in these tests


async def _no_keys(user_id: str) -> None:
    return None


async def _sink(result: VenueResult) -> None:
    return None


@pytest.fixture
async def venue() -> AsyncIterator[TestnetVenue]:
    v = TestnetVenue(TestnetVenueConfig(base_url=NOWHERE, ws_url="ws://127.0.0.1:9"), _no_keys, SystemClock())
    await v.start(_sink, status_store=MemoryMarketData())
    yield v
    await v.stop()


def _task(venue: TestnetVenue, name: str) -> asyncio.Task[object]:
    found = [t for t in (venue._poller, *venue._tasks) if t is not None and t.get_name() == name]
    assert len(found) == 1, f"no running {name}"
    return found[0]


async def _cancelled_as_set(task: asyncio.Task[object], event: asyncio.Event) -> None:
    done, _ = await asyncio.wait({task}, timeout=0.2)
    assert not done, "the loop should be waiting"
    event.set()
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=3)
    assert done, "the loop carried on after its cancellation"
    assert task.cancelled()


async def test_the_poller_ends_when_cancelled_as_it_is_woken(venue: TestnetVenue) -> None:
    await _cancelled_as_set(_task(venue, "testnet-poller"), venue._wake)


async def test_the_status_publisher_ends_when_cancelled_as_a_stream_changes(venue: TestnetVenue) -> None:
    await _cancelled_as_set(_task(venue, "testnet-venue-status"), venue._status_changed)
