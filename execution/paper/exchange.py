"""``PaperExchange``: per-symbol books + ledger + rules + fees behind one synchronous, deterministic facade.

Commands (call them from one task; the execution worker serialises them):
- ``deposit(account, asset, amount)`` -> ``JournalEntry``
- ``place(request, reservation=None)`` -> ``ExecutionReport``: validate -> reserve -> match -> settle.
  With ``reservation=None`` the exchange checks the account's free balance and reserves itself; an order it
  cannot afford (or that breaks a market rule) comes back REJECTED with a ``reason`` and nothing locked.
  With a ``Reservation`` (made upstream, e.g. by the gateway in its database transaction, computed with
  ``ledger.required_reservation``) no RESERVE entry is produced; settlement and release use the same
  arithmetic. A duplicate order id raises ``Conflict``. A REJECTED order leaves no trace (no lock, not
  stored), so its id may be retried.
- ``cancel(order_id, account=None)`` -> ``ExecutionReport`` (CANCELED; releases exactly the remainder's
  lock). Unknown order (or another account's) -> ``NotFound``; already final -> ``Conflict``.
- ``restore_resting(request, remaining_quantity, reservation)``: after a restart, re-insert open orders in
  their original priority order (their funds are still locked, so nothing is reserved again).

Queries: ``order``, ``open_orders``, ``depth``, ``best_bid``/``best_ask``, ``last_trade``, ``quote``,
``locked_for``.

MARKET orders walk the book up to the protection band (``MarketRules.market_protection_pct`` from the best
opposite price); the rest EXPIRES. With no opposite liquidity a market order EXPIRES unfilled
(reason ``NO_LIQUIDITY``). A market BUY locks against the band price (or the ``price_cap`` of an upstream
reservation, which then also caps its fills). Self-trade prevention is EXPIRE_TAKER (see ``book``).

Every report carries the taker's final ``OrderUpdate``, every ``Trade``, the ``OrderUpdate`` of each maker
touched (in fill order) and every ``JournalEntry`` applied, in order. Trade ids are ``SYMBOL-n`` with n
counting per symbol from 1, so replaying the same commands reproduces them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Context, Decimal
from enum import StrEnum
from typing import Final

from shared.errors import Conflict, InvalidInput, NotFound

from . import book as bk
from .ledger import (
    EXACT,
    FEE_ACCOUNT,
    FeeSchedule,
    InsufficientBalance,
    JournalEntry,
    Ledger,
    LedgerStore,
    Reservation,
    deposit_entry,
    release_entry,
    reserve_entry,
    settle_entry,
)
from .rules import MarketRules, RuleViolation, build_rules, normalize_symbol

__all__ = [
    "Depth",
    "ExecutionReport",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "OrderUpdate",
    "PaperExchange",
    "Quote",
    "Side",
    "TimeInForce",
    "Trade",
]

_AVG: Final = Context(prec=20)
_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class OrderStatus(StrEnum):
    NEW = "NEW"
    PARTIALLY_FILLED = "PARTIALLY_FILLED"
    FILLED = "FILLED"
    CANCELED = "CANCELED"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"


FINAL_STATUSES: Final = frozenset(
    {OrderStatus.FILLED, OrderStatus.CANCELED, OrderStatus.REJECTED, OrderStatus.EXPIRED}
)
_TIF_CODE: Final = {TimeInForce.GTC: bk.GTC, TimeInForce.IOC: bk.IOC, TimeInForce.FOK: bk.FOK}


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A new order. ``price`` is required for LIMIT and ignored for MARKET (which is IOC unless FOK)."""

    order_id: str
    account: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    order_id: str
    account: str
    symbol: str
    side: Side
    type: OrderType
    time_in_force: TimeInForce
    status: OrderStatus
    price: Decimal | None
    quantity: Decimal
    filled_quantity: Decimal
    remaining_quantity: Decimal
    average_price: Decimal | None
    cumulative_quote: Decimal
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Trade:
    trade_id: str
    symbol: str
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal
    maker_order_id: str
    taker_order_id: str
    maker_account: str
    taker_account: str
    maker_fee: Decimal
    taker_fee: Decimal
    fee_asset: str
    aggressor_side: Side

    @property
    def buyer_order_id(self) -> str:
        return self.taker_order_id if self.aggressor_side is Side.BUY else self.maker_order_id

    @property
    def seller_order_id(self) -> str:
        return self.maker_order_id if self.aggressor_side is Side.BUY else self.taker_order_id


@dataclass(frozen=True, slots=True)
class ExecutionReport:
    order: OrderUpdate
    trades: tuple[Trade, ...]
    maker_updates: tuple[OrderUpdate, ...]
    journal: tuple[JournalEntry, ...]


@dataclass(frozen=True, slots=True)
class Depth:
    symbol: str
    bids: tuple[tuple[Decimal, Decimal], ...]  # (price, quantity), best first
    asks: tuple[tuple[Decimal, Decimal], ...]


@dataclass(frozen=True, slots=True)
class Quote:
    """What ``quantity`` would fill at now (within the market protection band), without trading."""

    symbol: str
    side: Side
    quantity: Decimal
    fillable_quantity: Decimal
    avg_price: Decimal | None
    worst_price: Decimal | None


class _Order:
    """Mutable state of one order inside the exchange (the book's ``tag``)."""

    __slots__ = (
        "account",
        "cum",
        "filled",
        "is_buy",
        "lock_asset",
        "lots",
        "mkt",
        "reason",
        "req",
        "status",
        "unit_lock",
    )

    def __init__(
        self, req: OrderRequest, mkt: _Market, is_buy: bool, lots: int, unit_lock: Decimal, lock_asset: str
    ) -> None:
        self.req = req
        self.account = req.account
        self.mkt = mkt
        self.is_buy = is_buy
        self.lots = lots
        self.filled = 0
        self.cum = 0  # sum of price_ticks * lots over fills
        self.unit_lock = unit_lock  # lock per lot
        self.lock_asset = lock_asset
        self.status = OrderStatus.NEW
        self.reason: str | None = None

    def snapshot(self) -> OrderUpdate:
        req = self.req
        r = self.mkt.rules
        filled = self.filled
        avg = None
        if filled:
            avg = _AVG.multiply(_AVG.divide(Decimal(self.cum), Decimal(filled)), r.tick_size)
        return OrderUpdate(
            req.order_id,
            req.account,
            r.symbol,
            req.side,
            req.type,
            req.time_in_force,
            self.status,
            req.price,
            req.quantity,
            EXACT.multiply(r.step_size, Decimal(filled)),
            EXACT.multiply(r.step_size, Decimal(self.lots - filled)),
            avg,
            EXACT.multiply(self.mkt.unit_quote, Decimal(self.cum)),
            self.reason,
        )


class _Market:
    __slots__ = ("book", "last_trade", "rules", "unit_quote")

    def __init__(self, rules: MarketRules) -> None:
        self.rules = rules
        self.book = bk.OrderBook()
        self.unit_quote = EXACT.multiply(rules.tick_size, rules.step_size)  # quote value of 1 tick x 1 lot
        self.last_trade: Trade | None = None


class PaperExchange:
    """See the module docstring. ``ledger`` defaults to an in-memory ``Ledger`` (the reference store)."""

    def __init__(
        self,
        rules: Mapping[str, MarketRules] | None = None,
        fees: FeeSchedule | None = None,
        ledger: LedgerStore | None = None,
        fee_account: str = FEE_ACCOUNT,
    ) -> None:
        self.rules: dict[str, MarketRules] = dict(rules) if rules is not None else build_rules()
        self.fees = fees or FeeSchedule()
        self.ledger: LedgerStore = ledger if ledger is not None else Ledger()
        self.fee_account = fee_account
        self._markets = {s: _Market(r) for s, r in self.rules.items()}
        self._orders: dict[str, _Order] = {}
        self._open: dict[str, dict[str, _Order]] = {}  # account -> open orders
        self._maker_rate = self.fees.maker_rate
        self._taker_rate = self.fees.taker_rate
        self._reserve_mult = EXACT.add(_ONE, self.fees.reserve_rate)

    # -- helpers ---------------------------------------------------------------------------------------

    def _market(self, symbol: str) -> _Market:
        try:
            return self._markets[symbol]
        except KeyError:
            pass
        name = normalize_symbol(symbol)
        m = self._markets.get(name)
        if m is None:
            raise RuleViolation("SYMBOL", "symbol", f"unknown symbol {symbol!r}")
        return m

    def market_rules(self, symbol: str) -> MarketRules:
        return self._market(symbol).rules

    # -- commands --------------------------------------------------------------------------------------

    def deposit(self, account: str, asset: str, amount: Decimal, ref: str = "") -> JournalEntry:
        entry = deposit_entry(account, asset, amount, ref)
        self.ledger.apply(entry)
        return entry

    def place(self, request: OrderRequest, reservation: Reservation | None = None) -> ExecutionReport:
        oid = request.order_id
        if oid in self._orders:
            raise Conflict(f"order {oid} already exists")
        try:
            mkt = self._market(request.symbol)
        except RuleViolation as exc:
            return self._reject(request, None, exc.detail)
        rules = mkt.rules
        book = mkt.book
        is_buy = request.side == Side.BUY
        tif = _TIF_CODE[TimeInForce(request.time_in_force)]
        try:
            if request.type == OrderType.LIMIT:
                if request.price is None:
                    raise RuleViolation("PRICE_FILTER", "price", "a LIMIT order needs a price")
                limit, lots = rules.limit_order(request.price, request.quantity)
                cap = request.price
            else:
                if tif == bk.GTC:
                    tif = bk.IOC
                best = book.best_ask() if is_buy else book.best_bid()
                if best is None:
                    rules.market_order(request.quantity, None)
                    o = _Order(request, mkt, is_buy, rules.qty_to_lots(request.quantity), _ZERO, "")
                    return self._finish_unplaced(o, OrderStatus.EXPIRED, "NO_LIQUIDITY", ())
                lots = rules.market_order(request.quantity, rules.ticks_to_price(best))
                limit = rules.band_limit_ticks(best, is_buy)
                cap = rules.ticks_to_price(limit)
                if is_buy and reservation is not None and reservation.price_cap is not None:
                    cap_ticks = int(reservation.price_cap // rules.tick_size)
                    if cap_ticks < limit:
                        limit = cap_ticks
                        cap = reservation.price_cap
        except RuleViolation as exc:
            return self._reject(request, mkt, exc.detail)

        if is_buy:
            asset = rules.quote_asset
            unit_lock = EXACT.multiply(EXACT.multiply(cap, rules.step_size), self._reserve_mult)
        else:
            asset = rules.base_asset
            unit_lock = rules.step_size
        amount = EXACT.multiply(unit_lock, Decimal(lots))
        o = _Order(request, mkt, is_buy, lots, unit_lock, asset)
        journal: list[JournalEntry] = []
        if reservation is None:
            free = self.ledger.free(request.account, asset)
            if free < amount:
                shortfall = InsufficientBalance(request.account, asset, amount, free)
                return self._reject(request, mkt, shortfall.detail)
            entry = reserve_entry(request.account, asset, amount, oid)
            self.ledger.apply(entry)
            journal.append(entry)
        elif reservation.asset != asset or reservation.amount != amount:
            raise InvalidInput(
                f"order {oid}: upstream reservation {reservation.amount} {reservation.asset} "
                f"does not match the required {amount} {asset}"
            )
        self._orders[oid] = o
        fills, remaining, outcome = book.submit(oid, request.account, is_buy, limit, lots, tif, o)
        trades, makers = self._settle(mkt, o, fills, journal) if fills else ((), ())
        if outcome == bk.RESTED:
            o.status = OrderStatus.PARTIALLY_FILLED if o.filled else OrderStatus.NEW
            acc = self._open.get(o.account)
            if acc is None:
                acc = self._open[o.account] = {}
            acc[oid] = o
        elif outcome == bk.FILLED:
            o.status = OrderStatus.FILLED
        else:
            o.status = OrderStatus.EXPIRED
            o.reason = (
                "SELF_TRADE_PREVENTION" if outcome == bk.STP_EXPIRED
                else "FOK_NOT_FILLABLE" if outcome == bk.KILLED
                else "MARKET_PROTECTION_BAND" if request.type == OrderType.MARKET
                else "IOC_REMAINDER"
            )
            self._release(o, remaining, journal)
        return ExecutionReport(o.snapshot(), trades, makers, tuple(journal))

    def _settle(
        self, mkt: _Market, taker: _Order, fills: list[bk.Fill], journal: list[JournalEntry]
    ) -> tuple[tuple[Trade, ...], tuple[OrderUpdate, ...]]:
        rules = mkt.rules
        tick = rules.tick_size
        step = rules.step_size
        unit_quote = mkt.unit_quote
        base = rules.base_asset
        quote = rules.quote_asset
        symbol = rules.symbol
        mrate = self._maker_rate
        trate = self._taker_rate
        mul = EXACT.multiply
        apply = self.ledger.apply
        fee_account = self.fee_account
        taker_buys = taker.is_buy
        aggressor = Side.BUY if taker_buys else Side.SELL
        taker_id = taker.req.order_id
        taker_acc = taker.account
        trades: list[Trade] = []
        makers: list[OrderUpdate] = []
        for maker_ro, p, q, tid in fills:
            maker = maker_ro.tag
            assert isinstance(maker, _Order)
            dq = Decimal(q)
            qty = mul(step, dq)
            notional = mul(unit_quote, Decimal(p * q))
            mfee = mul(notional, mrate)
            tfee = mul(notional, trate)
            trade_id = f"{symbol}-{tid}"
            if taker_buys:
                entry = settle_entry(
                    trade_id, base, quote, taker_acc, maker.account, qty, notional, tfee, mfee,
                    mul(taker.unit_lock, dq), fee_account,
                )
            else:
                entry = settle_entry(
                    trade_id, base, quote, maker.account, taker_acc, qty, notional, mfee, tfee,
                    mul(maker.unit_lock, dq), fee_account,
                )
            apply(entry)
            journal.append(entry)
            pq = p * q
            taker.filled += q
            taker.cum += pq
            maker.filled += q
            maker.cum += pq
            if maker_ro.remaining == 0:
                maker.status = OrderStatus.FILLED
                del self._open[maker.account][maker.req.order_id]
            else:
                maker.status = OrderStatus.PARTIALLY_FILLED
            trades.append(
                Trade(
                    trade_id, symbol, mul(tick, Decimal(p)), qty, notional, maker.req.order_id, taker_id,
                    maker.account, taker_acc, mfee, tfee, quote, aggressor,
                )
            )
            makers.append(maker.snapshot())
        mkt.last_trade = trades[-1]
        return tuple(trades), tuple(makers)

    def _release(self, o: _Order, remaining_lots: int, journal: list[JournalEntry]) -> None:
        if remaining_lots and o.unit_lock:
            entry = release_entry(
                o.account, o.lock_asset, EXACT.multiply(o.unit_lock, Decimal(remaining_lots)), o.req.order_id
            )
            self.ledger.apply(entry)
            journal.append(entry)

    def _reject(self, request: OrderRequest, mkt: _Market | None, reason: str) -> ExecutionReport:
        upd = OrderUpdate(
            request.order_id, request.account, mkt.rules.symbol if mkt else str(request.symbol), request.side,
            request.type, request.time_in_force, OrderStatus.REJECTED, request.price, request.quantity,
            _ZERO, _ZERO, None, _ZERO, reason,
        )
        return ExecutionReport(upd, (), (), ())

    def _finish_unplaced(
        self, o: _Order, status: OrderStatus, reason: str, journal: tuple[JournalEntry, ...]
    ) -> ExecutionReport:
        o.status = status
        o.reason = reason
        self._orders[o.req.order_id] = o
        return ExecutionReport(o.snapshot(), (), (), journal)

    def cancel(self, order_id: str, account: str | None = None) -> ExecutionReport:
        o = self._orders.get(order_id)
        if o is None or (account is not None and o.account != account):
            raise NotFound(f"order {order_id} not found")
        if o.status in FINAL_STATUSES:
            raise Conflict(f"order {order_id} is already {o.status}")
        remaining = o.mkt.book.cancel(order_id)
        del self._open[o.account][order_id]
        o.status = OrderStatus.CANCELED
        journal: list[JournalEntry] = []
        self._release(o, remaining, journal)
        return ExecutionReport(o.snapshot(), (), (), tuple(journal))

    def restore_resting(
        self, request: OrderRequest, remaining_quantity: Decimal, reservation: Reservation,
        cumulative_quote: Decimal = _ZERO,
    ) -> OrderUpdate:
        """Re-insert an open LIMIT order after a restart (call in original priority order). Its lock is
        assumed to be held already: ``reservation`` is the original one, of which the remainder is locked."""
        mkt = self._market(request.symbol)
        rules = mkt.rules
        if request.type != OrderType.LIMIT or request.price is None:
            raise InvalidInput("only LIMIT orders rest on the book")
        limit, lots = rules.price_to_ticks(request.price), rules.qty_to_lots(request.quantity)
        rem = int(remaining_quantity / rules.step_size)
        is_buy = request.side == Side.BUY
        unit_lock = EXACT.divide(reservation.amount, Decimal(lots))
        o = _Order(request, mkt, is_buy, lots, unit_lock, reservation.asset)
        o.filled = lots - rem
        o.cum = int(cumulative_quote / mkt.unit_quote)
        o.status = OrderStatus.PARTIALLY_FILLED if o.filled else OrderStatus.NEW
        mkt.book.rest(request.order_id, request.account, is_buy, limit, rem, o)
        self._orders[request.order_id] = o
        self._open.setdefault(o.account, {})[request.order_id] = o
        return o.snapshot()

    # -- queries ---------------------------------------------------------------------------------------

    def order(self, order_id: str) -> OrderUpdate:
        o = self._orders.get(order_id)
        if o is None:
            raise NotFound(f"order {order_id} not found")
        return o.snapshot()

    def open_orders(self, account: str, symbol: str | None = None) -> list[OrderUpdate]:
        sym = self._market(symbol).rules.symbol if symbol is not None else None
        return [
            o.snapshot() for o in self._open.get(account, {}).values() if sym is None or o.mkt.rules.symbol == sym
        ]

    def locked_for(self, order_id: str) -> Decimal:
        """What an order still holds locked (its remainder's reservation); 0 once final."""
        o = self._orders.get(order_id)
        if o is None or o.status in FINAL_STATUSES:
            return _ZERO
        return EXACT.multiply(o.unit_lock, Decimal(o.lots - o.filled))

    def open_locks(self) -> dict[tuple[str, str], Decimal]:
        """Sum of ``locked_for`` per (account, asset): what the ledger's locked balances must equal."""
        out: dict[tuple[str, str], Decimal] = {}
        for acc, orders in self._open.items():
            for oid, o in orders.items():
                key = (acc, o.lock_asset)
                out[key] = out.get(key, _ZERO) + self.locked_for(oid)
        return out

    def depth(self, symbol: str, limit: int = 10) -> Depth:
        mkt = self._market(symbol)
        r = mkt.rules
        bids, asks = mkt.book.depth(limit)
        return Depth(
            r.symbol,
            tuple((r.ticks_to_price(p), r.lots_to_qty(q)) for p, q in bids),
            tuple((r.ticks_to_price(p), r.lots_to_qty(q)) for p, q in asks),
        )

    def best_bid(self, symbol: str) -> Decimal | None:
        mkt = self._market(symbol)
        p = mkt.book.best_bid()
        return None if p is None else mkt.rules.ticks_to_price(p)

    def best_ask(self, symbol: str) -> Decimal | None:
        mkt = self._market(symbol)
        p = mkt.book.best_ask()
        return None if p is None else mkt.rules.ticks_to_price(p)

    def last_trade(self, symbol: str) -> Trade | None:
        return self._market(symbol).last_trade

    def book(self, symbol: str) -> bk.OrderBook:
        """The integer book itself (read it; don't command it directly, the ledger would not follow)."""
        return self._market(symbol).book

    def quote(self, symbol: str, side: Side | str, quantity: Decimal) -> Quote:
        from .quote import quote_book

        mkt = self._market(symbol)
        return quote_book(mkt.book, mkt.rules, Side(str(side).upper()), quantity)

    def place_many(self, requests: Iterable[OrderRequest]) -> list[ExecutionReport]:
        return [self.place(r) for r in requests]

