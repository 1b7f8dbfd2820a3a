"""The exchange's fast paths (lazy reports and journal entries, direct posting into the in-memory ledger,
memoised Decimal edge) must be indistinguishable from the plain ones."""

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
from shared.errors import Conflict
from shared.paper.ledger import (
    FeeSchedule,
    JournalEntry,
    Ledger,
    Posting,
    release_entry,
    reserve_entry,
    settle_entry,
)
from shared.paper.rules import MarketRules, build_rules

RULES = {"XUSD": MarketRules("XUSD", "X", "USD", D("0.5"), D("0.1"), D("0.1"), D("1"))}
FEES = FeeSchedule(D(10), D("7.5"))
ACCOUNTS = ("a", "b", "c")


class GenericLedger:
    """The same store behind the plain ``LedgerStore`` port (not a ``Ledger``): the exchange takes its generic
    path, one ``apply`` per entry. (A wrapper, not a subclass: a compiled ``Ledger`` can't be subclassed.)"""

    def __init__(self, inner: Ledger | None = None) -> None:
        self.inner = inner if inner is not None else Ledger()

    def apply(self, entry: JournalEntry) -> None:
        self.inner.apply(entry)

    def free(self, account: str, asset: str) -> D:
        return self.inner.free(account, asset)


def funded(ledger: "Ledger | GenericLedger") -> PaperExchange:
    ex = PaperExchange(RULES, FEES, ledger)
    for acct in ACCOUNTS:
        ex.deposit(acct, "X", D("30"))
        ex.deposit(acct, "USD", D("3000"))
    return ex


command = st.one_of(
    st.tuples(
        st.just("limit"),
        st.sampled_from(ACCOUNTS),
        st.booleans(),
        st.integers(190, 210),
        st.integers(1, 60),
        st.sampled_from(list(TimeInForce)),
    ),
    st.tuples(st.just("market"), st.sampled_from(ACCOUNTS), st.booleans(), st.integers(1, 80)),
    st.tuples(st.just("cancel"), st.integers(0, 40)),
)


def run(ex: PaperExchange, cmds: list[tuple]) -> list[object]:
    out: list[object] = []
    for i, cmd in enumerate(cmds):
        if cmd[0] == "cancel":
            try:
                out.append(ex.cancel(f"o{cmd[1]}"))
            except Exception as exc:
                out.append(type(exc).__name__)
            continue
        side = Side.BUY if cmd[2] else Side.SELL
        if cmd[0] == "limit":
            req = OrderRequest(
                f"o{i}", cmd[1], "XUSD", side, OrderType.LIMIT, D(cmd[4]) / 10, D(cmd[3]) / 2, cmd[5]
            )
        else:
            req = OrderRequest(f"o{i}", cmd[1], "XUSD", side, OrderType.MARKET, D(cmd[3]) / 10)
        out.append(ex.place(req))
    return out


@settings(max_examples=80, deadline=None)
@given(st.lists(command, min_size=1, max_size=40))
def test_fast_ledger_path_equals_generic_apply(cmds: list[tuple]) -> None:
    fast_ledger, generic = Ledger(), GenericLedger()
    slow_ledger = generic.inner
    fast, slow = funded(fast_ledger), funded(generic)
    a = run(fast, cmds)
    b = run(slow, cmds)
    assert a == b
    assert fast_ledger.journal == slow_ledger.journal
    for acct in (*ACCOUNTS, fast.fee_account):
        assert fast_ledger.balances(acct) == slow_ledger.balances(acct)
    for asset in ("X", "USD"):
        assert fast_ledger.total(asset) == slow_ledger.total(asset) == D(30 if asset == "X" else 3000) * 3
    # every lazily built report equals one built eagerly from its own fields
    for rep in a:
        if isinstance(rep, ExecutionReport):
            eager = ExecutionReport(rep.order, rep.trades, rep.maker_updates, rep.journal)
            assert rep == eager and hash(rep) == hash(eager) and repr(rep) == repr(eager)
            assert all(e.is_balanced() for e in rep.journal)


def test_lazy_report_shows_the_state_at_its_time_even_when_read_later() -> None:
    ex = funded(Ledger())
    ex.place(OrderRequest("m", "a", "XUSD", Side.SELL, OrderType.LIMIT, D("1"), D("100")))
    first = ex.place(OrderRequest("t1", "b", "XUSD", Side.BUY, OrderType.LIMIT, D("0.4"), D("100")))
    second = ex.place(OrderRequest("t2", "c", "XUSD", Side.BUY, OrderType.LIMIT, D("0.6"), D("100")))
    ex.place(OrderRequest("m2", "a", "XUSD", Side.SELL, OrderType.LIMIT, D("1"), D("101")))
    ex.cancel("m2")
    # read only now: the maker was FILLED by the second taker and m2 is gone, the first report must not care
    (m1,) = first.maker_updates
    assert (m1.status, m1.filled_quantity, m1.remaining_quantity) == (
        OrderStatus.PARTIALLY_FILLED,
        D("0.4"),
        D("0.6"),
    )
    (m2,) = second.maker_updates
    assert (m2.status, m2.filled_quantity) == (OrderStatus.FILLED, D("1.0"))
    assert [t.trade_id for t in (*first.trades, *second.trades)] == ["XUSD-1", "XUSD-2"]
    assert ex.last_trade("XUSD") == second.trades[0]
    assert first.order.status is OrderStatus.FILLED and ex.order("m").status is OrderStatus.FILLED
    with pytest.raises(AttributeError):
        first.order = second.order  # type: ignore[misc]


def test_lazy_journal_entries_equal_eager_ones_and_are_read_only() -> None:
    lazy = reserve_entry("a", "USD", D("5.5"), "o1")
    eager = JournalEntry(
        "RESERVE", "o1", (Posting("a", "USD", "free", D("-5.5")), Posting("a", "USD", "locked", D("5.5")))
    )
    assert lazy == eager and hash(lazy) == hash(eager) and repr(lazy) == repr(eager)
    rel = release_entry("a", "USD", D("2"), "o1")
    assert [(p.bucket, p.amount) for p in rel.postings] == [("locked", D("-2")), ("free", D("2"))]
    s = settle_entry("T-1", "X", "USD", "b", "a", D("1"), D("100"), D("0.1"), D("0.1"), D("100.2"))
    assert [p.amount for p in s.postings] == [D("-1"), D("1"), D("-100.2"), D("99.9"), D("0.1"), D("0.2")]
    assert s.is_balanced()
    with pytest.raises(AttributeError):
        lazy.kind = "SETTLE"  # type: ignore[misc]


def test_memoised_edge_still_rejects_what_the_rules_reject() -> None:
    ex = PaperExchange(build_rules(), FeeSchedule())
    ex.deposit("B", "USDT", D("100000"))
    ok = ex.place(OrderRequest("1", "B", "BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.001"), D("10000")))
    assert ok.order.status is OrderStatus.NEW  # price and quantity are now memoised
    cases = [
        (D("0.0001"), D("10000"), "MIN_NOTIONAL"),  # both memo-able values, product below the minimum
        (D("0.001"), D("10000.001"), "PRICE_FILTER"),
        (D("0.0010001"), D("10000"), "LOT_SIZE"),
        (D("0.001"), True, "PRICE_FILTER"),  # True == 1 but is not a price
        (D("0.001"), "10000", None),  # a string takes the full check, and passes
    ]
    for i, (qty, price, rule) in enumerate(cases):
        r = ex.place(OrderRequest(f"x{i}", "B", "BTCUSDT", Side.BUY, OrderType.LIMIT, qty, price))  # type: ignore[arg-type]
        if rule is None:
            assert r.order.status is OrderStatus.NEW
        else:
            assert r.order.status is OrderStatus.REJECTED and rule in (r.order.reason or ""), r.order.reason
    with pytest.raises(Conflict):
        ex.place(OrderRequest("1", "B", "BTCUSDT", Side.BUY, OrderType.LIMIT, D("0.001"), D("10000")))
