"""Stateful property tests: random command sequences against PaperExchange, invariants after every step."""

from decimal import Decimal as D

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from execution.paper.exchange import (
    FINAL_STATUSES,
    ExecutionReport,
    OrderRequest,
    OrderStatus,
    OrderType,
    PaperExchange,
    Side,
    TimeInForce,
)
from shared.ledger import EXTERNAL_ACCOUNT
from shared.paper.ledger import FeeSchedule, Ledger
from shared.paper.rules import MarketRules

RULES = {"XUSD": MarketRules("XUSD", "X", "USD", D("0.5"), D("0.1"), D("0.1"), D("0"))}
FEES = FeeSchedule(D(10), D(25))
ACCOUNTS = ("a", "b", "c")
DEPOSITS = {"X": D("40"), "USD": D("4000")}


def new_exchange() -> PaperExchange:
    ex = PaperExchange(RULES, FEES, Ledger())
    for acct in ACCOUNTS:
        for asset, amount in DEPOSITS.items():
            ex.deposit(acct, asset, amount)
    return ex


def run(ex: PaperExchange, cmd: tuple) -> object:
    if cmd[0] == "cancel":
        try:
            return ex.cancel(cmd[1])
        except Exception as exc:  # Conflict for final orders: part of the observable outcome
            return type(exc).__name__
    return ex.place(cmd[1])


class ExchangeMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ex = new_exchange()
        ledger = self.ex.ledger
        assert isinstance(ledger, Ledger)
        self.ledger: Ledger = ledger
        self.commands: list[tuple] = []
        self.results: list[object] = []
        self.ids: list[str] = []
        self.n = 0

    def _do(self, cmd: tuple) -> object:
        self.commands.append(cmd)
        res = run(self.ex, cmd)
        self.results.append(res)
        return res

    def _place(self, req: OrderRequest) -> ExecutionReport:
        """``place`` never raises (a refusal is a REJECTED report), so its result is a report."""
        rep = self._do(("place", req))
        assert isinstance(rep, ExecutionReport), rep
        return rep

    def _check_fills(self, report, is_buy: bool, limit: D | None) -> None:
        prices = [t.price for t in report.trades]
        assert prices == sorted(prices, reverse=not is_buy), "best price first"
        if limit is not None:
            assert all((p <= limit) if is_buy else (p >= limit) for p in prices), "never through the limit"
        # FIFO within a price: makers at one price were filled in their arrival order
        seen: dict[D, int] = {}
        for t in report.trades:
            n = int(t.maker_order_id[1:])
            assert seen.get(t.price, -1) < n, "FIFO violated"
            seen[t.price] = n
        assert all(t.maker_account != t.taker_account for t in report.trades), "self trade"

    @rule(
        acct=st.sampled_from(ACCOUNTS),
        buy=st.booleans(),
        price=st.integers(190, 210),
        lots=st.integers(1, 60),
        tif=st.sampled_from(list(TimeInForce)),
    )
    def limit(self, acct: str, buy: bool, price: int, lots: int, tif: TimeInForce) -> None:
        self.n += 1
        oid = f"o{self.n}"
        p = D(price) / 2
        req = OrderRequest(
            oid, acct, "XUSD", Side.BUY if buy else Side.SELL, OrderType.LIMIT, D(lots) / 10, p, tif
        )
        rep = self._place(req)
        o = rep.order
        if o.status is OrderStatus.REJECTED:
            assert rep.journal == ()
            return
        self.ids.append(oid)
        self._check_fills(rep, buy, p)
        if tif is not TimeInForce.GTC:
            assert oid not in self.ex.book("XUSD"), "IOC/FOK never rests"
            assert o.status in FINAL_STATUSES
        if tif is TimeInForce.FOK:
            assert o.filled_quantity in (D(0), o.quantity), "FOK all or nothing"
        assert o.filled_quantity == sum((t.quantity for t in rep.trades), D(0))

    @rule(acct=st.sampled_from(ACCOUNTS), buy=st.booleans(), lots=st.integers(1, 80))
    def market(self, acct: str, buy: bool, lots: int) -> None:
        self.n += 1
        oid = f"o{self.n}"
        req = OrderRequest(oid, acct, "XUSD", Side.BUY if buy else Side.SELL, OrderType.MARKET, D(lots) / 10)
        rep = self._place(req)
        if rep.order.status is not OrderStatus.REJECTED:
            self._check_fills(rep, buy, None)
            assert rep.order.status in FINAL_STATUSES

    @precondition(lambda self: self.ids)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        oid = data.draw(st.sampled_from(self.ids))
        before = self.ex.locked_for(oid)
        was_open = self.ex.order(oid).status not in FINAL_STATUSES
        rep = self._do(("cancel", oid))
        if was_open:
            assert isinstance(rep, ExecutionReport), rep
            released = sum((e.postings[1].amount for e in rep.journal), D(0))
            assert released == before, "cancel releases exactly the remainder's lock"
            assert rep.order.status is OrderStatus.CANCELED
        else:
            assert rep == "Conflict"

    @invariant()
    def conservation_and_non_negative(self) -> None:
        for asset, per_account in DEPOSITS.items():
            assert self.ledger.total(asset) == per_account * len(ACCOUNTS)
        for acct in self.ledger.accounts() - {EXTERNAL_ACCOUNT}:
            for asset, b in self.ledger.balances(acct).items():
                assert b.free >= 0 and b.locked >= 0, (acct, asset, b)

    @invariant()
    def locked_equals_open_order_reservations(self) -> None:
        locks = self.ex.open_locks()
        for acct in ACCOUNTS:
            for asset in DEPOSITS:
                assert self.ledger.balance(acct, asset).locked == locks.get((acct, asset), D(0))

    @invariant()
    def book_is_sorted_fifo_and_uncrossed(self) -> None:
        book = self.ex.book("XUSD")
        bb, ba = book.best_bid(), book.best_ask()
        assert bb is None or ba is None or bb < ba
        for bids in (True, False):
            for lvl in book.side_levels(bids):
                seqs = [o.seq for o in book.level_orders(bids, lvl.price)]
                assert seqs == sorted(seqs) and lvl.qty == sum(
                    o.remaining for o in book.level_orders(bids, lvl.price)
                )

    def teardown(self) -> None:
        replay = new_exchange()
        again = [run(replay, cmd) for cmd in self.commands]
        assert again == self.results, "replaying the same commands gives identical results"
        assert replay.depth("XUSD", 100) == self.ex.depth("XUSD", 100)


ExchangeMachine.TestCase.settings = settings(
    max_examples=60, stateful_step_count=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestExchangeMachine = ExchangeMachine.TestCase
