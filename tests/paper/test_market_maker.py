from dataclasses import replace
from decimal import Decimal as D

import pytest

from execution.paper.exchange import OrderRequest, OrderStatus, OrderType, PaperExchange, Side
from execution.paper.market_maker import (
    CancelCommand,
    MarketMaker,
    MarketMakerConfig,
    PlaceCommand,
    market_maker_enabled,
)
from shared.paper.ledger import Ledger
from shared.paper.rules import build_rules

CFG = MarketMakerConfig(levels=5, spread_bps=D(10), level_step_bps=D(5), notional_per_level=D(1000))


def setup(usdt: str = "100000", btc: str = "10") -> tuple[PaperExchange, MarketMaker]:
    ex = PaperExchange(build_rules(), ledger=Ledger())
    mm = MarketMaker(CFG)
    mm.fund(ex, "USDT", D(usdt))
    mm.fund(ex, "BTC", D(btc))
    return ex, mm


def test_ladder_around_reference() -> None:
    ex, mm = setup()
    reports = mm.requote(ex, "BTCUSDT", D("50000"))
    assert len(reports) == 10 and all(r.order.status == OrderStatus.NEW for r in reports)
    d = ex.depth("BTCUSDT", 10)
    assert [p for p, _ in d.bids] == [D("49975"), D("49950"), D("49925"), D("49900"), D("49875")]
    assert [p for p, _ in d.asks] == [D("50025"), D("50050"), D("50075"), D("50100"), D("50125")]
    assert all(q == D("0.02") for _, q in d.bids + d.asks)  # 1000 USDT / 50000, on the step grid


def test_requote_is_a_minimal_diff() -> None:
    ex, mm = setup()
    mm.requote(ex, "BTCUSDT", D("50000"))
    assert mm.plan(ex, "BTCUSDT", D("50000")) == []  # nothing changed, nothing churned
    plan = mm.plan(ex, "BTCUSDT", D("50025"))  # one level step up: most levels survive
    cancels = [c for c in plan if isinstance(c, CancelCommand)]
    places = [c for c in plan if isinstance(c, PlaceCommand)]
    assert len(cancels) == 2 and len(places) == 2  # asks moved out by one step, bids unchanged
    assert plan.index(cancels[-1]) < plan.index(places[0])  # cancels first: they free the funds
    for c in plan:
        if isinstance(c, CancelCommand):
            ex.cancel(c.order_id)
        else:
            ex.place(c.request)
    assert ex.best_bid("BTCUSDT") == D("49975") and ex.best_ask("BTCUSDT") == D("50075")
    assert len(ex.open_orders(CFG.account)) == 10


def test_quotes_only_what_it_can_afford() -> None:
    ex, mm = setup(usdt="2500", btc="0.05")  # two bids' worth of USDT (with fees), two asks' worth of BTC
    reports = mm.requote(ex, "BTCUSDT", D("50000"))
    assert all(r.order.status == OrderStatus.NEW for r in reports)
    d = ex.depth("BTCUSDT")
    assert len(d.bids) == 2 and len(d.asks) == 2
    assert isinstance(ex.ledger, Ledger)
    assert ex.ledger.balance(CFG.account, "USDT").free >= 0


def test_market_order_fills_near_price_with_slippage() -> None:
    ex, mm = setup()
    mm.requote(ex, "BTCUSDT", D("50000"))
    ex.deposit("user", "USDT", D("10000"))
    small = ex.place(OrderRequest("m1", "user", "BTCUSDT", Side.BUY, OrderType.MARKET, D("0.01")))
    assert small.order.status == OrderStatus.FILLED and small.order.average_price == D("50025")
    big = ex.place(OrderRequest("m2", "user", "BTCUSDT", Side.BUY, OrderType.MARKET, D("0.05")))
    assert big.order.status == OrderStatus.FILLED
    assert D("50025") < (big.order.average_price or 0) < D("50100")  # walked the ladder
    assert isinstance(ex.ledger, Ledger)
    assert ex.ledger.total("BTC") == D("10")


def test_turned_off_pulls_all_quotes() -> None:
    ex, mm = setup()
    mm.requote(ex, "BTCUSDT", D("50000"))
    off = MarketMaker(replace(CFG, enabled=False))
    plan = off.plan(ex, "BTCUSDT", D("50000"))
    assert len(plan) == 10 and all(isinstance(c, CancelCommand) for c in plan)
    off.requote(ex, "BTCUSDT", D("50000"))
    assert isinstance(ex.ledger, Ledger)
    assert ex.depth("BTCUSDT").bids == () and ex.ledger.balance(CFG.account, "USDT").locked == 0


@pytest.mark.parametrize(
    ("value", "on"), [(None, True), ("on", True), ("OFF", False), ("false", False), ("0", False)]
)
def test_env_switch(value: str | None, on: bool) -> None:
    assert market_maker_enabled(value) is on
