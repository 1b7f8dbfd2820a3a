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
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum
from typing import Final

from shared.amounts import average
from shared.errors import Conflict, InvalidInput, NotFound

from . import book as bk
from .ledger import (
    EXACT,
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
        )


class _Market:
    __slots__ = (
        "base_lot",
        "book",
        "buy_lock",
        "buy_lock_tl",
        "fee_cell",
        "last_report",
        "lots_of",
        "maker_fee_tl",
        "min_units",
        "quote_tl",
        "reserve_mult",
        "rules",
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
        rules = mkt.rules
        book = mkt.book
        is_buy = request.side == Side.BUY
        tif = _TIF_CODE.get(request.time_in_force, -1)
        if tif < 0:
            tif = _TIF_CODE[TimeInForce(request.time_in_force)]
        is_limit = request.type == OrderType.LIMIT
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
        )
        return ExecutionReport(upd, (), (), ())

    def _finish_unplaced(self, o: _Order, status: OrderStatus, reason: str) -> ExecutionReport:
        o.status = status
        o.reason = reason
        self._orders[o.req.order_id] = o
        return _LazyReport(o, None, [], 0, 0)

    def cancel(self, order_id: str, account: str | None = None) -> ExecutionReport:
        o = self._orders.get(order_id)
        if o is None or (account is not None and o.account != account):
            raise NotFound(f"order {order_id} not found")
        if o.status in FINAL_STATUSES:
            raise Conflict(f"order {order_id} is already {o.status}")
        fast = self._fast
        if fast is not None and fast.epoch != self._epoch:
            self._resync()
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
        if request.type != OrderType.LIMIT or request.price is None:
            raise InvalidInput("only LIMIT orders rest on the book")
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
