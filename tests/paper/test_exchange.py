from decimal import Decimal as D

import pytest

from execution.paper.exchange import OrderRequest, OrderStatus, OrderType, PaperExchange, Side, TimeInForce
from shared.errors import Conflict, InvalidInput, NotFound
from shared.paper.ledger import (
    FEE_ACCOUNT,
    Balance,
    FeeSchedule,
    JournalRecorder,
    Ledger,
    required_reservation,
    reserve_entry,
)
from shared.paper.rules import build_rules

BUY, SELL = Side.BUY, Side.SELL


def lim(
    oid: str,
    acct: str,
    side: Side,
    qty: str,
    price: str,
    tif: TimeInForce = TimeInForce.GTC,
    symbol: str = "BTCUSDT",
) -> OrderRequest:
    return OrderRequest(oid, acct, symbol, side, OrderType.LIMIT, D(qty), D(price), tif)


def mkt(oid: str, acct: str, side: Side, qty: str) -> OrderRequest:
    return OrderRequest(oid, acct, "BTCUSDT", side, OrderType.MARKET, D(qty))


@pytest.fixture
def ex() -> PaperExchange:
    e = PaperExchange(build_rules(), FeeSchedule(D(10), D(10)))
    e.deposit("A", "BTC", D("1"))
    e.deposit("B", "USDT", D("1000"))
    return e


def bal(e: PaperExchange, acct: str, asset: str) -> Balance:
    assert isinstance(e.ledger, Ledger)
    return e.ledger.balance(acct, asset)


def test_limit_fill_settles_both_sides_with_fees_in_quote(ex: PaperExchange) -> None:
    r1 = ex.place(lim("s", "A", SELL, "0.5", "100"))
    assert r1.order.status == OrderStatus.NEW and [j.kind for j in r1.journal] == ["RESERVE"]
    assert bal(ex, "A", "BTC") == Balance(D("0.5"), D("0.5"))
    r2 = ex.place(lim("b", "B", BUY, "0.2", "101"))
    assert r2.order.status == OrderStatus.FILLED and r2.order.average_price == D("100")
    (t,) = r2.trades
    assert (t.trade_id, t.price, t.quantity, t.quote_quantity) == ("BTCUSDT-1", D("100"), D("0.2"), D("20"))
    assert (t.maker_order_id, t.taker_order_id, t.maker_account, t.taker_account) == ("s", "b", "A", "B")
    assert (t.maker_fee, t.taker_fee, t.fee_asset, t.aggressor_side) == (D("0.02"), D("0.02"), "USDT", BUY)
    assert [j.kind for j in r2.journal] == ["RESERVE", "SETTLE"]
    assert all(j.is_balanced() for j in r2.journal)
    assert r2.maker_updates[0].status == OrderStatus.PARTIALLY_FILLED
    assert r2.maker_updates[0].filled_quantity == D("0.2")
    # buyer reserved 0.2*101*1.001 = 20.2202, paid 20.02, got 0.2002 back (price improvement)
    assert bal(ex, "B", "USDT") == Balance(D("979.98"), D("0"))
    assert bal(ex, "B", "BTC") == Balance(D("0.2"), D("0"))
    assert bal(ex, "A", "BTC") == Balance(D("0.5"), D("0.3"))
    assert bal(ex, "A", "USDT") == Balance(D("19.98"), D("0"))
    assert bal(ex, FEE_ACCOUNT, "USDT") == Balance(D("0.04"), D("0"))
    assert ex.last_trade("BTCUSDT") == t
    # cancel releases exactly the remainder 0.3
    c = ex.cancel("s", "A")
    assert c.order.status == OrderStatus.CANCELED and c.order.filled_quantity == D("0.2")
    assert [(p.bucket, p.amount) for p in c.journal[0].postings] == [
        ("locked", D("-0.3")),
        ("free", D("0.3")),
    ]
    assert bal(ex, "A", "BTC") == Balance(D("0.8"), D("0"))
    assert isinstance(ex.ledger, Ledger)
    assert ex.ledger.total("BTC") == D("1") and ex.ledger.total("USDT") == D("1000")


def test_partly_filled_buy_cancel_releases_only_remainder(ex: PaperExchange) -> None:
    ex.place(lim("s", "A", SELL, "0.2", "100"))
    r = ex.place(lim("b", "B", BUY, "1", "100"))
    assert r.order.status == OrderStatus.PARTIALLY_FILLED and r.order.remaining_quantity == D("0.8")
    assert bal(ex, "B", "USDT").locked == D("80.08")  # 0.8 * 100 * 1.001
    assert ex.locked_for("b") == D("80.08")
    c = ex.cancel("b")
    assert c.journal[0].kind == "RELEASE" and c.journal[0].postings[1].amount == D("80.08")
    assert bal(ex, "B", "USDT") == Balance(D("979.98"), D("0"))
    with pytest.raises(Conflict):
        ex.cancel("b")


def test_unaffordable_order_rejected_nothing_locked(ex: PaperExchange) -> None:
    r = ex.place(lim("b", "B", BUY, "10", "100"))  # needs 1001 USDT
    assert r.order.status == OrderStatus.REJECTED and "insufficient USDT" in (r.order.reason or "")
    assert r.journal == () and bal(ex, "B", "USDT") == Balance(D("1000"), D("0"))
    r = ex.place(lim("b", "B", BUY, "9.99", "100"))  # 999.999 fits: same id may be retried
    assert r.order.status == OrderStatus.NEW and bal(ex, "B", "USDT").free == D("0.001")


def test_rule_violations_reject_with_reason(ex: PaperExchange) -> None:
    assert "PRICE_FILTER" in (ex.place(lim("x", "B", BUY, "1", "100.001")).order.reason or "")
    assert "LOT_SIZE" in (ex.place(lim("x", "B", BUY, "0.000001", "100")).order.reason or "")
    assert "MIN_NOTIONAL" in (ex.place(lim("x", "B", BUY, "0.01", "100")).order.reason or "")
    assert "SYMBOL" in (ex.place(lim("x", "B", BUY, "1", "1", symbol="DOGEUSDT")).order.reason or "")
    assert ex.place(lim("x", "B", BUY, "1", "100", symbol="btc/usdt")).order.symbol == "BTCUSDT"


def test_market_order_walks_band_then_expires(ex: PaperExchange) -> None:
    for i, p in enumerate(["100", "104", "106"]):
        ex.place(lim(f"s{i}", "A", SELL, "0.1", p))
    r = ex.place(mkt("m", "B", BUY, "0.3"))
    assert [t.price for t in r.trades] == [D("100"), D("104")]
    assert r.order.status == OrderStatus.EXPIRED and r.order.reason == "MARKET_PROTECTION_BAND"
    assert r.order.filled_quantity == D("0.2") and r.order.average_price == D("102")
    assert [j.kind for j in r.journal] == ["RESERVE", "SETTLE", "SETTLE", "RELEASE"]
    assert r.journal[0].postings[1].amount == D("0.3") * D("105") * D("1.001")  # band price 105
    assert bal(ex, "B", "USDT") == Balance(D("1000") - D("20.4") - D("0.0204"), D("0"))
    assert ex.best_ask("BTCUSDT") == D("106")


def test_market_order_without_liquidity_expires(ex: PaperExchange) -> None:
    r = ex.place(mkt("m", "A", SELL, "0.1"))
    assert r.order.status == OrderStatus.EXPIRED and r.order.reason == "NO_LIQUIDITY" and r.journal == ()
    assert bal(ex, "A", "BTC") == Balance(D("1"), D("0"))


def test_ioc_fok_and_stp_statuses(ex: PaperExchange) -> None:
    ex.deposit("A", "USDT", D("1000"))
    ex.place(lim("s", "A", SELL, "0.1", "100"))
    r = ex.place(lim("f", "B", BUY, "0.2", "100", TimeInForce.FOK))
    assert (r.order.status, r.order.reason, r.trades) == (OrderStatus.EXPIRED, "FOK_NOT_FILLABLE", ())
    assert bal(ex, "B", "USDT") == Balance(D("1000"), D("0"))
    r = ex.place(lim("i", "B", BUY, "0.2", "100", TimeInForce.IOC))
    assert (r.order.status, r.order.reason, r.order.filled_quantity) == (
        OrderStatus.EXPIRED,
        "IOC_REMAINDER",
        D("0.1"),
    )
    ex.place(lim("s2", "A", SELL, "0.1", "100"))
    r = ex.place(lim("self", "A", BUY, "0.1", "100"))
    assert (r.order.status, r.order.reason, r.trades) == (OrderStatus.EXPIRED, "SELF_TRADE_PREVENTION", ())
    assert bal(ex, "A", "USDT").locked == 0


def test_duplicates_and_foreign_cancels(ex: PaperExchange) -> None:
    ex.place(lim("s", "A", SELL, "0.1", "100"))
    with pytest.raises(Conflict):
        ex.place(lim("s", "A", SELL, "0.1", "100"))
    with pytest.raises(NotFound):
        ex.cancel("s", "B")
    with pytest.raises(NotFound):
        ex.cancel("missing")


def test_depth_best_open_orders_and_quote(ex: PaperExchange) -> None:
    ex.place(lim("s1", "A", SELL, "0.1", "101"))
    ex.place(lim("s2", "A", SELL, "0.2", "102"))
    ex.place(lim("s3", "A", SELL, "0.3", "102"))
    ex.place(lim("b1", "B", BUY, "0.1", "99"))
    d = ex.depth("BTCUSDT", 5)
    assert d.asks == ((D("101"), D("0.1")), (D("102"), D("0.5"))) and d.bids == ((D("99"), D("0.1")),)
    assert (ex.best_bid("BTCUSDT"), ex.best_ask("BTCUSDT")) == (D("99"), D("101"))
    assert {o.order_id for o in ex.open_orders("A")} == {"s1", "s2", "s3"}
    q = ex.quote("BTCUSDT", "buy", D("0.4"))
    assert (q.fillable_quantity, q.avg_price, q.worst_price) == (D("0.4"), D("101.75"), D("102"))
    q = ex.quote("BTCUSDT", Side.BUY, D("1"))
    assert q.fillable_quantity == D("0.6")
    assert ex.depth("BTCUSDT", 5) == d  # quoting changed nothing
    q = ex.quote("BTCUSDT", Side.SELL, D("1"))
    assert (q.fillable_quantity, q.worst_price) == (D("0.1"), D("99"))


def test_reservation_made_upstream() -> None:
    """The gateway reserves in its own store; the exchange only settles and releases."""
    rules = build_rules()
    fees = FeeSchedule()
    ledger = Ledger()  # plays the database
    e = PaperExchange(rules, fees, ledger)
    e.deposit("A", "BTC", D("1"))
    e.deposit("B", "USDT", D("1000"))
    req = lim("b", "B", BUY, "0.5", "100")
    res = required_reservation(rules["BTCUSDT"], fees, True, req.quantity, req.price)
    assert (res.asset, res.amount) == ("USDT", D("50.05"))
    ledger.apply(reserve_entry("B", res.asset, res.amount, "b"))  # done "in the gateway transaction"
    r = e.place(req, reservation=res)
    assert r.journal == () and r.order.status == OrderStatus.NEW
    r = e.place(lim("s", "A", SELL, "0.2", "99"))
    assert [j.kind for j in r.journal] == ["RESERVE", "SETTLE"]
    assert ledger.balance("B", "USDT") == Balance(D("949.95"), D("30.03"))
    with pytest.raises(InvalidInput):
        e.place(lim("b2", "B", BUY, "0.5", "100"), reservation=res.__class__("USDT", D("1"), D("100")))
    # a market buy reserved upstream against a reference price: its fills are capped at that price
    mres = required_reservation(rules["BTCUSDT"], fees, True, D("0.1"), None, reference_price=D("100"))
    assert mres.price_cap == D("105")
    rec = JournalRecorder({("A", "BTC"): D("1")})  # free balances as the adapter reads them
    e2 = PaperExchange(rules, fees, rec)
    e2.place(lim("s", "A", SELL, "0.1", "104"))
    r = e2.place(mkt("m", "B", BUY, "0.1"), reservation=mres)
    assert r.order.status == OrderStatus.FILLED and [j.kind for j in rec.entries] == ["RESERVE", "SETTLE"]


def test_forget_drops_only_final_orders() -> None:
    """A long-running worker forgets final orders so memory does not grow with every order ever placed."""
    from decimal import Decimal as D

    from execution.paper.exchange import OrderRequest, OrderType, PaperExchange, Side, TimeInForce

    ex = PaperExchange()
    ex.deposit("a", "BTC", D("1"))
    ex.deposit("b", "USDT", D("100000"))
    ex.place(
        OrderRequest("s1", "a", "BTCUSDT", Side.SELL, OrderType.LIMIT, D("0.01"), D("60000"), TimeInForce.GTC)
    )
    ex.place(
        OrderRequest("s2", "a", "BTCUSDT", Side.SELL, OrderType.LIMIT, D("0.01"), D("61000"), TimeInForce.GTC)
    )
    ex.place(
        OrderRequest("b1", "b", "BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.01"), D("60000"), TimeInForce.GTC)
    )
    assert ex.forget("s1") and ex.forget("b1")
    assert not ex.forget("s2") and ex.is_open("s2")
    assert not ex.is_open("s1")
    assert ex.cancel("s2").order.status == "CANCELED"
