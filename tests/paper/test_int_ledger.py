"""The in-memory ledger keeps integer units (per-asset scale, at most 10**-18): exact, never rounding, and the
exchange's integer fast path must post exactly what ``Ledger.apply`` would."""

from decimal import Decimal as D
from decimal import localcontext

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execution.paper.exchange import OrderRequest, OrderStatus, OrderType, PaperExchange, Side, TimeInForce
from shared.ledger import EXTERNAL_ACCOUNT
from shared.paper.ledger import (
    Balance,
    FeeSchedule,
    JournalRecorder,
    Ledger,
    LedgerError,
    deposit_entry,
    release_entry,
    required_reservation,
    reserve_entry,
)
from shared.paper.rules import MarketRules
from tests.paper.test_fast_path import FEES, RULES, GenericLedger, command, funded, run


def test_balances_are_exact_and_read_back_in_their_shortest_form() -> None:
    led = Ledger()
    for amount in ("30", "0.1", "0.000000000000000001", "123456789012345678.5", "2899.800"):
        led.apply(deposit_entry("a", "USD", D(amount)))
    total = D("123456789012348608.400000000000000001")  # 37 digits: beyond the default Decimal context
    assert led.free("a", "USD") == total == led.total("USD")
    assert str(led.free("a", "USD")) == "123456789012348608.400000000000000001"
    assert led.balance(EXTERNAL_ACCOUNT, "USD") == Balance(total.copy_negate(), D(0))
    led2 = Ledger()
    led2.apply(deposit_entry("a", "X", D("2899.800")))
    led2.apply(reserve_entry("a", "X", D("899.80"), "o1"))
    assert repr(led2.balance("a", "X")) == "Balance(free=Decimal('2000'), locked=Decimal('899.8'))"
    assert led2.balances("a") == {"X": Balance(D(2000), D("899.8"))}
    assert led2.accounts() == {"a", EXTERNAL_ACCOUNT} and led2.assets() == {"X"}


@pytest.mark.parametrize(
    "amount", ["0.0000000000000000001", "1E-19", "1.0000000000000000001", "NaN", "Infinity", "1E+61"]
)
def test_amounts_it_cannot_hold_exactly_are_refused_and_nothing_changes(amount: str) -> None:
    led = Ledger()
    led.apply(deposit_entry("a", "USD", D("5")))
    before = (led.balances("a"), led.balances(EXTERNAL_ACCOUNT), list(led.journal), led.scale("USD"))
    with pytest.raises(LedgerError):
        led.apply(reserve_entry("a", "USD", D(amount), "o1"))
    assert (led.balances("a"), led.balances(EXTERNAL_ACCOUNT), list(led.journal), led.scale("USD")) == before


def test_trailing_zeros_beyond_18_places_are_not_precision() -> None:
    led = Ledger()
    led.apply(deposit_entry("a", "USD", D("1.000000000000000000000000")))  # 24 places, value 1
    assert led.free("a", "USD") == 1 and led.scale("USD") == 0


def test_a_finer_amount_refines_the_unit_exactly() -> None:
    led = Ledger()
    led.apply(deposit_entry("a", "USD", D("12.5")))
    epoch = led.epoch
    led.apply(deposit_entry("a", "USD", D("0.000000001")))
    assert led.scale("USD") == 9 and led.epoch == epoch + 1
    assert led.free("a", "USD") == D("12.500000001") and led.total("USD") == D("12.500000001")
    led.apply(release_entry("a", "USD", D(0), "noop"))  # nothing finer: the unit stays
    assert led.epoch == epoch + 1


# -- a reference ledger in Decimals, as the in-memory ledger was: the integer one must agree with it -------

_places = st.integers(0, 20)
_amount = st.builds(lambda n, p: D(n).scaleb(-p), st.integers(0, 10**12), _places)
_op = st.tuples(
    st.sampled_from(["deposit", "reserve", "release"]),
    st.sampled_from(["a", "b"]),
    st.sampled_from(["X", "Y"]),
    _amount,
)


@settings(max_examples=150, deadline=None)
@given(st.lists(_op, min_size=1, max_size=30))
def test_integer_ledger_equals_exact_decimal_arithmetic(ops: list[tuple[str, str, str, D]]) -> None:
    with localcontext() as ctx:
        ctx.prec = 100  # the reference must not round either
        _check_against_decimals(ops)


def _check_against_decimals(ops: list[tuple[str, str, str, D]]) -> None:
    led = Ledger()
    ref: dict[tuple[str, str], list[D]] = {}
    for kind, acct, asset, amount in ops:
        if kind == "deposit":
            if amount <= 0:
                continue
            entry = deposit_entry(acct, asset, amount)
        elif kind == "reserve":
            entry = reserve_entry(acct, asset, amount, "o")
        else:
            entry = release_entry(acct, asset, amount, "o")
        cell = ref.get((acct, asset), [D(0), D(0)])
        new = [cell[0], cell[1]]
        if kind == "deposit":
            new[0] += amount
        elif kind == "reserve":
            new = [new[0] - amount, new[1] + amount]
        else:
            new = [new[0] + amount, new[1] - amount]
        representable = amount == amount.quantize(D("1E-18")) if amount else True
        if not representable or new[0] < 0 or new[1] < 0:
            with pytest.raises(LedgerError):
                led.apply(entry)
            continue
        led.apply(entry)
        ref[(acct, asset)] = new
        if kind == "deposit":
            ext = ref.get((EXTERNAL_ACCOUNT, asset), [D(0), D(0)])
            ref[(EXTERNAL_ACCOUNT, asset)] = [ext[0] - amount, ext[1]]
    for (acct, asset), (free, locked) in ref.items():
        assert led.balance(acct, asset) == Balance(free, locked)
    for asset in ("X", "Y"):
        assert led.total(asset) == sum(
            (f + lk for (a, s), (f, lk) in ref.items() if s == asset and a != EXTERNAL_ACCOUNT), D(0)
        )


# -- the exchange's integer fast path ----------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.lists(command, min_size=1, max_size=40))
def test_fast_path_without_journal_equals_the_generic_path(cmds: list[tuple]) -> None:
    """With a ledger that keeps no journal the exchange makes no entry at all until a report is read."""
    quiet, generic = Ledger(keep_journal=False), GenericLedger()
    a = run(funded(quiet), cmds)
    b = run(funded(generic), cmds)
    assert a == b  # reads every report, so makes their entries now
    for acct in ("a", "b", "c", "system/fees"):
        assert quiet.balances(acct) == generic.inner.balances(acct)
    assert quiet.journal == []


def test_open_orders_follow_a_unit_refined_under_them() -> None:
    """A deposit finer than the exchange's quote unit rescales the ledger while orders rest on the book:
    the exchange converts what it holds (locks per lot) and later fills and cancels stay exact."""
    results = []
    for ledger in (Ledger(keep_journal=False), GenericLedger()):
        ex = funded(ledger)
        ex.place(OrderRequest("b1", "a", "XUSD", Side.BUY, OrderType.LIMIT, D("2"), D("100")))
        ex.place(OrderRequest("b2", "b", "XUSD", Side.BUY, OrderType.LIMIT, D("1"), D("99.5")))
        ex.deposit("c", "USD", D("0.000000000000000007"))
        fill = ex.place(OrderRequest("s1", "c", "XUSD", Side.SELL, OrderType.LIMIT, D("2.5"), D("99.5")))
        cancel = ex.cancel("b2")
        inner = ledger if isinstance(ledger, Ledger) else ledger.inner
        results.append((fill, cancel, [inner.balances(x) for x in ("a", "b", "c", "system/fees")]))
    assert results[0] == results[1]
    fast_ledger = Ledger()
    ex = funded(fast_ledger)
    ex.place(OrderRequest("b1", "a", "XUSD", Side.BUY, OrderType.LIMIT, D("2"), D("100")))
    ex.deposit("c", "USD", D("0.000000000000000007"))
    assert fast_ledger.scale("USD") == 18 and ex._scales["USD"] == 7  # converted on the next command
    ex.cancel("b1")
    assert ex._scales["USD"] == 18 and fast_ledger.balance("a", "USD") == Balance(D(3000), D(0))


def test_market_buy_against_an_upstream_price_cap_finer_than_the_unit() -> None:
    """An upstream reservation's price cap needs not be on the tick grid: its lock per lot is then finer
    than the market's quanta and the ledger's unit is refined for it, exactly."""
    out = []
    for ledger in (Ledger(), GenericLedger()):
        ex = funded(ledger)
        inner = ledger if isinstance(ledger, Ledger) else ledger.inner
        ex.place(OrderRequest("s1", "a", "XUSD", Side.SELL, OrderType.LIMIT, D("1"), D("100")))
        rules = RULES["XUSD"]
        qty, cap = D("1.5"), D("100.123456789")
        amount = required_reservation(rules, FEES, True, qty, cap).amount
        inner.apply(reserve_entry("b", "USD", amount, "m1"))  # the lock made upstream
        reservation = required_reservation(rules, FEES, True, qty, cap)
        rep = ex.place(OrderRequest("m1", "b", "XUSD", Side.BUY, OrderType.MARKET, qty), reservation)
        assert rep.order.status is OrderStatus.EXPIRED and rep.order.filled_quantity == 1
        assert inner.balance("b", "USD").locked == 0
        out.append((rep, inner.balances("b"), inner.balances("system/fees")))
    assert out[0] == out[1]


def test_a_fill_that_would_overdraw_a_lock_raises_as_apply_does() -> None:
    for ledger in (Ledger(), GenericLedger()):
        ex = funded(ledger)
        inner = ledger if isinstance(ledger, Ledger) else ledger.inner
        ex.place(OrderRequest("s1", "a", "XUSD", Side.SELL, OrderType.LIMIT, D("1"), D("100")))
        inner.apply(release_entry("a", "X", D("0.5"), "behind the exchange's back"))
        before = inner.balances("b")
        with pytest.raises(LedgerError):
            ex.place(OrderRequest("b1", "b", "XUSD", Side.BUY, OrderType.LIMIT, D("1"), D("100")))
        assert inner.balances("b")["X"] == before["X"]  # the SETTLE was not applied


def test_markets_finer_than_the_ledger_can_hold_are_refused_up_front() -> None:
    fine = {"TINYUSD": MarketRules("TINYUSD", "TINY", "USD", D("1E-9"), D("1E-9"), D("1E-9"), D(0))}
    with pytest.raises(LedgerError):
        PaperExchange(fine, FeeSchedule(D("7.5"), D(10)), Ledger())  # quote quanta of 10**-23
    ex = PaperExchange(fine, FeeSchedule(D("7.5"), D(10)), JournalRecorder({("a", "USD"): D(1)}))
    r = ex.place(OrderRequest("1", "a", "TINYUSD", Side.BUY, OrderType.LIMIT, D("1E-9"), D("1E-9")))
    assert r.order.status is OrderStatus.NEW  # a store that keeps Decimals is not limited


def test_insufficient_balance_is_checked_in_units() -> None:
    ex = PaperExchange(RULES, FEES, Ledger())
    ex.deposit("a", "USD", D("10.0100"))  # exactly 0.1 at 100 with the 10 bps reserve fee
    ok = ex.place(
        OrderRequest("1", "a", "XUSD", Side.BUY, OrderType.LIMIT, D("0.1"), D("100"), TimeInForce.GTC)
    )
    assert ok.order.status is OrderStatus.NEW and ex.ledger.free("a", "USD") == 0
    no = ex.place(OrderRequest("2", "a", "XUSD", Side.BUY, OrderType.LIMIT, D("0.1"), D("10")))
    assert no.order.status is OrderStatus.REJECTED and no.journal == ()
    assert no.order.reason == "insufficient USD balance: needs 1.001, available 0"
