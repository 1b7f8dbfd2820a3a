"""After a restart the venue hands each order's outcome over as soon as it is known. Found by the chaos run
(seed 21): four testnet fills made while the worker was down reached the database 2.5 minutes after its restart,
in one result with every other order's, which waited for the slowest (an order never answered may settle for
`place_budget_s`)."""

from __future__ import annotations

import time
from dataclasses import replace
from decimal import Decimal

from execution.testnet.venue import TestnetVenue
from execution.venues.base import VenueOrder
from tests.support.eventually import eventually
from tests.testnet.test_venue import Harness, h, one_change, order

__all__ = ["h"]  # the harness fixture of test_venue.py


async def test_a_fill_made_while_the_worker_was_down_is_reported_before_an_unanswered_placement_settles(
    h: Harness,
) -> None:
    first = await h.venue()
    resting = order(price="59000", qty="0.01")
    placed = one_change(await first.place(resting), resting.order_id)
    await first.stop()
    h.double.state.fill_order(int(placed.venue_order_id or 0))  # filled while no worker ran
    # Accepted for a user whose keys are gone: its placement can't be looked up and settles only at the budget.
    stranded = order(price="58000", user="u2")

    async def believed_open() -> list[VenueOrder]:
        return [stranded, replace(resting, status="NEW", venue_order_id=placed.venue_order_id)]

    second: TestnetVenue = await h.venue(start=False, place_budget_s=30.0)
    t0 = time.monotonic()
    await second.start(h.sink, believed_open)
    await eventually(
        lambda: "FILLED" in h.statuses(resting.order_id), timeout=20, message="the fill reported"
    )
    assert time.monotonic() - t0 < 15, "the fill waited for the unanswered placement"
    assert [f.quantity for r in h.sunk for f in r.fills if f.order_id == resting.order_id] == [
        Decimal("0.01")
    ]
    assert h.statuses(stranded.order_id) == []  # still settling
