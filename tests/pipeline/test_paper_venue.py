"""The paper venue with reservations made upstream (by the gateway), in memory: no database needed."""

from __future__ import annotations

from decimal import Decimal as D

from execution.venues.base import VenueOrder
from execution.venues.paper import PaperVenue
from shared.clock import ManualClock
from shared.paper.ledger import FeeSchedule, required_reservation
from shared.paper.rules import build_rules

RULES = build_rules()


def _order(
    oid: str, user: str, side: str, type_: str, qty: str, price: str | None, reference: str | None = None
) -> VenueOrder:
    res = required_reservation(
        RULES["BTCUSDT"],
        FeeSchedule(),
        side == "BUY",
        D(qty),
        D(price) if price else None,
        D(reference) if reference else None,
    )
    return VenueOrder(
        oid,
        user,
        "BTCUSDT",
        side,
        type_,
        "GTC" if type_ == "LIMIT" else "IOC",
        D(qty),
        D(price) if price else None,
        "PENDING",
        reserved_asset=res.asset,
        reserved_amount=res.amount,
        reserved_price_cap=res.price_cap,
    )


def _net(result, account: str, asset: str) -> tuple[D, D]:
    free = locked = D(0)
    for e in result.journal:
        for p in e.postings:
            if p.account == account and p.asset == asset:
                if p.bucket == "free":
                    free += p.amount
                else:
                    locked += p.amount
    return free, locked


def test_market_buy_reserved_at_a_higher_price_fills_lower_and_refunds() -> None:
    venue = PaperVenue(RULES, FeeSchedule(), ManualClock())
    venue.place_now(_order("s", "seller", "SELL", "LIMIT", "0.01", "60000"))
    buy = _order(
        "b", "buyer", "BUY", "MARKET", "0.01", None, reference="61000"
    )  # the ask was 61000 at acceptance
    result = venue.place_now(buy)
    assert [c.status for c in result.changes if c.order_id == "b"] == ["FILLED"]
    free, locked = _net(result, "buyer", "USDT")
    assert buy.reserved_amount is not None
    assert locked == -buy.reserved_amount  # the whole lock is consumed
    assert free == buy.reserved_amount - D("600") - D("0.6")  # price improvement and fee headroom come back


def test_market_buy_with_no_liquidity_releases_the_whole_reservation() -> None:
    venue = PaperVenue(RULES, FeeSchedule(), ManualClock())
    buy = _order("b", "buyer", "BUY", "MARKET", "0.01", None, reference="61000")
    result = venue.place_now(buy)
    assert [c.status for c in result.changes] == ["EXPIRED"]
    assert buy.reserved_amount is not None
    assert _net(result, "buyer", "USDT") == (buy.reserved_amount, -buy.reserved_amount)
