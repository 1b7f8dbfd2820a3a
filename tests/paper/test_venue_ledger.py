"""The paper venue's ledger is an in-memory ``Ledger`` holding the system accounts only, so production runs the
exchange's integer path: user orders arrive reserved (their balances live in the database), the market maker's
are reserved here. That path must be indistinguishable from every entry going through ``Ledger.apply``."""

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from execution.paper.exchange import (
    ExecutionReport,
    OrderRequest,
    OrderStatus,
    OrderType,
    PaperExchange,
    Side,
    TimeInForce,
)
from execution.venues.paper import PaperVenue, system_ledger
from shared.clock import ManualClock
from shared.paper.ledger import Balance, Ledger, LedgerError, required_reservation
from tests.paper.test_fast_path import FEES, RULES, GenericLedger

MM = "system/mm"
USERS = ("u1", "u2")
FUNDS = {(MM, "X"): D("30"), (MM, "USD"): D("3000")}


def test_the_paper_venue_posts_in_units_into_a_ledger_of_its_system_accounts() -> None:
    venue = PaperVenue(RULES, FEES, ManualClock())
    for _ in range(2):  # as built, and as rebuilt after a recovery
        assert isinstance(venue.ledger, Ledger)
        assert venue.exchange.integer_ledger is venue.ledger
        assert venue.ledger.holds(MM) and venue.ledger.holds("system/fees") and not venue.ledger.holds("u1")
        venue.reset(RULES, FEES)


def _production(ledger: Ledger | GenericLedger) -> PaperExchange:
    inner = ledger if isinstance(ledger, Ledger) else ledger.inner
    inner.load(FUNDS)  # as the worker loads the market maker's balances from the database
    return PaperExchange(RULES, FEES, ledger)


command = st.one_of(
    st.tuples(
        st.just("limit"),
        st.sampled_from((*USERS, MM)),
        st.booleans(),
        st.integers(190, 210),
        st.integers(1, 60),
        st.sampled_from(list(TimeInForce)),
    ),
    st.tuples(st.just("market"), st.sampled_from((*USERS, MM)), st.booleans(), st.integers(1, 80)),
    st.tuples(st.just("cancel"), st.integers(0, 40)),
)


def _run(ex: PaperExchange, cmds: list[tuple]) -> list[object]:
    """Users' orders with the reservation the gateway makes (a market buy against the best ask, refused
    without one), the market maker's without."""
    rules = RULES["XUSD"]
    out: list[object] = []
    for i, cmd in enumerate(cmds):
        if cmd[0] == "cancel":
            oid = f"o{cmd[1]}"
            out.append(ex.cancel(oid) if ex.is_open(oid) else None)
            continue
        account, is_buy = cmd[1], cmd[2]
        side = Side.BUY if is_buy else Side.SELL
        if cmd[0] == "limit":
            qty, price = D(cmd[4]) / 10, D(cmd[3]) / 2
            req = OrderRequest(f"o{i}", account, "XUSD", side, OrderType.LIMIT, qty, price, cmd[5])
        else:
            qty, price = D(cmd[3]) / 10, None
            req = OrderRequest(f"o{i}", account, "XUSD", side, OrderType.MARKET, qty)
        if account == MM:
            out.append(ex.place(req))
            continue
        reference = ex.best_ask("XUSD") if is_buy and price is None else None
        if is_buy and price is None and reference is None:
            out.append(None)
            continue
        out.append(ex.place(req, required_reservation(rules, FEES, is_buy, qty, price, reference)))
    return out


@settings(max_examples=80, deadline=None)
@given(st.lists(command, min_size=1, max_size=40))
def test_the_venue_ledger_integer_path_equals_apply(cmds: list[tuple]) -> None:
    fast_ledger, generic = system_ledger(), GenericLedger(system_ledger())
    fast, slow = _production(fast_ledger), _production(generic)
    assert fast.integer_ledger is fast_ledger and slow.integer_ledger is None
    a = _run(fast, cmds)
    b = _run(slow, cmds)
    assert a == b  # reports, with every journal entry (users' postings included)
    for acct in (MM, "system/fees"):
        assert fast_ledger.balances(acct) == generic.inner.balances(acct)
    assert fast_ledger.accounts() <= {MM, "system/fees"}  # nothing of the users is kept
    # the market maker's locked balances are exactly what its resting orders hold
    locks = {asset: amount for (acct, asset), amount in fast.open_locks().items() if acct == MM}
    assert {a: b.locked for a, b in fast_ledger.balances(MM).items() if b.locked} == {
        a: v for a, v in locks.items() if v
    }
    for rep in a:
        if isinstance(rep, ExecutionReport):
            assert all(e.is_balanced() for e in rep.journal)


def test_a_user_order_without_its_reservation_is_refused_on_either_path() -> None:
    for ledger in (system_ledger(), GenericLedger(system_ledger())):
        ex = _production(ledger)
        with pytest.raises(LedgerError):
            ex.place(OrderRequest("o1", "u1", "XUSD", Side.BUY, OrderType.LIMIT, D("1"), D("100")))


def test_load_starts_over_in_place_and_refuses_accounts_it_does_not_hold() -> None:
    ledger = system_ledger()
    ex = _production(ledger)
    ex.place(OrderRequest("b1", MM, "XUSD", Side.BUY, OrderType.LIMIT, D("1"), D("100")))
    assert ledger.balance(MM, "USD") == Balance(D("2899.9"), D("100.1"))  # 1 x 100 x (1 + 10 bps)
    ex.cancel("b1")
    ledger.load({(MM, "USD"): D("0.000000001")})  # a finer unit: the exchange converts what it holds
    assert ledger.balances(MM) == {"USD": Balance(D("0.000000001"), D(0)), "X": Balance(D(0), D(0))}
    refused = ex.place(OrderRequest("b2", MM, "XUSD", Side.BUY, OrderType.LIMIT, D("1"), D("100")))
    assert refused.order.status is OrderStatus.REJECTED
    ledger.load(FUNDS)
    ex.place(OrderRequest("b3", MM, "XUSD", Side.BUY, OrderType.LIMIT, D("1"), D("100")))
    sell = required_reservation(RULES["XUSD"], FEES, False, D("1"), D("100"))
    fill = ex.place(OrderRequest("s1", "u1", "XUSD", Side.SELL, OrderType.LIMIT, D("1"), D("100")), sell)
    assert fill.order.status is OrderStatus.FILLED
    # the cells the exchange held on to (the fee account's, the market maker's) are the ledger's still
    assert ledger.balances(MM) == {"USD": Balance(D("2899.9"), D(0)), "X": Balance(D("31"), D(0))}
    assert ledger.balances("system/fees") == {"USD": Balance(D("0.175"), D(0))}  # 10 + 7.5 bps of 100
    with pytest.raises(LedgerError):
        ledger.load({("u1", "USD"): D("1")})
    assert ledger.balances(MM)["USD"] == Balance(D("2899.9"), D(0))  # nothing changed
