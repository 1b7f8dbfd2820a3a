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
from decimal import ROUND_CEILING, Context, Decimal
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
    _LazyEntry,
    deposit_entry,
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
_MEMO: Final = 1 << 16


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


_RawFill = tuple["_Order", int, int, int, Decimal, Decimal, Decimal, Decimal, OrderStatus, int, int]
"""(maker, price ticks, lots, trade number, quantity, notional, maker fee, taker fee, maker status, maker
filled lots, maker cumulative ticks x lots) as captured at the fill."""


class ExecutionReport:
    """What one command did: the taker's final ``OrderUpdate``, every ``Trade``, each touched maker's
    ``OrderUpdate`` (fill order) and every ``JournalEntry`` applied, in order. Immutable.

    The exchange captures the few integers that define a report and builds the frozen events on first
    read of each field (then caches them): a report is usually read by one consumer or by none (a replay,
    a benchmark), and building the events eagerly cost more than matching and settling. Equality, hashing
    and ``repr`` are those of the materialised four fields, as for a dataclass, and
    ``ExecutionReport(order, trades, maker_updates, journal)`` still builds one from ready-made values.
    """

    __slots__ = ("_journal", "_makers", "_order", "_order_src", "_raw", "_taker", "_trades")

    def __init__(
        self,
        order: OrderUpdate,
        trades: tuple[Trade, ...],
        maker_updates: tuple[OrderUpdate, ...],
        journal: tuple[JournalEntry, ...],
    ) -> None:
        self._order: OrderUpdate | None = order
        self._trades: tuple[Trade, ...] | None = tuple(trades)
        self._makers: tuple[OrderUpdate, ...] | None = tuple(maker_updates)
        self._journal: tuple[JournalEntry, ...] | list[JournalEntry] = tuple(journal)
        self._taker: _Order | None = None
        self._order_src: tuple[OrderStatus, int, int, str | None] | None = None
        self._raw: list[_RawFill] | None = None

    @property
    def order(self) -> OrderUpdate:
        o = self._order
        if o is None:
            taker = self._taker
            src = self._order_src
            assert taker is not None and src is not None
            o = self._order = taker.update(src[0], src[1], src[2], src[3])
        return o

    @property
    def trades(self) -> tuple[Trade, ...]:
        t = self._trades
        if t is None:
            t = self._trades = self._build_trades()
        return t

    @property
    def maker_updates(self) -> tuple[OrderUpdate, ...]:
        m = self._makers
        if m is None:
            raw = self._raw
            assert raw is not None
            m = self._makers = tuple(f[0].update(f[8], f[9], f[10], None) for f in raw)
        return m

    @property
    def journal(self) -> tuple[JournalEntry, ...]:
        j = self._journal
        if type(j) is list:
            j = self._journal = tuple(j)
        assert isinstance(j, tuple)
        return j

    def _build_trades(self) -> tuple[Trade, ...]:
        taker = self._taker
        raw = self._raw
        assert taker is not None and raw is not None
        rules = taker.mkt.rules
        symbol = rules.symbol
        tick = rules.tick_size
        quote = rules.quote_asset
        taker_id = taker.req.order_id
        taker_acc = taker.account
        aggressor = Side.BUY if taker.is_buy else Side.SELL
        return tuple(
            Trade(
                f"{symbol}-{tid}", symbol, EXACT.multiply(tick, Decimal(p)), qty, notional, maker.req.order_id,
                taker_id, maker.account, taker_acc, mfee, tfee, quote, aggressor,
            )
            for maker, p, _q, tid, qty, notional, mfee, tfee, _s, _f, _c in raw
        )

    def _fields(self) -> tuple[OrderUpdate, tuple[Trade, ...], tuple[OrderUpdate, ...], tuple[JournalEntry, ...]]:
        return (self.order, self.trades, self.maker_updates, self.journal)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ExecutionReport):
            return NotImplemented
        return self._fields() == other._fields()

    def __hash__(self) -> int:
        return hash(self._fields())

    def __repr__(self) -> str:
        return (
            f"ExecutionReport(order={self.order!r}, trades={self.trades!r}, "
            f"maker_updates={self.maker_updates!r}, journal={self.journal!r})"
        )


class _LazyReport(ExecutionReport):
    """A report on ``taker`` as it is now, with its fills (``raw``) and entries, built on demand."""

    __slots__ = ()

    def __init__(self, taker: _Order, raw: list[_RawFill] | None, journal: list[JournalEntry]) -> None:
        self._order = None
        self._taker = taker
        self._order_src = (taker.status, taker.filled, taker.cum, taker.reason)
        self._raw = raw
        self._trades = None if raw else ()
        self._makers = None if raw else ()
        self._journal = journal


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
        "lock_cell",
        "lots",
        "mkt",
        "reason",
        "recv_cell",
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
        # in-memory ``Ledger`` fast path: this account's [free, locked] cells of the locked asset and of
        # the asset it receives (None until first needed)
        self.lock_cell: list[Decimal] | None = None
        self.recv_cell: list[Decimal] | None = None

    def snapshot(self) -> OrderUpdate:
        return self.update(self.status, self.filled, self.cum, self.reason)

    def update(self, status: OrderStatus, filled: int, cum: int, reason: str | None) -> OrderUpdate:
        """The ``OrderUpdate`` of this order in the given (possibly earlier) state."""
        req = self.req
        r = self.mkt.rules
        avg = None
        if filled:
            avg = _AVG.multiply(_AVG.divide(Decimal(cum), Decimal(filled)), r.tick_size)
        return OrderUpdate(
            req.order_id,
            req.account,
            r.symbol,
            req.side,
            req.type,
            req.time_in_force,
            status,
            req.price,
            req.quantity,
            EXACT.multiply(r.step_size, Decimal(filled)),
            EXACT.multiply(r.step_size, Decimal(self.lots - filled)),
            avg,
            EXACT.multiply(self.mkt.unit_quote, Decimal(cum)),
            reason,
        )


class _Market:
    __slots__ = (
        "book", "buy_lock", "dec", "fee_cell", "last_report", "lots_of", "min_units", "rules", "ticks_of",
        "unit_quote",
    )

    def __init__(self, rules: MarketRules) -> None:
        self.rules = rules
        self.book = bk.OrderBook()
        self.unit_quote = EXACT.multiply(rules.tick_size, rules.step_size)  # quote value of 1 tick x 1 lot
        self.last_report: ExecutionReport | None = None  # its last trade is this market's last trade
        self.fee_cell: list[Decimal] | None = None  # fast path: the fee account's quote-asset cell
        # memos of the Decimal edge (bounded by _MEMO): prices and quantities already validated against
        # this market's filters, the buy lock per lot at a limit price (ticks), Decimal(n) for lot counts.
        # Real order flow reuses few price levels and sizes, and each conversion costs ~0.5 us.
        self.ticks_of: dict[Decimal, int] = {}
        self.lots_of: dict[Decimal, int] = {}
        self.buy_lock: dict[int, Decimal] = {}
        self.dec: dict[int, Decimal] = {}
        # MIN_NOTIONAL in integers: ticks x lots x unit_quote >= min_notional <=> ticks x lots >= min_units
        self.min_units = int(
            EXACT.divide(rules.min_notional, self.unit_quote).to_integral_value(rounding=ROUND_CEILING)
        ) if rules.min_notional else 0

    def decimal(self, n: int) -> Decimal:
        """``Decimal(n)``, memoised (lot counts and lot x tick products repeat)."""
        d = self.dec.get(n)
        if d is None:
            d = Decimal(n)
            if len(self.dec) < _MEMO:
                self.dec[n] = d
        return d

    def limit_order(self, price: Decimal, quantity: Decimal) -> tuple[int, int]:
        """``rules.limit_order`` through the memos; anything not seen before takes the full check."""
        if type(price) is Decimal and type(quantity) is Decimal:
            ticks = self.ticks_of.get(price)
            lots = self.lots_of.get(quantity)
            if ticks is not None and lots is not None and ticks * lots >= self.min_units:
                return ticks, lots
            ticks, lots = self.rules.limit_order(price, quantity)
            if len(self.ticks_of) < _MEMO:
                self.ticks_of[price] = ticks
            if len(self.lots_of) < _MEMO:
                self.lots_of[quantity] = lots
            return ticks, lots
        return self.rules.limit_order(price, quantity)


class PaperExchange:
    """See the module docstring. ``ledger`` defaults to an in-memory ``Ledger`` (the reference store).

    With the in-memory ``Ledger`` (exactly that class) the exchange posts each entry's amounts straight
    into the ledger's balance cells, with the same checks and arithmetic as ``Ledger.apply``, and hands
    the ledger (``keep_journal``) and the report the same, lazily materialised, entries. Any other
    ``LedgerStore`` gets every entry through ``apply``, in order.
    """

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
        led = self.ledger
        self._fast: Ledger | None = led if type(led) is Ledger else None

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
        mkt = self._markets.get(request.symbol)
        if mkt is None:
            try:
                mkt = self._market(request.symbol)
            except RuleViolation as exc:
                return self._reject(request, None, exc.detail)
        rules = mkt.rules
        book = mkt.book
        is_buy = request.side == Side.BUY
        tif = _TIF_CODE.get(request.time_in_force, -1)
        if tif < 0:
            tif = _TIF_CODE[TimeInForce(request.time_in_force)]
        try:
            if request.type == OrderType.LIMIT:
                cap = request.price
                if cap is None:
                    raise RuleViolation("PRICE_FILTER", "price", "a LIMIT order needs a price")
                limit, lots = mkt.limit_order(cap, request.quantity)
            else:
                if tif == bk.GTC:
                    tif = bk.IOC
                best = book.best_ask() if is_buy else book.best_bid()
                if best is None:
                    rules.market_order(request.quantity, None)
                    o = _Order(request, mkt, is_buy, rules.qty_to_lots(request.quantity), _ZERO, "")
                    return self._finish_unplaced(o, OrderStatus.EXPIRED, "NO_LIQUIDITY")
                lots = rules.market_order(request.quantity, rules.ticks_to_price(best))
                limit = rules.band_limit_ticks(best, is_buy)
                cap = rules.ticks_to_price(limit)
                if is_buy and reservation is not None and reservation.price_cap is not None:
                    # The lock was made upstream against its own cap (the price moved since, perhaps):
                    # the lock per lot follows that cap, and fills never go above it.
                    cap_ticks = int(reservation.price_cap // rules.tick_size)
                    limit = min(limit, cap_ticks)
                    cap = reservation.price_cap
        except RuleViolation as exc:
            return self._reject(request, mkt, exc.detail)

        if is_buy:
            asset = rules.quote_asset
            if request.type == OrderType.LIMIT:
                memo = mkt.buy_lock.get(limit)
                if memo is None:
                    memo = EXACT.multiply(EXACT.multiply(cap, rules.step_size), self._reserve_mult)
                    if len(mkt.buy_lock) < _MEMO:
                        mkt.buy_lock[limit] = memo
                unit_lock = memo
            else:
                unit_lock = EXACT.multiply(EXACT.multiply(cap, rules.step_size), self._reserve_mult)
        else:
            asset = rules.base_asset
            unit_lock = rules.step_size
        amount = EXACT.multiply(unit_lock, mkt.decimal(lots))
        account = request.account
        o = _Order(request, mkt, is_buy, lots, unit_lock, asset)
        journal: list[JournalEntry] = []
        fast = self._fast
        if reservation is None:
            if fast is not None:
                cell = fast._balances.get((account, asset))
                free = cell[0] if cell is not None else _ZERO
            else:
                free = self.ledger.free(account, asset)
            if free < amount:
                shortfall = InsufficientBalance(account, asset, amount, free)
                return self._reject(request, mkt, shortfall.detail)
            entry = _LazyEntry("RESERVE", oid, (account, asset, amount))
            if fast is not None:
                assert cell is not None  # free >= amount > 0
                cell[0] = EXACT.subtract(free, amount)
                cell[1] = EXACT.add(cell[1], amount)
                o.lock_cell = cell
                if fast.keep_journal:
                    fast.journal.append(entry)
            else:
                self.ledger.apply(entry)
            journal.append(entry)
        elif reservation.asset != asset or reservation.amount != amount:
            raise InvalidInput(
                f"order {oid}: upstream reservation {reservation.amount} {reservation.asset} "
                f"does not match the required {amount} {asset}"
            )
        self._orders[oid] = o
        fills, remaining, outcome = book.submit(oid, account, is_buy, limit, lots, tif, o)
        raw = self._settle(mkt, o, fills, journal) if fills else None
        if outcome == bk.RESTED:
            o.status = OrderStatus.PARTIALLY_FILLED if o.filled else OrderStatus.NEW
            acc = self._open.get(account)
            if acc is None:
                acc = self._open[account] = {}
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
        report = _LazyReport(o, raw, journal)
        if raw is not None:
            mkt.last_report = report
        return report

    def _settle(
        self, mkt: _Market, taker: _Order, fills: list[bk.Fill], journal: list[JournalEntry]
    ) -> list[_RawFill]:
        """Settle every fill (one SETTLE entry each) and capture what the report needs to describe it."""
        rules = mkt.rules
        step = rules.step_size
        unit_quote = mkt.unit_quote
        base = rules.base_asset
        quote = rules.quote_asset
        symbol = rules.symbol
        mrate = self._maker_rate
        trate = self._taker_rate
        mul = EXACT.multiply
        add = EXACT.add
        fee_account = self.fee_account
        fast = self._fast
        apply = self.ledger.apply
        keep = fast is not None and fast.keep_journal
        ledger_journal = fast.journal if fast is not None else journal
        taker_buys = taker.is_buy
        taker_acc = taker.account
        empty: list[Decimal] = []
        fee_cell = t_lock = t_recv = empty  # the cells are only used with the in-memory ledger
        if fast is not None:
            fee_cell = mkt.fee_cell or fast._cell(fee_account, quote)
            mkt.fee_cell = fee_cell
            t_lock = taker.lock_cell or fast._cell(taker_acc, taker.lock_asset)
            taker.lock_cell = t_lock
            t_recv = taker.recv_cell or fast._cell(taker_acc, base if taker_buys else quote)
            taker.recv_cell = t_recv
        open_orders = self._open
        raw: list[_RawFill] = []
        t_filled = taker.filled
        t_cum = taker.cum
        for maker_ro, p, q, tid in fills:
            maker = maker_ro.tag
            assert isinstance(maker, _Order)
            dq = mkt.decimal(q)
            qty = mul(step, dq)
            notional = mul(unit_quote, mkt.decimal(p * q))
            mfee = mul(notional, mrate)
            tfee = mul(notional, trate)
            if taker_buys:
                buyer, seller, bfee, sfee, buyer_o = taker_acc, maker.account, tfee, mfee, taker
            else:
                buyer, seller, bfee, sfee, buyer_o = maker.account, taker_acc, mfee, tfee, maker
            consumed = mul(buyer_o.unit_lock, dq)
            refund = consumed - notional - bfee
            entry = _LazyEntry(
                "SETTLE", f"{symbol}-{tid}",
                (base, quote, buyer, seller, qty, notional, bfee, sfee, consumed, refund, fee_account),
            )
            if fast is not None:
                m_lock = maker.lock_cell or fast._cell(maker.account, maker.lock_asset)
                maker.lock_cell = m_lock
                m_recv = maker.recv_cell or fast._cell(maker.account, quote if taker_buys else base)
                maker.recv_cell = m_recv
                if taker_buys:
                    s_lock, b_recv, b_lock, s_recv = m_lock, t_recv, t_lock, m_recv
                else:
                    s_lock, b_recv, b_lock, s_recv = t_lock, m_recv, m_lock, t_recv
                if s_lock[1] < qty or b_lock[1] < consumed:
                    self._overdraw(entry)
                s_lock[1] = add(s_lock[1], -qty)
                b_recv[0] = add(b_recv[0], qty)
                b_lock[1] = add(b_lock[1], -consumed)
                s_recv[0] = add(s_recv[0], notional - sfee)
                if refund:
                    b_lock[0] = add(b_lock[0], refund)
                fee = bfee + sfee
                if fee:
                    fee_cell[0] = add(fee_cell[0], fee)
                if keep:
                    ledger_journal.append(entry)
            else:
                apply(entry)
            journal.append(entry)
            pq = p * q
            t_filled += q
            t_cum += pq
            m_filled = maker.filled = maker.filled + q
            m_cum = maker.cum = maker.cum + pq
            if maker_ro.remaining == 0:
                m_status = maker.status = OrderStatus.FILLED
                del open_orders[maker.account][maker.req.order_id]
            else:
                m_status = maker.status = OrderStatus.PARTIALLY_FILLED
            raw.append((maker, p, q, tid, qty, notional, mfee, tfee, m_status, m_filled, m_cum))
        taker.filled = t_filled
        taker.cum = t_cum
        return raw

    def _overdraw(self, entry: JournalEntry) -> None:
        """A fill would take more than is locked: raise ``LedgerError`` (nothing applied) exactly when
        ``Ledger.apply`` would, i.e. unless the overdrawn account is the external one."""
        fast = self._fast
        assert fast is not None
        probe = Ledger(keep_journal=False)
        probe._balances = {k: [v[0], v[1]] for k, v in fast._balances.items()}
        probe.apply(entry)  # raises LedgerError unless only the external account goes negative

    def _release(self, o: _Order, remaining_lots: int, journal: list[JournalEntry]) -> None:
        if remaining_lots and o.unit_lock:
            amount = EXACT.multiply(o.unit_lock, o.mkt.decimal(remaining_lots))
            entry = _LazyEntry("RELEASE", o.req.order_id, (o.account, o.lock_asset, amount))
            fast = self._fast
            if fast is not None:
                cell = o.lock_cell
                if cell is None:
                    cell = o.lock_cell = fast._cell(o.account, o.lock_asset)
                if cell[1] < amount:
                    fast.apply(entry)  # raises LedgerError (nothing applied), as the reference store does
                else:
                    cell[1] = EXACT.add(cell[1], -amount)
                    cell[0] = EXACT.add(cell[0], amount)
                    if fast.keep_journal:
                        fast.journal.append(entry)
            else:
                self.ledger.apply(entry)
            journal.append(entry)

    def _reject(self, request: OrderRequest, mkt: _Market | None, reason: str) -> ExecutionReport:
        upd = OrderUpdate(
            request.order_id, request.account, mkt.rules.symbol if mkt else str(request.symbol), request.side,
            request.type, request.time_in_force, OrderStatus.REJECTED, request.price, request.quantity,
            _ZERO, _ZERO, None, _ZERO, reason,
        )
        return ExecutionReport(upd, (), (), ())

    def _finish_unplaced(self, o: _Order, status: OrderStatus, reason: str) -> ExecutionReport:
        o.status = status
        o.reason = reason
        self._orders[o.req.order_id] = o
        return _LazyReport(o, None, [])

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
        return _LazyReport(o, None, journal)

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

    def is_open(self, order_id: str) -> bool:
        """Whether the order rests on a book (cheaper than ``order()``: no snapshot)."""
        o = self._orders.get(order_id)
        return o is not None and o.status not in FINAL_STATUSES

    def forget(self, order_id: str) -> bool:
        """Drop a final order's state; a long-running owner calls this so memory does not grow with every
        order ever placed. Open orders are kept (returns False)."""
        o = self._orders.get(order_id)
        if o is None or o.status not in FINAL_STATUSES:
            return False
        del self._orders[order_id]
        return True

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
        rep = self._market(symbol).last_report
        return rep.trades[-1] if rep is not None else None

    def book(self, symbol: str) -> bk.OrderBook:
        """The integer book itself (read it; don't command it directly, the ledger would not follow)."""
        return self._market(symbol).book

    def quote(self, symbol: str, side: Side | str, quantity: Decimal) -> Quote:
        from .quote import quote_book

        mkt = self._market(symbol)
        return quote_book(mkt.book, mkt.rules, Side(str(side).upper()), quantity)

    def place_many(self, requests: Iterable[OrderRequest]) -> list[ExecutionReport]:
        return [self.place(r) for r in requests]

