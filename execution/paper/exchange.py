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

import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum
from typing import Final

from shared.amounts import average
from shared.errors import Conflict, InvalidInput, NotFound
from shared.ledger import EXACT
from shared.paper.ledger import (
    FEE_ACCOUNT,
    Cell,
    FeeSchedule,
    InsufficientBalance,
    JournalEntry,
    Ledger,
    LedgerStore,
    Reservation,
    SettleTerms,
    _LotsEntry,
    _SettleEntry,
    deposit_entry,
    required_reservation,
)
from shared.paper.rules import MarketRules, RuleViolation, build_rules, normalize_symbol

from . import book as bk

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

_ZERO: Final = Decimal(0)
_ONE: Final = Decimal(1)
_MEMO: Final = 1 << 16
_POW10: Final[tuple[int, ...]] = tuple(10**i for i in range(19))


class Side(StrEnum):
    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    LIMIT = "LIMIT"
    MARKET = "MARKET"
    STOP_LOSS = "STOP_LOSS"
    STOP_LOSS_LIMIT = "STOP_LOSS_LIMIT"
    TAKE_PROFIT = "TAKE_PROFIT"
    TAKE_PROFIT_LIMIT = "TAKE_PROFIT_LIMIT"


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
STOP_TYPES: Final = frozenset(
    {OrderType.STOP_LOSS, OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT, OrderType.TAKE_PROFIT_LIMIT}
)
LIMIT_STOPS: Final = frozenset({OrderType.STOP_LOSS_LIMIT, OrderType.TAKE_PROFIT_LIMIT})
TRIGGER_IMMEDIATELY: Final = "Order would trigger immediately."
STOP_UNFUNDED: Final = "STOP_UNFUNDED_AT_TRIGGER"


def triggers_rising(order_type: str, side: str) -> bool:
    """Binance's trigger rule: STOP_LOSS buys and TAKE_PROFIT sells trigger when the last price rises to the
    stop price (last >= stop); STOP_LOSS sells and TAKE_PROFIT buys when it falls to it (last <= stop)."""
    return str(order_type).startswith("STOP_LOSS") == (str(side) == "BUY")


def stop_reached(order_type: str, side: str, stop_price: Decimal, last_price: Decimal) -> bool:
    """Whether a stop order of this type and side triggers at ``last_price`` (see ``triggers_rising``)."""
    if triggers_rising(order_type, side):
        return last_price >= stop_price
    return last_price <= stop_price


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """A new order. ``price`` is required for LIMIT (and the ``*_LIMIT`` stops) and ignored for MARKET (which
    is IOC unless FOK); ``stop_price`` is required for the four stop types and ignored otherwise."""

    order_id: str
    account: str
    symbol: str
    side: Side
    type: OrderType
    quantity: Decimal
    price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    stop_price: Decimal | None = None


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
    stop_price: Decimal | None = None
    triggered: bool = False  # a stop order whose trigger fired (it is, or was, working: on the book or run)


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


class ExecutionReport:
    """What one command did: the taker's final ``OrderUpdate``, every ``Trade``, each touched maker's
    ``OrderUpdate`` (fill order) and every ``JournalEntry`` applied, in order. Immutable.

    The exchange captures the few integers that define a report (``_LazyReport``) and builds the frozen
    events, and with the in-memory ledger even the journal entries, on first read of each field (then
    caches them): a report is usually read by one consumer or by none (a replay, a benchmark), and building
    them eagerly cost more than matching and settling. Equality, hashing and ``repr`` are those of the
    materialised four fields, as for a dataclass, and ``ExecutionReport(order, trades, maker_updates,
    journal)`` still builds one from ready-made values.
    """

    __slots__ = (
        "_cum",
        "_entries",
        "_filled",
        "_fills",
        "_journal",
        "_makers",
        "_order",
        "_reason",
        "_released",
        "_reserved",
        "_status",
        "_taker",
        "_trades",
    )

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
        self._journal: tuple[JournalEntry, ...] | None = tuple(journal)
        # what a lazy report is made from: the taker, its state at the time, its fills, and either the
        # entries made (``_entries``) or, when none was needed yet, the lots reserved and released
        self._taker: _Order | None = None
        self._status = OrderStatus.NEW
        self._filled = 0
        self._cum = 0
        self._reason: str | None = None
        self._fills: list[_Fill] | None = None
        self._entries: list[JournalEntry] | None = None
        self._reserved = 0
        self._released = 0

    @property
    def order(self) -> OrderUpdate:
        o = self._order
        if o is None:
            taker = self._taker
            assert taker is not None
            o = self._order = taker.update(self._status, self._filled, self._cum, self._reason)
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
            fills = self._fills
            assert fills is not None
            m = self._makers = tuple(f.maker.update(f.status, f.filled, f.cum, None) for f in fills)
        return m

    @property
    def journal(self) -> tuple[JournalEntry, ...]:
        j = self._journal
        if j is None:
            entries = self._entries
            j = self._journal = tuple(entries) if entries is not None else self._build_journal()
        return j

    def _build_journal(self) -> tuple[JournalEntry, ...]:
        """The entries the in-memory ledger's fast path did not need to make: RESERVE, SETTLEs, RELEASE."""
        taker = self._taker
        assert taker is not None
        oid = taker.req.order_id
        out: list[JournalEntry] = []
        if self._reserved:
            out.append(
                _LotsEntry("RESERVE", oid, taker.account, taker.lock_asset, taker.unit_lock, self._reserved)
            )
        for f in self._fills or ():
            out.append(f.entry(taker))
        if self._released:
            out.append(
                _LotsEntry("RELEASE", oid, taker.account, taker.lock_asset, taker.unit_lock, self._released)
            )
        return tuple(out)

    def _build_trades(self) -> tuple[Trade, ...]:
        taker = self._taker
        fills = self._fills
        assert taker is not None and fills is not None
        rules = taker.mkt.rules
        symbol = rules.symbol
        quote = rules.quote_asset
        taker_id = taker.req.order_id
        taker_acc = taker.account
        aggressor = Side.BUY if taker.is_buy else Side.SELL
        trades: list[Trade] = []
        for f in fills:
            entry = f.entry(taker)
            qty, notional, mfee, tfee, _consumed = entry.amounts()
            maker = f.maker
            trades.append(
                Trade(
                    entry.ref,
                    symbol,
                    entry.price(),
                    qty,
                    notional,
                    maker.req.order_id,
                    taker_id,
                    maker.account,
                    taker_acc,
                    mfee,
                    tfee,
                    quote,
                    aggressor,
                )
            )
        return tuple(trades)

    def _fields(
        self,
    ) -> tuple[OrderUpdate, tuple[Trade, ...], tuple[OrderUpdate, ...], tuple[JournalEntry, ...]]:
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
    """A report on ``taker`` as it is now, with its ``fills``, built on demand. ``entries`` are the journal
    entries made (generic store, or a ledger keeping its journal); None when the in-memory ledger needed
    none, and then the RESERVE of ``reserved`` lots and the RELEASE of ``released`` lots are made on read."""

    __slots__ = ()

    def __init__(
        self,
        taker: _Order,
        fills: list[_Fill] | None,
        entries: list[JournalEntry] | None,
        reserved: int,
        released: int,
    ) -> None:
        self._order = None
        self._taker = taker
        self._status = taker.status
        self._filled = taker.filled
        self._cum = taker.cum
        self._reason = taker.reason
        self._fills = fills
        self._trades = None if fills else ()
        self._makers = None if fills else ()
        self._journal = None
        self._entries = entries
        self._reserved = reserved
        self._released = released


class _Fill:
    """One fill: price (ticks), lots, trade number, the maker and its state right after (``status``,
    ``filled``, ``cum``: set once settled). Its SETTLE entry is made once, when first needed (``entry``)."""

    __slots__ = ("_entry", "cum", "filled", "lots", "maker", "status", "ticks", "tid")

    def __init__(self, maker: _Order, ticks: int, lots: int, tid: int) -> None:
        self.maker = maker
        self.ticks = ticks
        self.lots = lots
        self.tid = tid
        self.status = OrderStatus.PARTIALLY_FILLED
        self.filled = 0
        self.cum = 0
        self._entry: _SettleEntry | None = None

    def entry(self, taker: _Order) -> _SettleEntry:
        e = self._entry
        if e is None:
            maker = self.maker
            terms = taker.mkt.terms
            if taker.is_buy:
                buyer, seller = taker, maker
            else:
                buyer, seller = maker, taker
            e = self._entry = _SettleEntry(
                f"{taker.mkt.rules.symbol}-{self.tid}",
                terms,
                buyer.account,
                seller.account,
                taker.is_buy,
                buyer.unit_lock,
                self.ticks,
                self.lots,
            )
        return e


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
        "lock_units",
        "lots",
        "mkt",
        "reason",
        "recv_cell",
        "req",
        "status",
        "triggered",
        "unit_lock",
    )

    def __init__(
        self,
        req: OrderRequest,
        mkt: _Market,
        is_buy: bool,
        lots: int,
        unit_lock: Decimal,
        lock_asset: str,
        lock_units: int,
    ) -> None:
        self.req = req
        self.account = req.account
        self.mkt = mkt
        self.is_buy = is_buy
        self.lots = lots
        self.filled = 0
        self.cum = 0  # sum of price_ticks * lots over fills
        self.unit_lock = unit_lock  # lock per lot (Decimal: what entries and reports show)
        self.lock_asset = lock_asset
        self.lock_units = lock_units  # the same in the in-memory ledger's units of lock_asset (fast path)
        self.status = OrderStatus.NEW
        self.reason: str | None = None
        self.triggered = False
        # integer path: this account's ledger cells of the locked asset and of the asset it receives (None
        # until first needed)
        self.lock_cell: Cell | None = None
        self.recv_cell: Cell | None = None

    def snapshot(self) -> OrderUpdate:
        return self.update(self.status, self.filled, self.cum, self.reason)

    def update(self, status: OrderStatus, filled: int, cum: int, reason: str | None) -> OrderUpdate:
        """The ``OrderUpdate`` of this order in the given (possibly earlier) state."""
        req = self.req
        r = self.mkt.rules
        avg = None
        if filled:
            avg = average(Decimal(cum) * r.tick_size, Decimal(filled))  # at the documented precision
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
            EXACT.multiply(self.mkt.terms.unit_quote, Decimal(cum)),
            reason,
            req.stop_price,
            self.triggered,
        )


class _Market:
    __slots__ = (
        "base_lot",
        "book",
        "buy_lock",
        "buy_lock_tl",
        "fee_cell",
        "last_report",
        "last_ticks",
        "lots_of",
        "maker_fee_tl",
        "min_units",
        "quote_tl",
        "reserve_mult",
        "rules",
        "stops",
        "stops_down",
        "stops_up",
        "swing_hi",
        "swing_lo",
        "taker_fee_tl",
        "terms",
        "ticks_of",
    )

    def __init__(
        self, rules: MarketRules, fees: FeeSchedule, reserve_mult: Decimal, fee_account: str
    ) -> None:
        self.rules = rules
        self.book = bk.OrderBook()
        self.terms = SettleTerms(
            rules.base_asset,
            rules.quote_asset,
            rules.tick_size,
            rules.step_size,
            fees.maker_rate,
            fees.taker_rate,
            fee_account,
        )
        self.reserve_mult = reserve_mult  # 1 + the highest fee rate
        self.last_report: ExecutionReport | None = None  # its last trade is this market's last trade
        self.last_ticks = 0  # the last trade's price in ticks (0: none yet): what stop orders trigger on
        # stop orders waiting for their trigger, by id (with the reservation they run with), and two heaps of
        # (trigger ticks, placement number, id): rising triggers (last >= stop) lowest first, falling ones
        # (last <= stop) as (-ticks, ...) highest first; canceled entries are dropped when they surface
        self.stops: dict[str, tuple[_Order, Reservation]] = {}
        self.stops_up: list[tuple[int, int, str]] = []
        self.stops_down: list[tuple[int, int, str]] = []
        # the lowest and highest price traded at since the stops were last checked (0: none)
        self.swing_lo = 0
        self.swing_hi = 0
        self.fee_cell: Cell | None = None  # integer path: the fee account's quote-asset cell
        # integer path: the market's quanta in the in-memory ledger's units (``set_units``): base per lot;
        # quote, maker fee, taker fee and buy lock per tick x lot. A fill is then a few int products.
        self.base_lot = 0
        self.quote_tl = 0
        self.maker_fee_tl = 0
        self.taker_fee_tl = 0
        self.buy_lock_tl = 0
        # memos of the Decimal edge (bounded by _MEMO): prices and quantities already validated against
        # this market's filters (keyed by their str: hashing a Decimal costs ~10x as much), and the buy
        # lock per lot at a limit price (ticks). Real order flow reuses few price levels and sizes.
        self.ticks_of: dict[str, int] = {}
        self.lots_of: dict[str, int] = {}
        self.buy_lock: dict[int, Decimal] = {}
        # MIN_NOTIONAL in integers: ticks x lots x unit_quote >= min_notional <=> ticks x lots >= min_units
        unit_quote = self.terms.unit_quote
        self.min_units = (
            int(EXACT.divide(rules.min_notional, unit_quote).to_integral_value(rounding=ROUND_CEILING))
            if rules.min_notional
            else 0
        )

    def set_units(self, ledger: Ledger) -> None:
        """Express the quanta in ``ledger``'s units (refining them if a quantum is finer than they are)."""
        t = self.terms
        unit_quote = t.unit_quote
        self.base_lot = ledger.units(t.base, t.step)
        self.quote_tl = ledger.units(t.quote, unit_quote)
        self.maker_fee_tl = ledger.units(t.quote, EXACT.multiply(unit_quote, t.maker_rate))
        self.taker_fee_tl = ledger.units(t.quote, EXACT.multiply(unit_quote, t.taker_rate))
        self.buy_lock_tl = ledger.units(t.quote, EXACT.multiply(unit_quote, self.reserve_mult))

    def buy_unit_lock(self, limit: int, cap: Decimal) -> Decimal:
        """A limit buy's lock per lot, ``cap x step x (1 + max fee rate)``, memoised per price (ticks)."""
        unit = self.buy_lock.get(limit)
        if unit is None:
            unit = EXACT.multiply(EXACT.multiply(cap, self.rules.step_size), self.reserve_mult)
            if len(self.buy_lock) < _MEMO:
                self.buy_lock[limit] = unit
        return unit

    def limit_order(self, price: Decimal, quantity: Decimal) -> tuple[int, int]:
        """``rules.limit_order`` through the memos; anything not seen before takes the full check."""
        if type(price) is Decimal and type(quantity) is Decimal:
            pkey = str(price)
            qkey = str(quantity)
            ticks = self.ticks_of.get(pkey)
            lots = self.lots_of.get(qkey)
            if ticks is not None and lots is not None and ticks * lots >= self.min_units:
                return ticks, lots
            ticks, lots = self.rules.limit_order(price, quantity)
            if len(self.ticks_of) < _MEMO:
                self.ticks_of[pkey] = ticks
            if len(self.lots_of) < _MEMO:
                self.lots_of[qkey] = lots
            return ticks, lots
        return self.rules.limit_order(price, quantity)


class PaperExchange:
    """See the module docstring. ``ledger`` defaults to an in-memory ``Ledger`` (the reference store).

    With an in-memory ``Ledger`` (the paper venue's too: it holds the system accounts only, see ``scope``)
    the exchange reserves, settles and releases in the ledger's integer units through its unit-level
    interface (``Ledger.units``/``cell``/``lock``, ``Cell``), with the same checks ``Ledger.apply`` makes:
    per market it holds the quanta (base per lot; quote, fees and buy lock per tick x lot) as ints, so a
    fill is a handful of int products and sums, and each order its lock per lot. It hands the ledger
    (``keep_journal``) and the report the same entries, whose Decimals are made on first read. Any other
    ``LedgerStore`` gets every entry through ``apply``, in order (``integer_ledger`` says which).
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
        reserve_mult = EXACT.add(_ONE, self.fees.reserve_rate)
        self._markets = {s: _Market(r, self.fees, reserve_mult, fee_account) for s, r in self.rules.items()}
        self._orders: dict[str, _Order] = {}
        self._open: dict[str, dict[str, _Order]] = {}  # account -> open orders
        led = self.ledger
        self._fast: Ledger | None = led if isinstance(led, Ledger) else None
        self._epoch = -1  # the ledger's ``epoch`` the integer amounts held here are expressed in
        self._scales: dict[str, int] = {}  # ... and its scales then, per asset
        self._stop_seq = 0  # placement number of stop orders (ties between equal trigger prices)
        self._triggering = False  # the trigger loop is running (a triggered order's trades don't restart it)
        self._triggered: list[ExecutionReport] = []  # reports of triggered stops, until ``take_triggered``
        if self._fast is not None:
            self._resync()

    @property
    def integer_ledger(self) -> Ledger | None:
        """The ``Ledger`` this exchange posts into in integer units; None for a generic ``LedgerStore``."""
        return self._fast

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

    def _resync(self) -> None:
        """Express every integer amount held here in the in-memory ledger's current units: at start, and
        after the ledger refined an asset's unit (a finer deposit, say), which it signals by ``epoch``."""
        fast = self._fast
        assert fast is not None
        markets = list(self._markets.values())
        epoch = -1
        while epoch != fast.epoch:  # set_units may itself refine a unit: repeat until all agree
            epoch = fast.epoch
            for mkt in markets:
                mkt.set_units(fast)
        old = self._scales
        for orders in self._open.values():
            for o in orders.values():
                was = old.get(o.lock_asset)
                now = fast.scale(o.lock_asset)
                if was is not None and now != was:
                    o.lock_units *= _POW10[now - was]
        self._scales = {a: fast.scale(a) for m in markets for a in (m.terms.base, m.terms.quote)}
        self._epoch = epoch

    def _lock_units(self, asset: str, unit_lock: Decimal) -> int:
        """A lock per lot that is not a known market quantum (market buys, restored orders) in the in-memory
        ledger's units (0 without one); ``LedgerError`` if it is finer than the ledger can hold."""
        fast = self._fast
        if fast is None:
            return 0
        units = fast.units(asset, unit_lock)  # may refine the unit of ``asset``...
        if fast.epoch != self._epoch:
            self._resync()  # ... and so that of what is held here (``units`` is already in the new one)
        return units

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
        fast = self._fast
        if fast is not None and fast.epoch != self._epoch:
            self._resync()
        kind = request.type
        if kind == OrderType.LIMIT:
            return self._run(request, reservation, mkt, True, False)
        if kind in STOP_TYPES:
            return self._place_stop(request, reservation, mkt)
        return self._run(request, reservation, mkt, False, False)

    def _run(
        self,
        request: OrderRequest,
        reservation: Reservation | None,
        mkt: _Market,
        is_limit: bool,
        triggered: bool,
    ) -> ExecutionReport:
        """Validate, reserve (unless ``reservation``), match and settle ``request`` as a LIMIT (``is_limit``)
        or MARKET order; a triggered stop order runs here with the reservation made when it was placed."""
        oid = request.order_id
        fast = self._fast
        rules = mkt.rules
        book = mkt.book
        is_buy = request.side == Side.BUY
        tif = _TIF_CODE.get(request.time_in_force, -1)
        if tif < 0:
            tif = _TIF_CODE[TimeInForce(request.time_in_force)]
        try:
            if is_limit:
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
                    o = _Order(request, mkt, is_buy, rules.qty_to_lots(request.quantity), _ZERO, "", 0)
                    o.triggered = triggered
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
            if is_limit:
                unit_lock = mkt.buy_unit_lock(limit, cap)
                lock_units = limit * mkt.buy_lock_tl
            else:
                unit_lock = EXACT.multiply(EXACT.multiply(cap, rules.step_size), mkt.reserve_mult)
                lock_units = self._lock_units(asset, unit_lock)
        else:
            asset = rules.base_asset
            unit_lock = rules.step_size
            lock_units = mkt.base_lot
        account = request.account
        o = _Order(request, mkt, is_buy, lots, unit_lock, asset, lock_units)
        o.triggered = triggered
        # the entries made, in order; None while the in-memory ledger needs none made (the report makes
        # them if read): it keeps no journal, so only ``reserved``/``released`` lots need remembering
        entries: list[JournalEntry] | None = None if fast is not None and not fast.keep_journal else []
        reserved = 0
        if reservation is None:
            if fast is not None:
                cell = fast.lock(account, asset, lock_units * lots)
                if cell is None:
                    needed = EXACT.multiply(unit_lock, Decimal(lots))
                    return self._shortfall(request, mkt, asset, needed, fast.free(account, asset))
                o.lock_cell = cell
                if entries is not None:
                    entry = _LotsEntry("RESERVE", oid, account, asset, unit_lock, lots)
                    fast.journal.append(entry)
                    entries.append(entry)
            else:
                needed = EXACT.multiply(unit_lock, Decimal(lots))
                free = self.ledger.free(account, asset)
                if free < needed:
                    return self._shortfall(request, mkt, asset, needed, free)
                entry = _LotsEntry("RESERVE", oid, account, asset, unit_lock, lots)
                self.ledger.apply(entry)
                assert entries is not None
                entries.append(entry)
            reserved = lots
        else:
            needed = EXACT.multiply(unit_lock, Decimal(lots))
            if reservation.asset != asset or reservation.amount != needed:
                raise InvalidInput(
                    f"order {oid}: upstream reservation {reservation.amount} {reservation.asset} "
                    f"does not match the required {needed} {asset}"
                )
        self._orders[oid] = o
        fills, remaining, outcome = book.submit(oid, account, is_buy, limit, lots, tif, o, unique=True)
        done = self._settle(mkt, o, fills, entries) if fills else None
        released = 0
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
                "SELF_TRADE_PREVENTION"
                if outcome == bk.STP_EXPIRED
                else "FOK_NOT_FILLABLE"
                if outcome == bk.KILLED
                else "MARKET_PROTECTION_BAND"
                if not is_limit
                else "IOC_REMAINDER"
            )
            released = self._release(o, remaining, entries)
        report = _LazyReport(o, done, entries, reserved, released)
        if done is not None:
            mkt.last_report = report
            mkt.last_ticks = fills[-1][1]
            if mkt.stops:
                for f in fills:  # every price traded at counts, not only the last: a sweep passes them all
                    p = f[1]
                    if p < mkt.swing_lo or not mkt.swing_lo:
                        mkt.swing_lo = p
                    if p > mkt.swing_hi:
                        mkt.swing_hi = p
                if not self._triggering:
                    self._fire_stops(mkt)
        return report

    def _settle(
        self, mkt: _Market, taker: _Order, fills: list[bk.Fill], entries: list[JournalEntry] | None
    ) -> list[_Fill]:
        """Settle every fill (one SETTLE entry each) and capture what the report needs to describe it.

        Fast path, per fill, in ledger units: the seller's locked base -= lots x base_lot, the buyer's free
        base += the same; the buyer's locked quote -= lots x its lock per lot (consumed), the seller's free
        quote += notional - seller fee, the buyer's free quote += consumed - notional - buyer fee (the
        refund), the fee account += both fees, with notional and fees = ticks x lots x their quantum."""
        fast = self._fast
        taker_buys = taker.is_buy
        base = mkt.terms.base
        quote = mkt.terms.quote
        open_orders = self._open
        done: list[_Fill] = []
        t_filled = taker.filled
        t_cum = taker.cum
        base_lot = quote_tl = maker_fee_tl = taker_fee_tl = 0
        fee_cell = t_lock = t_recv = None  # the cells of the in-memory ledger's fast path
        if fast is not None:
            base_lot = mkt.base_lot
            quote_tl = mkt.quote_tl
            maker_fee_tl = mkt.maker_fee_tl
            taker_fee_tl = mkt.taker_fee_tl
            cell = mkt.fee_cell
            if cell is None:
                cell = mkt.fee_cell = fast.cell(mkt.terms.fee_account, quote)
            fee_cell = cell
            cell = taker.lock_cell
            if cell is None:
                cell = taker.lock_cell = fast.cell(taker.account, taker.lock_asset)
            t_lock = cell
            cell = taker.recv_cell
            if cell is None:
                cell = taker.recv_cell = fast.cell(taker.account, base if taker_buys else quote)
            t_recv = cell
        for maker_ro, p, q, tid in fills:
            maker = maker_ro.tag
            assert isinstance(maker, _Order)
            fill = _Fill(maker, p, q, tid)
            pq = p * q
            if fast is not None:
                m_lock = maker.lock_cell
                if m_lock is None:
                    m_lock = maker.lock_cell = fast.cell(maker.account, maker.lock_asset)
                m_recv = maker.recv_cell
                if m_recv is None:
                    m_recv = maker.recv_cell = fast.cell(maker.account, quote if taker_buys else base)
                assert fee_cell is not None and t_lock is not None and t_recv is not None
                # p x (q x quantum) rather than (p x q) x quantum: mypyc multiplies without leaving its fast
                # path only while both factors are below 2**30, and p x q soon is not
                if taker_buys:
                    s_lock, b_recv, b_lock, s_recv = m_lock, t_recv, t_lock, m_recv
                    b_units = taker.lock_units
                    bfee = p * (q * taker_fee_tl)
                    sfee = p * (q * maker_fee_tl)
                else:
                    s_lock, b_recv, b_lock, s_recv = t_lock, m_recv, m_lock, t_recv
                    b_units = maker.lock_units
                    bfee = p * (q * maker_fee_tl)
                    sfee = p * (q * taker_fee_tl)
                qty = q * base_lot
                consumed = q * b_units
                if (s_lock.bounded and s_lock.locked < qty) or (b_lock.bounded and b_lock.locked < consumed):
                    # more than is locked: the ledger refuses the entry (LedgerError, nothing applied)
                    entry = fill.entry(taker)
                    fast.apply(entry)
                    if entries is not None:
                        entries.append(entry)
                else:
                    notional = p * (q * quote_tl)
                    s_lock.locked -= qty
                    b_recv.free += qty
                    b_lock.locked -= consumed
                    s_recv.free += notional - sfee
                    b_lock.free += consumed - notional - bfee
                    fee_cell.free += bfee + sfee
                    if entries is not None:  # the ledger keeps its journal
                        entry = fill.entry(taker)
                        fast.journal.append(entry)
                        entries.append(entry)
            else:
                entry = fill.entry(taker)
                self.ledger.apply(entry)
                assert entries is not None
                entries.append(entry)
            t_filled += q
            t_cum += pq
            fill.filled = maker.filled = maker.filled + q
            fill.cum = maker.cum = maker.cum + pq
            if maker_ro.remaining == 0:
                fill.status = maker.status = OrderStatus.FILLED
                del open_orders[maker.account][maker.req.order_id]
            else:
                maker.status = OrderStatus.PARTIALLY_FILLED
            done.append(fill)
        taker.filled = t_filled
        taker.cum = t_cum
        return done

    def _release(self, o: _Order, remaining_lots: int, entries: list[JournalEntry] | None) -> int:
        """Unlock the remainder's reservation; returns the lots released (0: nothing to release)."""
        if not remaining_lots or not o.unit_lock:
            return 0
        fast = self._fast
        if fast is None:
            entry = _LotsEntry(
                "RELEASE", o.req.order_id, o.account, o.lock_asset, o.unit_lock, remaining_lots
            )
            self.ledger.apply(entry)
            assert entries is not None
            entries.append(entry)
            return remaining_lots
        cell = o.lock_cell
        if cell is None:
            cell = o.lock_cell = fast.cell(o.account, o.lock_asset)
        amount = o.lock_units * remaining_lots
        if cell.bounded and cell.locked < amount:
            entry = _LotsEntry(
                "RELEASE", o.req.order_id, o.account, o.lock_asset, o.unit_lock, remaining_lots
            )
            fast.apply(entry)  # raises LedgerError (nothing applied), as the reference store does
            if entries is not None:
                entries.append(entry)
            return remaining_lots
        cell.locked -= amount
        cell.free += amount
        if entries is not None:  # the ledger keeps its journal
            entry = _LotsEntry(
                "RELEASE", o.req.order_id, o.account, o.lock_asset, o.unit_lock, remaining_lots
            )
            fast.journal.append(entry)
            entries.append(entry)
        return remaining_lots

    def _shortfall(
        self, request: OrderRequest, mkt: _Market, asset: str, needed: Decimal, free: Decimal
    ) -> ExecutionReport:
        return self._reject(request, mkt, InsufficientBalance(request.account, asset, needed, free).detail)

    def _reject(self, request: OrderRequest, mkt: _Market | None, reason: str) -> ExecutionReport:
        upd = OrderUpdate(
            request.order_id,
            request.account,
            mkt.rules.symbol if mkt else str(request.symbol),
            request.side,
            request.type,
            request.time_in_force,
            OrderStatus.REJECTED,
            request.price,
            request.quantity,
            _ZERO,
            _ZERO,
            None,
            _ZERO,
            reason,
            request.stop_price,
        )
        return ExecutionReport(upd, (), (), ())

    def _finish_unplaced(self, o: _Order, status: OrderStatus, reason: str) -> ExecutionReport:
        o.status = status
        o.reason = reason
        self._orders[o.req.order_id] = o
        return _LazyReport(o, None, [], 0, 0)

    # -- stop orders -----------------------------------------------------------------------------------

    def _stop_terms(self, request: OrderRequest, mkt: _Market) -> tuple[int, int, Reservation]:
        """Validate a stop order (``RuleViolation``) and return (trigger ticks, lots, the reservation it needs):
        a ``*_LIMIT`` stop locks as its limit order would, a stop market SELL its quantity, a stop market BUY
        against the protection band above its stop price (the price it is meant to run at)."""
        rules = mkt.rules
        stop = request.stop_price
        if stop is None:
            raise RuleViolation("PRICE_FILTER", "stop_price", "a stop order needs a stop_price")
        stop_ticks = rules.price_to_ticks(stop)
        is_buy = request.side == Side.BUY
        if request.type in LIMIT_STOPS:
            price = request.price
            if price is None:
                raise RuleViolation("PRICE_FILTER", "price", f"a {request.type} order needs a price")
            _limit, lots = mkt.limit_order(price, request.quantity)
            need = required_reservation(rules, self.fees, is_buy, request.quantity, price)
        else:
            lots = rules.market_order(request.quantity, stop)
            need = required_reservation(rules, self.fees, is_buy, request.quantity, None, stop)
        return stop_ticks, lots, need

    def _place_stop(
        self, request: OrderRequest, reservation: Reservation | None, mkt: _Market
    ) -> ExecutionReport:
        """Accept a stop order: validated, its funds reserved now, kept off the book until the last trade
        price reaches its stop price. One that would trigger at once is REJECTED, as Binance does (-2010)."""
        oid = request.order_id
        try:
            stop_ticks, lots, need = self._stop_terms(request, mkt)
        except RuleViolation as exc:
            return self._reject(request, mkt, exc.detail)
        rising = triggers_rising(request.type, request.side)
        last = mkt.last_ticks
        if last and (last >= stop_ticks if rising else last <= stop_ticks):
            return self._reject(request, mkt, TRIGGER_IMMEDIATELY)
        account = request.account
        asset = need.asset
        entries: list[JournalEntry] = []
        self_reserve = reservation is None
        if reservation is None:
            free = self.ledger.free(account, asset)
            if free < need.amount:
                return self._shortfall(request, mkt, asset, need.amount, free)
        elif reservation.asset != asset or reservation.amount != need.amount:
            raise InvalidInput(
                f"order {oid}: upstream reservation {reservation.amount} {reservation.asset} "
                f"does not match the required {need.amount} {asset}"
            )
        else:
            need = reservation
        is_buy = request.side == Side.BUY
        if is_buy:
            unit_lock = EXACT.divide(need.amount, Decimal(lots))
            lock_units = self._lock_units(asset, unit_lock)
        else:
            unit_lock = mkt.rules.step_size
            lock_units = mkt.base_lot
        if self_reserve:
            entry = _LotsEntry("RESERVE", oid, account, asset, unit_lock, lots)
            self.ledger.apply(entry)
            entries.append(entry)
        o = _Order(request, mkt, is_buy, lots, unit_lock, asset, lock_units)
        self._orders[oid] = o
        self._open.setdefault(account, {})[oid] = o
        self._push_stop(mkt, o, need, stop_ticks, rising)
        return ExecutionReport(o.snapshot(), (), (), tuple(entries))

    def _push_stop(
        self, mkt: _Market, o: _Order, reservation: Reservation, stop_ticks: int, rising: bool
    ) -> None:
        oid = o.req.order_id
        self._stop_seq += 1
        mkt.stops[oid] = (o, reservation)
        if rising:
            heapq.heappush(mkt.stops_up, (stop_ticks, self._stop_seq, oid))
        else:
            heapq.heappush(mkt.stops_down, (-stop_ticks, self._stop_seq, oid))

    def _fire_stops(self, mkt: _Market) -> None:
        """Trigger every waiting stop a trade price has reached since the last check (every fill of a sweep
        counts, as each is the last price for a moment), one at a time and in a fixed order (the nearest
        trigger price first; between the two directions, and at equal prices, the earlier placed first),
        re-reading the prices after each: a triggered order's own trades may reach further stops."""
        self._triggering = True
        try:
            stops = mkt.stops
            up = mkt.stops_up
            down = mkt.stops_down
            while stops:
                while up and up[0][2] not in stops:
                    heapq.heappop(up)
                while down and down[0][2] not in stops:
                    heapq.heappop(down)
                hi = mkt.swing_hi
                lo = mkt.swing_lo
                up_due = bool(up) and up[0][0] <= hi
                down_due = bool(down) and -down[0][0] >= lo
                if up_due and (not down_due or up[0][1] < down[0][1]):
                    oid = heapq.heappop(up)[2]
                elif down_due:
                    oid = heapq.heappop(down)[2]
                else:
                    break
                o, reservation = stops.pop(oid)
                self._activate(mkt, o, reservation)
        finally:
            self._triggering = False
            mkt.swing_lo = mkt.swing_hi = 0

    def _activate(self, mkt: _Market, stop: _Order, reservation: Reservation) -> None:
        """A stop's trigger fired: it runs now as the LIMIT or MARKET order it stands for (same id, same
        reservation). A stop market order that cannot run ends EXPIRED with its whole lock released: no
        liquidity, or (a BUY) the best ask above the price its reservation covers (``STOP_UNFUNDED``, as
        Binance expires a triggered order the account cannot fund)."""
        req = stop.req
        oid = req.order_id
        del self._orders[oid]
        del self._open[stop.account][oid]
        is_limit = req.type in LIMIT_STOPS
        reason: str | None = None
        if not is_limit:
            best = mkt.book.best_ask() if stop.is_buy else mkt.book.best_bid()
            if best is None:
                reason = "NO_LIQUIDITY"
            elif (
                stop.is_buy
                and reservation.price_cap is not None
                and best > int(reservation.price_cap // mkt.rules.tick_size)
            ):
                reason = STOP_UNFUNDED
        report: ExecutionReport | None = None
        if reason is None:
            report = self._run(req, reservation, mkt, is_limit, True)
            status = report.order.status
            if status == OrderStatus.REJECTED:  # the exchange never took the lock over: release it here
                reason = report.order.reason or "REJECTED"
                report = None
        if report is None:
            assert reason is not None
            stop.triggered = True
            stop.status = (
                OrderStatus.REJECTED if reason not in (STOP_UNFUNDED, "NO_LIQUIDITY") else OrderStatus.EXPIRED
            )
            stop.reason = reason
            self._orders[oid] = stop
            fast = self._fast
            entries: list[JournalEntry] | None = None if fast is not None and not fast.keep_journal else []
            released = self._release(stop, stop.lots, entries)
            report = _LazyReport(stop, None, entries, 0, released)
        self._triggered.append(report)

    def take_triggered(self) -> list[ExecutionReport]:
        """The reports of the stop orders triggered since the last call, in the order they ran (each is the
        order's own progression under its id; its trades and maker updates included)."""
        out = self._triggered
        if out:
            self._triggered = []
        return out

    def restore_stop(self, request: OrderRequest, reservation: Reservation) -> OrderUpdate:
        """Re-insert a stop order still waiting for its trigger after a restart (its lock is held already)."""
        mkt = self._market(request.symbol)
        if request.type not in STOP_TYPES:
            raise InvalidInput("only stop orders wait for a trigger")
        fast = self._fast
        if fast is not None and fast.epoch != self._epoch:
            self._resync()
        stop_ticks, lots, _need = self._stop_terms(request, mkt)
        is_buy = request.side == Side.BUY
        if is_buy:
            unit_lock = EXACT.divide(reservation.amount, Decimal(lots))
            lock_units = self._lock_units(reservation.asset, unit_lock)
        else:
            unit_lock = mkt.rules.step_size
            lock_units = mkt.base_lot
        o = _Order(request, mkt, is_buy, lots, unit_lock, reservation.asset, lock_units)
        self._orders[request.order_id] = o
        self._open.setdefault(o.account, {})[request.order_id] = o
        self._push_stop(mkt, o, reservation, stop_ticks, triggers_rising(request.type, request.side))
        return o.snapshot()

    def set_last_price(self, symbol: str, price: Decimal) -> None:
        """The last trade price as it was before a restart (stops compare against it; nothing triggers)."""
        mkt = self._market(symbol)
        mkt.last_ticks = int(price // mkt.rules.tick_size)

    def last_price(self, symbol: str) -> Decimal | None:
        mkt = self._market(symbol)
        return mkt.rules.ticks_to_price(mkt.last_ticks) if mkt.last_ticks else None

    def pending_stops(self, symbol: str) -> list[OrderUpdate]:
        """Stop orders waiting for their trigger, in the order they would trigger in each direction."""
        mkt = self._market(symbol)
        ids = [oid for _t, _n, oid in sorted(mkt.stops_up)] + [oid for _t, _n, oid in sorted(mkt.stops_down)]
        return [mkt.stops[oid][0].snapshot() for oid in ids if oid in mkt.stops]

    # -- cancel-replace --------------------------------------------------------------------------------

    def replace(
        self,
        order_id: str,
        request: OrderRequest,
        reservation: Reservation | None = None,
        account: str | None = None,
    ) -> tuple[ExecutionReport | None, ExecutionReport]:
        """Cancel ``order_id`` and place ``request`` as one step: either both happen (the cancel's report,
        then the new order's) or neither (None, the new order REJECTED with the reason; the old order is
        untouched). The new order is checked first, against the rules, the trigger and (reserving itself)
        the funds the old order's lock frees. Unknown order -> ``NotFound``; already final -> ``Conflict``."""
        o = self._orders.get(order_id)
        if o is None or (account is not None and o.account != account):
            raise NotFound(f"order {order_id} not found")
        if o.status in FINAL_STATUSES:
            raise Conflict(f"order {order_id} is already {o.status}")
        if request.order_id in self._orders:
            raise Conflict(f"order {request.order_id} already exists")
        mkt = o.mkt
        fast = self._fast
        if fast is not None and fast.epoch != self._epoch:
            self._resync()
        if request.account != o.account or self._market(request.symbol) is not mkt:
            return None, self._reject(request, mkt, "a replacement keeps the account and symbol")
        rules = mkt.rules
        is_buy = request.side == Side.BUY
        try:
            if request.type in STOP_TYPES:
                stop_ticks, _lots, need = self._stop_terms(request, mkt)
                last = mkt.last_ticks
                rising = triggers_rising(request.type, request.side)
                if last and (last >= stop_ticks if rising else last <= stop_ticks):
                    return None, self._reject(request, mkt, TRIGGER_IMMEDIATELY)
            elif request.type == OrderType.LIMIT:
                if request.price is None:
                    raise RuleViolation("PRICE_FILTER", "price", "a LIMIT order needs a price")
                mkt.limit_order(request.price, request.quantity)
                need = required_reservation(rules, self.fees, is_buy, request.quantity, request.price)
            else:
                best = mkt.book.best_ask() if is_buy else mkt.book.best_bid()
                ref = rules.ticks_to_price(best) if best is not None else None
                rules.market_order(request.quantity, ref)
                need = (
                    required_reservation(rules, self.fees, is_buy, request.quantity, None, ref)
                    if ref is not None
                    else Reservation(rules.base_asset, _ZERO, None)
                )
        except RuleViolation as exc:
            return None, self._reject(request, mkt, exc.detail)
        if reservation is None:
            freed = self.locked_for(order_id) if o.lock_asset == need.asset else _ZERO
            free = self.ledger.free(request.account, need.asset)
            if free + freed < need.amount:
                return None, self._shortfall(request, mkt, need.asset, need.amount, free + freed)
        canceled = self.cancel(order_id, account)
        return canceled, self.place(request, reservation)

    def cancel(self, order_id: str, account: str | None = None) -> ExecutionReport:
        o = self._orders.get(order_id)
        if o is None or (account is not None and o.account != account):
            raise NotFound(f"order {order_id} not found")
        if o.status in FINAL_STATUSES:
            raise Conflict(f"order {order_id} is already {o.status}")
        fast = self._fast
        if fast is not None and fast.epoch != self._epoch:
            self._resync()
        stops = o.mkt.stops
        if order_id in stops and not o.triggered:
            del stops[order_id]  # waiting for its trigger, not on the book: all of it is still locked
            remaining = o.lots
        else:
            remaining = o.mkt.book.cancel(order_id)
        del self._open[o.account][order_id]
        o.status = OrderStatus.CANCELED
        entries: list[JournalEntry] | None = None if fast is not None and not fast.keep_journal else []
        released = self._release(o, remaining, entries)
        return _LazyReport(o, None, entries, 0, released)

    def restore_resting(
        self,
        request: OrderRequest,
        remaining_quantity: Decimal,
        reservation: Reservation,
        cumulative_quote: Decimal = _ZERO,
    ) -> OrderUpdate:
        """Re-insert an open LIMIT order after a restart (call in original priority order). Its lock is
        assumed to be held already: ``reservation`` is the original one, of which the remainder is locked."""
        mkt = self._market(request.symbol)
        rules = mkt.rules
        if (request.type != OrderType.LIMIT and request.type not in LIMIT_STOPS) or request.price is None:
            raise InvalidInput("only LIMIT orders (and triggered *_LIMIT stops) rest on the book")
        fast = self._fast
        if fast is not None and fast.epoch != self._epoch:
            self._resync()
        limit, lots = rules.price_to_ticks(request.price), rules.qty_to_lots(request.quantity)
        rem = int(remaining_quantity / rules.step_size)
        is_buy = request.side == Side.BUY
        unit_lock = EXACT.divide(reservation.amount, Decimal(lots))
        lock_units = self._lock_units(reservation.asset, unit_lock)
        o = _Order(request, mkt, is_buy, lots, unit_lock, reservation.asset, lock_units)
        o.filled = lots - rem
        o.cum = int(cumulative_quote / mkt.terms.unit_quote)
        o.status = OrderStatus.PARTIALLY_FILLED if o.filled else OrderStatus.NEW
        o.triggered = request.type in LIMIT_STOPS
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
            o.snapshot()
            for o in self._open.get(account, {}).values()
            if sym is None or o.mkt.rules.symbol == sym
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
