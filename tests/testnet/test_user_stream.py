"""Testnet fills through the user data stream (python-binance against the Binance double's WebSocket API), with
polling set so slow that only the stream, or the re-read after a gap, can find them within the test."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from execution.testnet.venue import TestnetVenue
from tests.binance_double import Account, BinanceDouble
from tests.support.eventually import eventually
from tests.testnet.test_venue import Harness, Keys, order

D = Decimal
NO_POLLING = {"poll_fast_s": 600.0, "poll_slow_s": 600.0}


@pytest.fixture
async def h(binance_double: BinanceDouble, binance_account: Account) -> AsyncIterator[Harness]:
    harness = Harness(
        binance_double, binance_account, {"u1": Keys(binance_account.api_key, binance_account.api_secret)}
    )
    yield harness
    for v in harness.venues:
        await v.stop()


async def streaming_venue(h: Harness, **over: object) -> TestnetVenue:
    venue = await h.venue(start=True, ws_url=h.double.ws_url, **{**NO_POLLING, **over})
    return venue


async def subscribed(h: Harness, venue: TestnetVenue) -> None:
    await eventually(
        lambda: venue.streaming("u1") and [h.account.api_key] in h.double.ws_subscriptions()["api"],
        timeout=5,
    )


def fills_by_trade(h: Harness, order_id: str) -> Counter[str]:
    return Counter(f.trade_id for r in h.sunk for f in r.fills if f.order_id == order_id)


async def test_a_fill_arrives_through_the_stream_without_polling(h: Harness) -> None:
    venue = await streaming_venue(h)
    o = order("LIMIT", side="SELL", qty="0.01", price="60500")
    placed = await venue.place(o)
    assert placed.changes[0].status == "NEW"
    await subscribed(h, venue)

    h.double.state.set_price("BTCUSDT", "60600")  # the resting sell fills at the double

    await eventually(lambda: "FILLED" in h.statuses(o.order_id), timeout=1.5)
    [fill] = [f for r in h.sunk for f in r.fills if f.order_id == o.order_id]
    [trade] = h.double.state.trades(h.account.api_key)
    assert (fill.trade_id, fill.price, fill.quantity, fill.liquidity) == (
        str(trade.trade_id),
        D("60500"),
        D("0.01"),
        "MAKER",
    )


@pytest.mark.parametrize("gap", ["dropped connection", "terminated subscription"])
async def test_orders_filled_during_a_gap_are_found_and_applied_once(h: Harness, gap: str) -> None:
    venue = await streaming_venue(h, stream_backoff_s=1.0, stream_max_backoff_s=1.0)
    first = order("LIMIT", side="SELL", qty="0.01", price="60500")
    second = order("LIMIT", side="SELL", qty="0.02", price="60700")
    for o in (first, second):
        assert (await venue.place(o)).changes[0].status == "NEW"
    await subscribed(h, venue)

    if gap == "dropped connection":
        h.double.reset_ws("api")
    else:
        h.double.terminate_user_streams(h.account.api_key)
    await eventually(lambda: not venue.streaming("u1"), timeout=2)
    h.double.state.set_price("BTCUSDT", "60800")  # both fill while nobody is subscribed

    await eventually(
        lambda: "FILLED" in h.statuses(first.order_id) and "FILLED" in h.statuses(second.order_id), timeout=5
    )
    await subscribed(h, venue)  # subscribed again
    for o in (first, second):
        counts = fills_by_trade(h, o.order_id)
        assert counts and set(counts.values()) == {1}, counts
        assert sum(f.quantity for r in h.sunk for f in r.fills if f.order_id == o.order_id) == o.quantity

    # and the new subscription carries the next fill
    third = order("LIMIT", side="SELL", qty="0.01", price="60900")
    await venue.place(third)
    h.double.state.set_price("BTCUSDT", "61000")
    await eventually(lambda: "FILLED" in h.statuses(third.order_id), timeout=1.5)
    assert set(fills_by_trade(h, third.order_id).values()) == {1}


async def test_while_the_stream_stays_down_polling_finds_the_fill(h: Harness) -> None:
    """Polling is the fallback while the stream is down: fast again at once, not the slow pace it kept while
    the stream was up (600 s here), and the re-subscription is 24-30 s away, so only a poll can find the fill."""
    venue = await streaming_venue(h, poll_fast_s=0.2, stream_backoff_s=30.0, stream_max_backoff_s=30.0)
    o = order("LIMIT", side="SELL", qty="0.01", price="60500")
    assert (await venue.place(o)).changes[0].status == "NEW"
    await subscribed(h, venue)

    h.double.reset_ws("api")
    await eventually(lambda: not venue.streaming("u1"), timeout=2)
    h.double.state.set_price("BTCUSDT", "60600")  # fills while the stream is down

    await eventually(lambda: "FILLED" in h.statuses(o.order_id), timeout=3)
    assert not venue.streaming("u1")  # still down: the poll found it
    assert set(fills_by_trade(h, o.order_id).values()) == {1}


# ---------------------------------------------------------------------- honest states


async def test_an_order_not_sent_within_its_time_is_expired_and_never_sent_later(h: Harness) -> None:
    venue = await h.venue(send_timeout_market_s=0.5)
    h.double.fail_next("POST", "/api/v3/order", 429, times=1000, retry_after=1)  # throttled: nothing is sent
    o = order("MARKET", price=None, qty="0.01")
    change = (await venue.place(o)).changes[0]
    assert change.status == "EXPIRED"
    assert change.reason is not None and "never sent late" in change.reason
    assert h.exchange(o.order_id) == []
