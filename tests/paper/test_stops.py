"""Stop orders and cancel-replace in the paper exchange: Binance's trigger rules on the last trade price,
funds reserved at placement, the triggered order's progression under the same id, an unfundable trigger
expired with its lock released, and a replacement that leaves exactly one live order."""

from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execution.paper.exchange import (
    STOP_UNFUNDED,
    TRIGGER_IMMEDIATELY,
    OrderRequest,
    OrderStatus,
    OrderType,
    PaperExchange,
    Side,
    TimeInForce,
    stop_reached,
)
from shared.paper.ledger import Balance, FeeSchedule, Ledger, Reservation, required_reservation
from shared.paper.rules import build_rules

BUY, SELL = Side.BUY, Side.SELL
SL, SLL, TP, TPL = (
    OrderType.STOP_LOSS,
    OrderType.STOP_LOSS_LIMIT,
    OrderType.TAKE_PROFIT,
    OrderType.TAKE_PROFIT_LIMIT,
)


def lim(oid: str, acct: str, side: Side, qty: str, price: str) -> OrderRequest:
    return OrderRequest(oid, acct, "BTCUSDT", side, OrderType.LIMIT, D(qty), D(price))


def stop(
    oid: str, acct: str, side: Side, kind: OrderType, qty: str, stop_price: str, price: str | None = None
) -> OrderRequest:
    return OrderRequest(
        oid, acct, "BTCUSDT", side, kind, D(qty), D(price) if price else None, TimeInForce.GTC, D(stop_price)
    )


def bal(e: PaperExchange, acct: str, asset: str) -> Balance:
    assert isinstance(e.ledger, Ledger)
    return e.ledger.balance(acct, asset)


@pytest.fixture
def ex() -> PaperExchange:
    """A market last traded at 100 with a maker ("M") quoting 99 / 101 .. 120 on both sides."""
    e = PaperExchange(build_rules(), FeeSchedule(D(0), D(0)))
    e.deposit("M", "BTC", D("100"))
    e.deposit("M", "USDT", D("100000"))
    e.deposit("U", "BTC", D("1"))
    e.deposit("U", "USDT", D("1000"))
    e.deposit("T", "BTC", D("10"))
    e.deposit("T", "USDT", D("10000"))
    e.place(lim("m-ask-100", "M", SELL, "0.1", "100"))
    e.place(lim("t-first", "T", BUY, "0.1", "100"))  # last trade price: 100
    assert e.last_price("BTCUSDT") == D("100")
    return e


def trade_at(e: PaperExchange, oid: str, price: str, quote: str = "0.1") -> None:
    """Make the last trade price ``price``: T takes 0.1 of a fresh M quote of ``quote`` at it."""
    e.place(lim(f"{oid}-m", "M", SELL, quote, price))
    assert e.place(lim(f"{oid}-t", "T", BUY, "0.1", price)).trades[0].price == D(price)


@pytest.mark.parametrize(
    ("kind", "side", "stop_price", "rising"),
    [(SL, SELL, "95", False), (SL, BUY, "105", True), (TP, SELL, "105", True), (TP, BUY, "95", False)],
)
def test_stop_market_triggers_on_the_last_trade_price_per_binance(
    ex: PaperExchange, kind: OrderType, side: Side, stop_price: str, rising: bool
) -> None:
    ex.place(lim("m-bid", "M", BUY, "1", "90"))
    ex.place(lim("m-ask", "M", SELL, "1", "110"))
    placed = ex.place(stop("s", "U", side, kind, "0.1", stop_price))
    assert placed.order.status == OrderStatus.NEW and not placed.order.triggered
    assert placed.order.stop_price == D(stop_price) and placed.order.type == kind
    # reserved at placement: the base for a sell, quote at the band above the stop price for a buy
    if side is SELL:
        assert bal(ex, "U", "BTC").locked == D("0.1")
    else:
        assert bal(ex, "U", "USDT").locked == D("0.1") * D(stop_price) * D("1.05")
    depth = ex.depth("BTCUSDT")
    assert depth.bids == ((D("90"), D("1")),) and depth.asks == (
        (D("110"), D("1")),
    )  # the stop: not on the book
    # a trade one tick short of the stop price: nothing
    short = D(stop_price) + (D("-1") if rising else D("1"))
    trade_at(ex, "short", str(short))
    assert ex.take_triggered() == [] and ex.order("s").status == OrderStatus.NEW
    trade_at(ex, "reach", stop_price, quote="0.2")  # 0.1 left offered at the stop price
    (report,) = ex.take_triggered()
    assert report.order.order_id == "s" and report.order.triggered and report.order.type == kind
    assert report.order.status == OrderStatus.FILLED
    assert report.trades[0].price == (D("90") if side is SELL else D(stop_price))
    assert bal(ex, "U", "BTC").locked == 0 and bal(ex, "U", "USDT").locked == 0


def test_stop_that_would_trigger_immediately_is_rejected_and_reserves_nothing(ex: PaperExchange) -> None:
    for kind, side, price in [(SL, SELL, "100"), (SL, BUY, "99"), (TP, SELL, "99"), (TP, BUY, "101")]:
        r = ex.place(stop(f"x-{kind}-{side}", "U", side, kind, "0.1", price))
        assert r.order.status == OrderStatus.REJECTED and r.order.reason == TRIGGER_IMMEDIATELY
    assert bal(ex, "U", "BTC") == Balance(D("1"), D("0")) and bal(ex, "U", "USDT") == Balance(
        D("1000"), D("0")
    )


def test_stop_limit_rests_at_its_limit_after_the_trigger(ex: PaperExchange) -> None:
    ex.place(lim("m-bid", "M", BUY, "1", "90"))
    placed = ex.place(stop("s", "U", SELL, SLL, "0.1", "95", "94"))
    assert placed.order.status == OrderStatus.NEW and bal(ex, "U", "BTC").locked == D("0.1")
    trade_at(ex, "down", "95")
    (report,) = ex.take_triggered()
    assert report.order.status == OrderStatus.NEW and report.order.triggered  # on the book now, at 94
    assert ex.best_ask("BTCUSDT") == D("94") and ex.order("s").triggered
    assert bal(ex, "U", "BTC").locked == D("0.1")
    assert ex.cancel("s").order.status == OrderStatus.CANCELED and bal(ex, "U", "BTC").locked == 0


def test_unfundable_stop_market_buy_expires_and_releases_its_lock(ex: PaperExchange) -> None:
    """Reserved against the band above its stop (105 x 1.05 = 110.25): the price gaps to 120, nothing under
    the reserved cap is offered, so the triggered order EXPIRES with every unit released, as Binance expires
    a triggered order the account cannot fund."""
    ex.place(stop("s", "U", BUY, SL, "0.1", "105"))
    locked = bal(ex, "U", "USDT").locked
    assert locked == D("11.025")
    ex.place(lim("m-ask", "M", SELL, "1", "121"))
    trade_at(ex, "gap", "120")  # the 120 quote is taken; the best ask is 121 now
    (report,) = ex.take_triggered()
    assert report.order.status == OrderStatus.EXPIRED and report.order.reason == STOP_UNFUNDED
    assert report.order.triggered and report.order.filled_quantity == 0
    assert [j.kind for j in report.journal] == ["RELEASE"]
    assert bal(ex, "U", "USDT") == Balance(D("1000"), D("0"))


def test_unfunded_at_placement_is_rejected(ex: PaperExchange) -> None:
    r = ex.place(stop("s", "U", SELL, SL, "2", "95"))
    assert r.order.status == OrderStatus.REJECTED and "insufficient" in (r.order.reason or "").lower()


def test_stop_with_upstream_reservation_and_cancel_releases_all() -> None:
    rules = build_rules()
    e = PaperExchange(rules, FeeSchedule(D(10), D(10)), ledger=Ledger(scope="system/"))  # users held upstream
    need = required_reservation(rules["BTCUSDT"], e.fees, True, D("0.1"), None, D("105"))
    assert need.price_cap == D("110.25")
    with pytest.raises(Exception, match="does not match"):
        e.place(stop("bad", "U", BUY, SL, "0.1", "105"), Reservation("USDT", D("1"), None))
    r = e.place(stop("s", "U", BUY, SL, "0.1", "105"), need)
    assert r.order.status == OrderStatus.NEW and r.journal == ()
    assert e.locked_for("s") == need.amount
    c = e.cancel("s")
    assert c.order.status == OrderStatus.CANCELED and c.journal[0].kind == "RELEASE"
    assert c.journal[0].postings[1].amount == need.amount


def test_triggers_cascade_in_a_fixed_order(ex: PaperExchange) -> None:
    """Two sell stops at 96 and 95 (later placed first) and a buy stop: a drop to 96 triggers the 96 one,
    whose sale at 95 triggers the 95 one; the reports come out in that order, trades before the next."""
    ex.place(lim("m-bid-95", "M", BUY, "0.1", "95"))
    ex.place(lim("m-bid-94", "M", BUY, "0.1", "94"))
    ex.place(stop("s95", "U", SELL, SL, "0.1", "95"))
    ex.place(stop("s96", "U", SELL, SL, "0.1", "96"))
    ex.place(stop("b", "U", BUY, SL, "0.1", "130"))
    trade_at(ex, "drop", "96")
    reports = ex.take_triggered()
    assert [r.order.order_id for r in reports] == ["s96", "s95"]
    assert [r.trades[0].price for r in reports] == [D("95"), D("94")]
    assert ex.last_price("BTCUSDT") == D("94") and ex.order("b").status == OrderStatus.NEW
    assert [o.order_id for o in ex.pending_stops("BTCUSDT")] == ["b"]


def test_restore_stop_after_restart() -> None:
    """A waiting stop restored after a restart (its lock held upstream) triggers as before; so does one that a
    sweep's first fill reaches though the sweep ends beyond it."""
    fresh = PaperExchange(build_rules(), FeeSchedule(D(0), D(0)), ledger=Ledger(scope="system/"))
    for acct in ("system/M", "system/T"):
        fresh.deposit(acct, "BTC", D("10"))
        fresh.deposit(acct, "USDT", D("10000"))
    fresh.restore_stop(stop("s", "U", SELL, SL, "0.1", "95"), Reservation("BTC", D("0.1"), None))
    assert fresh.order("s").status == OrderStatus.NEW and fresh.locked_for("s") == D("0.1")
    fresh.set_last_price("BTCUSDT", D("100"))
    fresh.place(lim("bid", "system/M", BUY, "0.1", "90"))
    fresh.place(lim("ask-95", "system/M", SELL, "0.1", "95"))
    fresh.place(lim("ask-99", "system/M", SELL, "0.1", "99"))
    sweep = fresh.place(lim("sweep", "system/T", BUY, "0.2", "99"))
    assert [t.price for t in sweep.trades] == [D("95"), D("99")]
    (report,) = fresh.take_triggered()
    assert report.order.order_id == "s" and report.order.status == OrderStatus.FILLED
    assert report.trades[0].price == D("90") and [j.kind for j in report.journal] == ["SETTLE"]


def test_replace_keeps_exactly_one_live_order(ex: PaperExchange) -> None:
    ex.place(lim("b1", "U", BUY, "1", "90"))
    assert bal(ex, "U", "USDT").locked == D("90")
    # 1000 free: 910 + the 90 the old order frees covers 1 x 95
    done, new = ex.replace("b1", lim("b2", "U", BUY, "1", "95"))
    assert done is not None and done.order.status == OrderStatus.CANCELED
    assert new.order.status == OrderStatus.NEW
    assert [o.order_id for o in ex.open_orders("U")] == ["b2"] and bal(ex, "U", "USDT").locked == D("95")
    # too big for free + freed: refused, the old order untouched
    done, new = ex.replace("b2", lim("b3", "U", BUY, "20", "95"))
    assert done is None and new.order.status == OrderStatus.REJECTED
    assert [o.order_id for o in ex.open_orders("U")] == ["b2"] and bal(ex, "U", "USDT").locked == D("95")
    # a stop replaced by a stop at another trigger; one that would trigger at once is refused atomically
    ex.place(stop("s1", "U", SELL, SL, "0.5", "95"))
    done, new = ex.replace("s1", stop("s2", "U", SELL, SL, "0.5", "101"))
    assert done is None and new.order.reason == TRIGGER_IMMEDIATELY
    done, new = ex.replace("s1", stop("s2", "U", SELL, SL, "0.6", "94"))
    assert done is not None and new.order.status == OrderStatus.NEW and bal(ex, "U", "BTC").locked == D("0.6")
    assert sorted(o.order_id for o in ex.open_orders("U")) == ["b2", "s2"]


@settings(max_examples=60, deadline=None)
@given(
    prices=st.lists(st.integers(min_value=80, max_value=120), min_size=1, max_size=12),
    stops=st.lists(
        st.tuples(st.sampled_from([SL, TP]), st.sampled_from([BUY, SELL]), st.integers(80, 120)),
        min_size=1,
        max_size=6,
    ),
)
def test_every_stop_triggers_exactly_when_binance_says(
    prices: list[int], stops: list[tuple[OrderType, Side, int]]
) -> None:
    """Stops (limit variants far off the market, so they only rest) trigger when, and only when, a last trade
    price reaches them by Binance's rule; locks always equal what the open orders hold."""
    e = PaperExchange(build_rules(), FeeSchedule(D(0), D(0)))
    e.deposit("M", "BTC", D("100"))
    e.deposit("M", "USDT", D("100000"))
    e.deposit("U", "BTC", D("10"))
    e.deposit("U", "USDT", D("100000"))
    e.set_last_price("BTCUSDT", D("100"))
    accepted: dict[str, tuple[OrderType, Side, D]] = {}
    for i, (kind, side, sp) in enumerate(stops):
        kind_l = SLL if kind is SL else TPL
        limit = "200" if side is SELL else "50"
        r = e.place(stop(f"s{i}", "U", side, kind_l, "0.1", str(sp), limit))
        if r.order.status == OrderStatus.NEW:
            accepted[f"s{i}"] = (kind_l, side, D(sp))
        else:
            assert r.order.reason == TRIGGER_IMMEDIATELY and stop_reached(kind_l, side, D(sp), D(100))
    fired: list[str] = []
    for n, p in enumerate(prices):
        e.place(lim(f"pm{n}", "M", SELL, "0.1", str(p)))
        assert e.place(lim(f"pu{n}", "U", BUY, "0.1", str(p))).trades[0].price == D(p)
        fired_now = [r.order.order_id for r in e.take_triggered()]
        for oid, (k, sd, at) in accepted.items():
            if oid in fired:
                continue
            assert (oid in fired_now) == stop_reached(k, sd, at, D(p)), (oid, p)
        fired += fired_now
        for oid in fired_now:
            assert e.order(oid).triggered and e.order(oid).status == OrderStatus.NEW
    locks = e.open_locks()
    assert isinstance(e.ledger, Ledger)
    for asset in ("BTC", "USDT"):
        assert e.ledger.balance("U", asset).locked == locks.get(("U", asset), D(0))
