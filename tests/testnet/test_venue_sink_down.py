"""A result the venue found by itself (a poll, the user stream, a late answer) reaches the database even when
the worker cannot persist it at first (PostgreSQL restarting: chaos seed 17 logged "the worker could not persist
a testnet result" and dropped it). The venue has already folded it into what it tracks, and no longer follows an
order it reported final, so a result given up on was lost until reconciliation repaired it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from execution.testnet.venue import TestnetVenue
from execution.venues.base import VenueResult
from shared.errors import Unavailable
from tests.binance_double import Account, BinanceDouble
from tests.support.eventually import eventually
from tests.testnet.test_venue import Harness, Keys, one_change, order


class FlakySink(Harness):
    """The worker's sink while its database is down for the first `down` results."""

    down: int = 0

    async def sink(self, result: VenueResult) -> None:
        if self.down > 0:
            self.down -= 1
            raise Unavailable("database unavailable")
        self.sunk.append(result)


@pytest.fixture
async def h(binance_double: BinanceDouble, binance_account: Account) -> AsyncIterator[FlakySink]:
    harness = FlakySink(
        binance_double, binance_account, {"u1": Keys(binance_account.api_key, binance_account.api_secret)}
    )
    yield harness
    for v in harness.venues:
        await v.stop()


async def test_a_fill_found_by_polling_is_persisted_after_the_database_comes_back(h: FlakySink) -> None:
    venue: TestnetVenue = await h.venue(max_backoff_s=0.2)
    o = order()
    placed = one_change(await venue.place(o), o.order_id)
    assert placed.status == "NEW"
    h.down = 2
    h.double.state.fill_order(int(placed.venue_order_id or 0))  # the poll finds it filled
    await eventually(lambda: "FILLED" in h.statuses(o.order_id), timeout=15, message="the fill persisted")
    assert [f.quantity for r in h.sunk for f in r.fills if f.order_id == o.order_id] == [Decimal("0.01")]
    assert h.down == 0
