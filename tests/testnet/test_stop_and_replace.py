"""Stop orders and cancel-replace on the testnet venue, against the Binance double through ccxt: stops go as
Binance's native types (the exchange holds the trigger), and a replacement is one cancelReplace call that
leaves exactly one live order."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from tests.binance_double import Account
from tests.support.eventually import eventually
from tests.testnet.test_venue import Harness, h, one_change, order

__all__ = ["h"]

D = Decimal


def live(h: Harness, account: Account) -> list[str]:
    """Client order ids of the account's open orders on the double."""
    return sorted(o.client_order_id for o in h.double.state.orders(account.api_key) if o.is_open)


def with_stop(o, stop: str):
    return replace(o, stop_price=D(stop))


async def test_stop_loss_limit_waits_then_triggers_at_its_stop_price_and_fills(h: Harness) -> None:
    venue = await h.venue()
    o = with_stop(order("STOP_LOSS_LIMIT", side="SELL", price="58900"), "59000")
    placed = one_change(await venue.place(o), o.order_id)
    assert (placed.status, placed.triggered) == ("NEW", False)
    [ex] = h.exchange(o.order_id)
    assert (ex.type, ex.stop_price, ex.is_working) == ("STOP_LOSS_LIMIT", D("59000"), False)

    h.double.state.set_price("BTCUSDT", "59001")  # above the stop: nothing happens
    assert not h.double.state.orders(client_order_id=o.order_id)[0].is_working

    h.double.state.set_price("BTCUSDT", "59000")  # the last price reaches the stop: its limit sell works
    await eventually(lambda: "FILLED" in h.statuses(o.order_id), timeout=5)  # marketable: fills at once
    changes = [c for r in h.sunk for c in r.changes if c.order_id == o.order_id]
    assert changes[-1].triggered and changes[-1].status == "FILLED"
    fills = [f for r in h.sunk for f in r.fills if f.order_id == o.order_id]
    assert sum(f.quantity for f in fills) == D("0.01") and {f.price for f in fills} == {D("59000")}
    assert len(h.exchange(o.order_id)) == 1


async def test_take_profit_market_stop_fills_when_the_price_rises_to_it(h: Harness) -> None:
    venue = await h.venue()
    o = with_stop(order("TAKE_PROFIT", side="SELL", price=None), "61000")
    assert one_change(await venue.place(o), o.order_id).status == "NEW"
    h.double.state.set_price("BTCUSDT", "61000")
    await eventually(lambda: "FILLED" in h.statuses(o.order_id), timeout=5)
    [change] = [c for r in h.sunk for c in r.changes if c.order_id == o.order_id and c.status == "FILLED"]
    assert change.triggered


async def test_a_stop_that_would_trigger_at_once_is_rejected_with_binances_reason(h: Harness) -> None:
    venue = await h.venue()
    o = with_stop(order("STOP_LOSS", side="SELL", price=None), "61000")  # sell stop above the last price
    change = one_change(await venue.place(o), o.order_id)
    assert change.status == "REJECTED" and "trigger immediately" in (change.reason or "").lower()


async def test_cancel_replace_keeps_exactly_one_live_order(h: Harness) -> None:
    venue = await h.venue()
    old = with_stop(order("STOP_LOSS_LIMIT", side="SELL", price="58900"), "59000")
    placed = one_change(await venue.place(old), old.order_id)
    old = replace(old, status="NEW", venue_order_id=placed.venue_order_id)
    new = replace(
        order("STOP_LOSS_LIMIT", side="SELL", price="57900", qty="0.02"),
        stop_price=D("58000"),
        replaces=old.order_id,
    )
    result = await venue.replace(old, new)
    assert one_change(result, old.order_id).status == "CANCELED"
    moved = one_change(result, new.order_id)
    assert moved.status == "NEW" and moved.venue_order_id
    assert live(h, h.account) == [new.order_id]
    [ex] = h.exchange(new.order_id)
    assert (ex.type, ex.stop_price, ex.price, ex.orig_qty) == (
        "STOP_LOSS_LIMIT",
        D("58000"),
        D("57900"),
        D("0.02"),
    )
    [sent] = h.double.state.requests(path="/api/v3/order/cancelReplace")
    assert dict(sent.params)["cancelReplaceMode"] == "STOP_ON_FAILURE" and sent.status == 200


async def test_cancel_replace_of_an_order_the_exchange_no_longer_has_open_rejects_the_new_one(
    h: Harness,
) -> None:
    venue = await h.venue()
    old = order(price="50000")
    placed = one_change(await venue.place(old), old.order_id)
    old = replace(old, status="NEW", venue_order_id=placed.venue_order_id)
    h.double.state.expire_order(int(placed.venue_order_id or 0), "CANCELED")  # gone behind our back
    new = replace(order(price="49000"), replaces=old.order_id)
    change = one_change(await venue.replace(old, new), new.order_id)
    assert change.status == "REJECTED" and "could not be canceled" in (change.reason or "")
    assert h.exchange(new.order_id) == [] and live(h, h.account) == []


async def test_cancel_replace_whose_new_order_is_refused_leaves_the_cancel_done(h: Harness) -> None:
    venue = await h.venue()
    old = order(price="50000")
    placed = one_change(await venue.place(old), old.order_id)
    old = replace(old, status="NEW", venue_order_id=placed.venue_order_id)
    new = replace(order(price="50000", qty="50"), replaces=old.order_id)  # beyond the balance
    result = await venue.replace(old, new)
    assert one_change(result, old.order_id).status == "CANCELED"
    change = one_change(result, new.order_id)
    assert change.status == "REJECTED" and "new one refused" in (change.reason or "")
    assert live(h, h.account) == []


async def test_a_redelivered_replace_adopts_the_replacement_instead_of_sending_again(h: Harness) -> None:
    venue = await h.venue()
    old = order(price="50000")
    placed = one_change(await venue.place(old), old.order_id)
    old = replace(old, status="NEW", venue_order_id=placed.venue_order_id)
    new = replace(order(price="49000"), replaces=old.order_id)
    await venue.replace(old, new)
    again = await (await h.venue()).replace(old, new)
    assert one_change(again, new.order_id).status == "NEW"
    assert one_change(again, old.order_id).status == "CANCELED"
    assert live(h, h.account) == [new.order_id] and len(h.exchange(new.order_id)) == 1


async def test_recovering_a_pending_replacement_never_places_it_beside_the_old_order(h: Harness) -> None:
    """A restart finds the replacement PENDING and the exchange without it: it is REJECTED, not sent on its
    own (that would leave two live orders); the old order stands."""
    venue = await h.venue()
    old = order(price="50000")
    placed = one_change(await venue.place(old), old.order_id)
    old = replace(old, status="NEW", venue_order_id=placed.venue_order_id)
    new = replace(order(price="49000"), replaces=old.order_id)
    result = await (await h.venue()).recover([old, new])
    change = one_change(result, new.order_id)
    assert change.status == "REJECTED" and "old order stands" in (change.reason or "")
    assert h.exchange(new.order_id) == [] and live(h, h.account) == [old.order_id]
