"""The paper venue: TradeBridge's own exchange (`execution.paper`) behind the venue port.

One writer per process: the worker calls it from one task. User orders arrive with the reservation the
gateway already made in its transaction; the market maker's account is kept in memory here (this process is
its only writer) and persisted through the same journal entries as everyone else's."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal

from execution.paper.exchange import (
    STOP_TYPES,
    ExecutionReport,
    OrderRequest,
    OrderStatus,
    OrderType,
    OrderUpdate,
    PaperExchange,
    Side,
    TimeInForce,
)
from execution.paper.market_maker import MarketMaker, MarketMakerConfig
from execution.venues.base import EMPTY, FillReport, OrderChange, VenueOrder, VenueResult
from shared.amounts import plain
from shared.clock import Clock
from shared.paper.ledger import (
    FeeSchedule,
    JournalEntry,
    Ledger,
    Reservation,
    release_entry,
    reserve_entry,
)
from shared.paper.rules import MarketRules

SYSTEM_PREFIX = "system/"
FINAL = frozenset({OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED})


def is_system(account: str) -> bool:
    return account.startswith(SYSTEM_PREFIX)


def system_ledger() -> Ledger:
    """The worker's in-memory ledger: it holds the system accounts (the market maker, fees), whose orders the
    exchange reserves itself, in the integer units the exchange posts in; user balances live in the database
    and their orders arrive with the gateway's reservation (their postings come back in the reports' journal).
    No journal kept: the worker persists the reports' entries."""
    return Ledger(keep_journal=False, scope=SYSTEM_PREFIX)


class PaperVenue:
    name = "paper"

    def __init__(
        self,
        markets: Mapping[str, MarketRules],
        fees: FeeSchedule,
        clock: Clock,
        *,
        market_maker: MarketMakerConfig | None = None,
    ) -> None:
        self.clock = clock
        self.ledger = system_ledger()
        self.exchange = PaperExchange(markets, fees, ledger=self.ledger)
        self.market_maker = MarketMaker(market_maker) if market_maker is not None else None
        self._seq = 0

    def reset(self, markets: Mapping[str, MarketRules], fees: FeeSchedule) -> None:
        self.ledger = system_ledger()
        self.exchange = PaperExchange(markets, fees, ledger=self.ledger)

    @property
    def next_seq(self) -> int:
        return self._seq

    @next_seq.setter
    def next_seq(self, value: int) -> None:
        self._seq = value

    def in_book(self, order_id: str) -> bool:
        return self.exchange.is_open(order_id)

    async def place(self, order: VenueOrder) -> VenueResult:
        return self.place_now(order)

    def place_now(self, order: VenueOrder) -> VenueResult:
        assert order.reserved_asset is not None and order.reserved_amount is not None
        req = _request(order)
        reservation = Reservation(order.reserved_asset, order.reserved_amount, order.reserved_price_cap)
        report = self.exchange.place(req, reservation)
        result = self._result(report)
        done = report.order
        if (
            done.status in FINAL
            and done.filled_quantity == 0
            and not any(e.kind == "RELEASE" and e.ref == order.order_id for e in report.journal)
        ):
            # Ended before touching the book (no liquidity, refused): the exchange never held the lock the
            # gateway made, so release all of it here.
            release = release_entry(
                order.user_id, order.reserved_asset, order.reserved_amount, order.order_id
            )
            result = result + VenueResult(journal=(release,))
        return result + self.triggered()

    def triggered(self) -> VenueResult:
        """What the stop orders triggered by the last command did (their trades, fills, maker updates and
        entries), in the order they ran; the worker persists it with that command's result."""
        result = EMPTY
        for report in self.exchange.take_triggered():
            result = result + self._result(report)
        return result

    def locked_for(self, order_id: str) -> Decimal:
        """What an open order still holds locked here (0 once final or unknown)."""
        return self.exchange.locked_for(order_id)

    def replace_now(self, old: VenueOrder, new: VenueOrder) -> VenueResult:
        """Cancel-replace as one step: the old order canceled (its remainder released) and the new one placed
        with its own reservation, locked here in the same journal right after that release (the caller checked
        that the free balance plus what the old order frees covers it); or, if the exchange refuses the new
        order, nothing but the new order REJECTED (the old order stays as it was)."""
        assert new.reserved_asset is not None and new.reserved_amount is not None
        reservation = Reservation(new.reserved_asset, new.reserved_amount, new.reserved_price_cap)
        canceled, placed = self.exchange.replace(old.order_id, _request(new), reservation, old.user_id)
        if canceled is None:
            return self._result(placed)
        result = self._result(canceled)
        lock = reserve_entry(new.user_id, new.reserved_asset, new.reserved_amount, new.order_id)
        result = result + VenueResult(journal=(lock,)) + self._result(placed)
        done = placed.order
        if (
            done.status in FINAL
            and done.filled_quantity == 0
            and not any(e.kind == "RELEASE" and e.ref == new.order_id for e in placed.journal)
        ):
            release = release_entry(new.user_id, new.reserved_asset, new.reserved_amount, new.order_id)
            result = result + VenueResult(journal=(release,))
        return result + self.triggered()

    async def cancel(self, order: VenueOrder) -> VenueResult:
        return self.cancel_now(order)

    def cancel_now(self, order: VenueOrder) -> VenueResult:
        if not self.in_book(order.order_id):
            return EMPTY
        return self._result(self.exchange.cancel(order.order_id)) + self.triggered()

    def cancel_unplaced(self, order: VenueOrder) -> VenueResult:
        """An order canceled before it reached the book: release its whole reservation."""
        journal: tuple[JournalEntry, ...] = ()
        if order.reserved_asset and order.reserved_amount:
            journal = (
                release_entry(order.user_id, order.reserved_asset, order.reserved_amount, order.order_id),
            )
        change = OrderChange(order.order_id, OrderStatus.CANCELED, Decimal(0), Decimal(0), None)
        return VenueResult(changes=(change,), journal=journal)

    def restore(self, orders: Iterable[tuple[VenueOrder, Decimal, Decimal]]) -> None:
        """Re-insert resting orders (order, remaining, cumulative quote) in their original priority order, and
        stop orders still waiting for their trigger."""
        for order, remaining, cum_quote in orders:
            assert order.reserved_asset is not None and order.reserved_amount is not None
            reservation = Reservation(order.reserved_asset, order.reserved_amount, order.reserved_price_cap)
            if order.type in STOP_TYPES and not order.triggered:
                self.exchange.restore_stop(_request(order), reservation)
            else:
                self.exchange.restore_resting(_request(order), remaining, reservation, cum_quote)

    def requote(self, symbol: str, reference_price: Decimal | None) -> VenueResult:
        if self.market_maker is None:
            return EMPTY
        result = EMPTY
        for report in self.market_maker.requote(self.exchange, symbol, reference_price):
            result = result + self._result(report)
        return result + self.triggered()

    def depth(self, symbol: str, limit: int = 50) -> dict[str, object]:
        d = self.exchange.depth(symbol, limit)
        return {
            "symbol": d.symbol,
            "bids": [[plain(p), plain(q)] for p, q in d.bids],
            "asks": [[plain(p), plain(q)] for p, q in d.asks],
            "ts": self.clock.now().isoformat(),
        }

    def _result(self, report: ExecutionReport) -> VenueResult:
        now = self.clock.now()
        changes: list[OrderChange] = []
        for u in (report.order, *report.maker_updates):
            if u.status in FINAL:
                self.exchange.forget(u.order_id)
            if is_system(u.account):
                continue
            seq = None
            if u is report.order and u.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED):
                self._seq += 1
                seq = self._seq
            changes.append(_change(u, seq))
        fills: list[FillReport] = []
        public: list[dict[str, object]] = []
        symbols: set[str] = {report.order.symbol}
        for t in report.trades:
            taker_side = t.aggressor_side
            maker_side = Side.SELL if taker_side is Side.BUY else Side.BUY
            if not is_system(t.taker_account):
                fills.append(
                    _fill(
                        t.trade_id,
                        t.taker_order_id,
                        t.symbol,
                        taker_side,
                        t.price,
                        t.quantity,
                        t.quote_quantity,
                        t.taker_fee,
                        t.fee_asset,
                        "TAKER",
                        now,
                    )
                )
            if not is_system(t.maker_account):
                fills.append(
                    _fill(
                        t.trade_id,
                        t.maker_order_id,
                        t.symbol,
                        maker_side,
                        t.price,
                        t.quantity,
                        t.quote_quantity,
                        t.maker_fee,
                        t.fee_asset,
                        "MAKER",
                        now,
                    )
                )
            public.append(
                {
                    "trade_id": t.trade_id,
                    "symbol": t.symbol,
                    "price": plain(t.price),
                    "quantity": plain(t.quantity),
                    "side": str(taker_side),
                    "ts": now.isoformat(),
                }
            )
        return VenueResult(tuple(changes), tuple(fills), report.journal, tuple(public), frozenset(symbols))


def _request(order: VenueOrder) -> OrderRequest:
    return OrderRequest(
        order.order_id,
        order.user_id,
        order.symbol,
        Side(order.side),
        OrderType(order.type),
        order.quantity,
        order.price,
        TimeInForce(order.time_in_force),
        order.stop_price,
    )


def _change(u: OrderUpdate, seq: int | None) -> OrderChange:
    return OrderChange(
        order_id=u.order_id,
        status=str(u.status),
        filled_quantity=u.filled_quantity,
        cumulative_quote=u.cumulative_quote,
        avg_price=u.average_price,
        reason=u.reason,
        venue_seq=seq,
        triggered=u.triggered,
    )


def _fill(
    trade_id: str,
    order_id: str,
    symbol: str,
    side: Side,
    price: Decimal,
    qty: Decimal,
    quote: Decimal,
    fee: Decimal,
    fee_asset: str,
    liquidity: str,
    ts: object,
) -> FillReport:
    return FillReport(trade_id, order_id, symbol, str(side), price, qty, quote, fee, fee_asset, liquidity, ts)  # type: ignore[arg-type]
