"""Double-entry ledger of the paper exchange: balances, reservations, settlement, fees.

Every movement of money is an immutable ``JournalEntry`` of ``Posting``s. A posting changes one bucket
(``free`` or ``locked``) of one (account, asset) by a signed ``Decimal``; within an entry the postings of
every asset sum to zero, so across all accounts the total of an asset never changes. Deposits are entries
whose counter-posting hits ``EXTERNAL_ACCOUNT`` (the only account allowed to go negative), hence the total
over users, the market maker and the fee account changes only by deposits.

Entry kinds (all produced by the pure builders below, so an adapter can persist or apply them elsewhere,
e.g. in the gateway's database transaction):
- DEPOSIT: external -> account free.
- RESERVE: account free -> locked, at order acceptance (``required_reservation`` computes the amount).
- SETTLE: one fill. Base moves seller.locked -> buyer.free; quote moves buyer.locked -> seller.free;
  fees go to ``FEE_ACCOUNT``; the buyer's unused part of the consumed lock (price improvement, lower maker
  fee) goes back to the buyer's free balance.
- RELEASE: locked -> free for exactly the unfilled remainder of a canceled/expired order.

Fees (``FeeSchedule``, defaults maker 10 bps, taker 10 bps) are charged in the QUOTE asset on both sides:
the buyer pays notional + fee, the seller receives notional - fee. Fees are exact (no rounding: the rates
are decimal fractions, so every amount is a finite Decimal). Because the buyer pays fees in quote, a BUY
reserves ``quantity x price x (1 + max(maker, taker) rate)`` and a SELL reserves ``quantity`` of the base.
A MARKET buy reserves against its price cap: the protection-band worst price from a reference price.

Reservations are linear in quantity, so an order's lock per lot is constant; a fill consumes exactly
``lots x lock_per_lot`` and a cancel/expiry releases exactly ``remaining_lots x lock_per_lot``.

Integer balances. Entries carry ``Decimal`` amounts (that is what adapters persist), but the in-memory
``Ledger`` keeps every balance as an ``int`` count of the asset's *unit*, ``10**-scale``, one scale per
asset. Why a per-asset scale and not one fixed 10**-18 unit for everything: the exchange's amounts are
multiples of a few per-market quanta (``step`` for the base; ``tick x step``, ``tick x step x fee rate`` and
``tick x step x (1 + max fee rate)`` for the quote, e.g. 10**-5 BTC and 10**-10 USDT for the default BTCUSDT
at 10 bps), so in those units every amount is an exact integer and ordinary balances stay below 2**63
(mypyc's fast ints), where in 10**-18 units anything above 9.2 of an asset would be a big int. A scale
starts at what the amounts seen need (``PaperExchange`` declares its markets' quanta up front) and only
grows, rescaling that asset's balances exactly (x 10**k), when an entry brings a finer amount; it never
exceeds 18, the database's NUMERIC(38,18): a finer amount (or a non-finite one, or one beyond 10**60)
cannot be held exactly and ``apply`` refuses it with ``LedgerError``, nothing applied, never rounding.
Reads convert back to the shortest ``Decimal`` of the value (``Decimal('2899.8')``, ``Decimal('30')``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Final, Protocol

from shared.errors import InvalidInput
from shared.ledger import EXACT, EXTERNAL_ACCOUNT
from shared.trading_errors import InsufficientBalance, LedgerError

from .rules import MarketRules

__all__ = [
    "FEE_ACCOUNT",
    "FREE",
    "LOCKED",
    "Balance",
    "Cell",
    "FeeSchedule",
    "InsufficientBalance",
    "JournalEntry",
    "JournalRecorder",
    "Ledger",
    "LedgerError",
    "LedgerStore",
    "Posting",
    "Reservation",
    "deposit_entry",
    "release_entry",
    "required_reservation",
    "reserve_entry",
    "settle_entry",
]

FEE_ACCOUNT: Final = "system/fees"
FREE: Final = "free"
LOCKED: Final = "locked"

MAX_SCALE: Final = 18
"""Finest unit the ``Ledger`` holds, 10**-18: the database's NUMERIC(38,18) stores nothing finer."""

_POW10: Final[tuple[int, ...]] = tuple(10**i for i in range(MAX_SCALE + 1))
_MAX_ADJUSTED: Final = (
    60  # amounts of 10**61 and more are refused (EXACT's precision; NUMERIC holds < 10**20)
)
_ZERO: Final = Decimal(0)


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    asset: str
    bucket: str  # FREE or LOCKED
    amount: Decimal  # signed


class JournalEntry:
    """One balanced movement of money. Immutable: ``kind``, ``ref`` and ``postings`` are read-only.

    The exchange's hot path creates entries from the few numbers that define them (the private subclasses
    below) and the ``Posting`` tuple is built on first read (``_build``): most entries of a busy book are
    applied to the in-memory ledger and never looked at, and building six frozen postings per fill
    dominated the cost of a fill. Equality, hashing and ``repr`` are those of the materialised (kind, ref,
    postings), as a dataclass's.
    """

    __slots__ = ("_kind", "_postings", "_ref")

    def __init__(self, kind: str, ref: str, postings: Iterable[Posting]) -> None:
        self._kind = kind
        self._ref = ref
        self._postings: tuple[Posting, ...] | None = tuple(postings)

    @property
    def kind(self) -> str:
        """DEPOSIT | RESERVE | SETTLE | RELEASE."""
        return self._kind

    @property
    def ref(self) -> str:
        """Order id (RESERVE/RELEASE), trade id (SETTLE), caller's reference (DEPOSIT)."""
        return self._ref

    @property
    def postings(self) -> tuple[Posting, ...]:
        p = self._postings
        if p is None:
            p = self._postings = self._build()
        return p

    def _build(self) -> tuple[Posting, ...]:
        """The postings of a lazily made entry (subclasses); an eager entry has them from the start."""
        raise AssertionError("an eagerly made JournalEntry always has its postings")

    def is_balanced(self) -> bool:
        sums: dict[str, Decimal] = {}
        for p in self.postings:
            sums[p.asset] = sums.get(p.asset, _ZERO) + p.amount
        return all(v == 0 for v in sums.values())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JournalEntry):
            return NotImplemented
        return self._kind == other._kind and self._ref == other._ref and self.postings == other.postings

    def __hash__(self) -> int:
        return hash((self._kind, self._ref, self.postings))

    def __repr__(self) -> str:
        return f"JournalEntry(kind={self._kind!r}, ref={self._ref!r}, postings={self.postings!r})"


class _LazyEntry(JournalEntry):
    """An entry of the pure builders below, its postings made from ``args`` when first read."""

    __slots__ = ("_args",)

    def __init__(self, kind: str, ref: str, args: tuple[object, ...]) -> None:
        self._kind = kind
        self._ref = ref
        self._postings = None
        self._args = args

    def _build(self) -> tuple[Posting, ...]:
        kind = self._kind
        args = self._args
        if kind == "SETTLE":
            (
                base,
                quote,
                buyer,
                seller,
                quantity,
                notional,
                buyer_fee,
                seller_fee,
                consumed,
                refund,
                fee_acc,
            ) = args
            assert isinstance(base, str) and isinstance(quote, str) and isinstance(buyer, str)
            assert isinstance(seller, str) and isinstance(fee_acc, str)
            assert (
                isinstance(quantity, Decimal)
                and isinstance(notional, Decimal)
                and isinstance(consumed, Decimal)
            )
            assert (
                isinstance(buyer_fee, Decimal)
                and isinstance(seller_fee, Decimal)
                and isinstance(refund, Decimal)
            )
            return _settle_postings(
                base,
                quote,
                buyer,
                seller,
                quantity,
                notional,
                buyer_fee,
                seller_fee,
                consumed,
                refund,
                fee_acc,
            )
        account, asset, amount = args
        assert isinstance(account, str) and isinstance(asset, str) and isinstance(amount, Decimal)
        return _move_postings(kind, account, asset, amount)


class _LotsEntry(JournalEntry):
    """The exchange's RESERVE/RELEASE of ``lots`` x ``unit`` (an order's lock per lot): the amount is
    ``EXACT.multiply(unit, Decimal(lots))``, computed only if the postings are read."""

    __slots__ = ("_account", "_asset", "_lots", "_unit")

    def __init__(self, kind: str, ref: str, account: str, asset: str, unit: Decimal, lots: int) -> None:
        self._kind = kind
        self._ref = ref
        self._postings = None
        self._account = account
        self._asset = asset
        self._unit = unit
        self._lots = lots

    def _build(self) -> tuple[Posting, ...]:
        amount = EXACT.multiply(self._unit, Decimal(self._lots))
        return _move_postings(self._kind, self._account, self._asset, amount)


class SettleTerms:
    """What every fill of one market shares: assets, grid and fee rates (for ``_SettleEntry``)."""

    __slots__ = ("base", "fee_account", "maker_rate", "quote", "step", "taker_rate", "tick", "unit_quote")

    def __init__(
        self,
        base: str,
        quote: str,
        tick: Decimal,
        step: Decimal,
        maker_rate: Decimal,
        taker_rate: Decimal,
        fee_account: str,
    ) -> None:
        self.base = base
        self.quote = quote
        self.tick = tick
        self.step = step
        self.unit_quote = EXACT.multiply(tick, step)  # quote value of 1 tick x 1 lot
        self.maker_rate = maker_rate
        self.taker_rate = taker_rate
        self.fee_account = fee_account


class _SettleEntry(JournalEntry):
    """The exchange's SETTLE of one fill, from integers (``lots`` at ``ticks``). Its Decimals are those
    ``settle_entry`` is given by the exchange, computed on first read: quantity = step x lots, notional =
    unit_quote x (ticks x lots), fee = notional x rate, consumed = the buyer's lock per lot x lots."""

    __slots__ = ("_amounts", "_buyer", "_lots", "_seller", "_taker_buys", "_terms", "_ticks", "_unit_lock")

    def __init__(
        self,
        ref: str,
        terms: SettleTerms,
        buyer: str,
        seller: str,
        taker_buys: bool,
        buyer_unit_lock: Decimal,
        ticks: int,
        lots: int,
    ) -> None:
        self._kind = "SETTLE"
        self._ref = ref
        self._postings = None
        self._terms = terms
        self._buyer = buyer
        self._seller = seller
        self._taker_buys = taker_buys
        self._unit_lock = buyer_unit_lock
        self._ticks = ticks
        self._lots = lots
        self._amounts: tuple[Decimal, Decimal, Decimal, Decimal, Decimal] | None = None

    def amounts(self) -> tuple[Decimal, Decimal, Decimal, Decimal, Decimal]:
        """(quantity, notional, maker fee, taker fee, buyer's lock consumed), made once (trades share them)."""
        a = self._amounts
        if a is None:
            t = self._terms
            lots = Decimal(self._lots)
            notional = EXACT.multiply(t.unit_quote, Decimal(self._ticks * self._lots))
            a = self._amounts = (
                EXACT.multiply(t.step, lots),
                notional,
                EXACT.multiply(notional, t.maker_rate),
                EXACT.multiply(notional, t.taker_rate),
                EXACT.multiply(self._unit_lock, lots),
            )
        return a

    def price(self) -> Decimal:
        return EXACT.multiply(self._terms.tick, Decimal(self._ticks))

    def _build(self) -> tuple[Posting, ...]:
        t = self._terms
        quantity, notional, mfee, tfee, consumed = self.amounts()
        bfee, sfee = (tfee, mfee) if self._taker_buys else (mfee, tfee)
        refund = consumed - notional - bfee
        return _settle_postings(
            t.base,
            t.quote,
            self._buyer,
            self._seller,
            quantity,
            notional,
            bfee,
            sfee,
            consumed,
            refund,
            t.fee_account,
        )


def _settle_postings(
    base: str,
    quote: str,
    buyer: str,
    seller: str,
    quantity: Decimal,
    notional: Decimal,
    buyer_fee: Decimal,
    seller_fee: Decimal,
    consumed: Decimal,
    refund: Decimal,
    fee_account: str,
) -> tuple[Posting, ...]:
    postings = [
        Posting(seller, base, LOCKED, -quantity),
        Posting(buyer, base, FREE, quantity),
        Posting(buyer, quote, LOCKED, -consumed),
        Posting(seller, quote, FREE, notional - seller_fee),
    ]
    if refund:
        postings.append(Posting(buyer, quote, FREE, refund))
    fee = buyer_fee + seller_fee
    if fee:
        postings.append(Posting(fee_account, quote, FREE, fee))
    return tuple(postings)


def _move_postings(kind: str, account: str, asset: str, amount: Decimal) -> tuple[Posting, ...]:
    if kind == "RESERVE":
        return (Posting(account, asset, FREE, -amount), Posting(account, asset, LOCKED, amount))
    if kind == "RELEASE":
        return (Posting(account, asset, LOCKED, -amount), Posting(account, asset, FREE, amount))
    raise ValueError(f"no lazy postings for {kind}")


@dataclass(frozen=True, slots=True)
class Balance:
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """Fee rates in basis points, charged in the quote asset (see module docstring)."""

    maker_bps: Decimal = Decimal(10)
    taker_bps: Decimal = Decimal(10)

    def __post_init__(self) -> None:
        for v in (self.maker_bps, self.taker_bps):
            if not isinstance(v, Decimal) or not (0 <= v < 10000):
                raise ValueError("fee bps must be Decimals in [0, 10000)")

    @property
    def maker_rate(self) -> Decimal:
        return EXACT.divide(self.maker_bps, Decimal(10000))

    @property
    def taker_rate(self) -> Decimal:
        return EXACT.divide(self.taker_bps, Decimal(10000))

    @property
    def reserve_rate(self) -> Decimal:
        """The highest fee an order can pay, which its reservation must cover."""
        return max(self.maker_rate, self.taker_rate)


@dataclass(frozen=True, slots=True)
class Reservation:
    """What an order locks at acceptance. ``price_cap`` (buys) is the price per unit the lock covers."""

    asset: str
    amount: Decimal
    price_cap: Decimal | None


def required_reservation(
    rules: MarketRules,
    fees: FeeSchedule,
    is_buy: bool,
    quantity: Decimal,
    price: Decimal | None,
    reference_price: Decimal | None = None,
) -> Reservation:
    """The lock an order needs. ``price`` None means a MARKET order; a market BUY then needs the
    ``reference_price`` (best ask, or the last price upstream) and locks against the protection band."""
    if not is_buy:
        return Reservation(rules.base_asset, quantity, None)
    if price is None:
        if reference_price is None or reference_price <= 0:
            raise InvalidInput("a market buy needs a reference price to reserve against")
        ticks = int((reference_price / rules.tick_size).to_integral_value(rounding=ROUND_FLOOR))
        cap = rules.ticks_to_price(rules.band_limit_ticks(max(ticks, 1), True))
    else:
        cap = price
    amount = EXACT.multiply(EXACT.multiply(quantity, cap), EXACT.add(Decimal(1), fees.reserve_rate))
    return Reservation(rules.quote_asset, amount, cap)


# -- entry builders (pure) -----------------------------------------------------------------------------


def deposit_entry(account: str, asset: str, amount: Decimal, ref: str = "") -> JournalEntry:
    if amount <= 0:
        raise InvalidInput("deposit amount must be positive")
    return JournalEntry(
        "DEPOSIT",
        ref,
        (Posting(EXTERNAL_ACCOUNT, asset, FREE, -amount), Posting(account, asset, FREE, amount)),
    )


def reserve_entry(account: str, asset: str, amount: Decimal, ref: str) -> JournalEntry:
    return _LazyEntry("RESERVE", ref, (account, asset, amount))


def release_entry(account: str, asset: str, amount: Decimal, ref: str) -> JournalEntry:
    return _LazyEntry("RELEASE", ref, (account, asset, amount))


def settle_entry(
    ref: str,
    base: str,
    quote: str,
    buyer: str,
    seller: str,
    quantity: Decimal,
    notional: Decimal,
    buyer_fee: Decimal,
    seller_fee: Decimal,
    buyer_lock_consumed: Decimal,
    fee_account: str = FEE_ACCOUNT,
) -> JournalEntry:
    """One fill; ``buyer_lock_consumed`` is the part of the buyer's lock this fill uses up."""
    refund = buyer_lock_consumed - notional - buyer_fee
    return _LazyEntry(
        "SETTLE",
        ref,
        (
            base,
            quote,
            buyer,
            seller,
            quantity,
            notional,
            buyer_fee,
            seller_fee,
            buyer_lock_consumed,
            refund,
            fee_account,
        ),
    )


# -- exact integer units -------------------------------------------------------------------------------


def _units18(amount: Decimal) -> int:
    """``amount`` as an exact count of 10**-18; ``LedgerError`` if it is not a finite multiple of that
    (or is beyond 10**60), never rounded."""
    if isinstance(amount, int):  # Decimal context arithmetic accepted ints, so does the ledger
        return amount * _POW10[MAX_SCALE]
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise LedgerError(f"amount {amount!r} is not a finite Decimal")
    if not amount:
        return 0
    adjusted = amount.adjusted()  # exponent of the leading digit: bounds the work below
    if adjusted > _MAX_ADJUSTED:
        raise LedgerError(f"amount {amount} is out of range")
    if adjusted < -MAX_SCALE:
        raise LedgerError(f"amount {amount} has more than {MAX_SCALE} decimal places")
    num, den = amount.as_integer_ratio()
    per, rem = divmod(_POW10[MAX_SCALE], den)
    if rem:
        raise LedgerError(f"amount {amount} has more than {MAX_SCALE} decimal places")
    return num * per


def _places(units18: int) -> int:
    """Decimal places a value given in 10**-18 units needs (trailing zeros don't count)."""
    for scale in range(MAX_SCALE):
        if units18 % _POW10[MAX_SCALE - scale] == 0:
            return scale
    return MAX_SCALE


def _to_decimal(units: int, scale: int) -> Decimal:
    """``units`` x 10**-scale as the shortest Decimal of that value: 30 not 30.000, 2899.8 not 2899.800."""
    if units % _POW10[scale] == 0:
        return Decimal(units // _POW10[scale])
    while units % 10 == 0:
        units //= 10
        scale -= 1
    return Decimal(f"{units}E-{scale}")


# -- stores --------------------------------------------------------------------------------------------


class LedgerStore(Protocol):
    """The port the exchange writes through: apply an entry atomically, read an available balance."""

    def apply(self, entry: JournalEntry) -> None: ...

    def free(self, account: str, asset: str) -> Decimal: ...


class Cell:
    """One (account, asset) balance in the asset's units: the ledger's interface for an owner that posts in
    units (``PaperExchange``). ``Ledger.cell`` hands it out; it is mutated in place, never replaced, so it may
    be held on to across commands. Whoever posts into it keeps the ledger's rules: every change is part of a
    balanced entry, and a ``bounded`` cell never goes negative (an owner that cannot tell posts the entry
    through ``Ledger.apply`` instead, which refuses it). Unbounded: the external account's cell, and the
    detached cell of an account the ledger does not hold (what is posted there is not kept)."""

    __slots__ = ("bounded", "free", "locked")

    def __init__(self, free: int = 0, locked: int = 0, bounded: bool = True) -> None:
        self.free = free
        self.locked = locked
        self.bounded = bounded


class Ledger:
    """The in-memory store: checks every entry balances and leaves no held balance negative.

    Balances are exact integers (see the module docstring: per-asset units, scale <= 18); the Decimal API is
    ``apply``/``free``/``balance``. ``scope`` limits what it holds to the accounts whose id starts with it
    (all by default): the paper venue's ledger holds the system accounts (market maker, fees), whose orders
    the exchange reserves itself, while user balances live in the database and their orders arrive reserved.
    Postings of other accounts are checked (exact, balanced) and not kept.

    The unit-level interface (``epoch``, ``scale``, ``units``, ``cell``, ``lock``) lets ``PaperExchange`` post
    in the same integer units, with the same checks ``apply`` makes (``Cell``); ``epoch`` changes whenever an
    asset's unit is refined, which rescales every held cell of it, so an owner knows to convert what it holds.
    """

    __slots__ = ("_cells", "_epoch", "_scales", "_scope", "journal", "keep_journal")

    def __init__(self, keep_journal: bool = True, scope: str = "") -> None:
        self._cells: dict[tuple[str, str], Cell] = {}
        self._scales: dict[str, int] = {}  # asset -> decimal places of its unit (0 until finer is needed)
        self._epoch = 0
        self._scope = scope
        self.journal: list[JournalEntry] = []
        self.keep_journal = keep_journal

    def holds(self, account: str) -> bool:
        """Whether this ledger keeps ``account``'s balances (see ``scope``)."""
        return account.startswith(self._scope)

    def apply(self, entry: JournalEntry) -> None:
        cells = self._cells
        scales = self._scales
        scope = self._scope
        postings = entry.postings
        # 1. every amount exactly (or LedgerError), and the scale each asset needs
        exact: list[int] = []
        target: dict[str, int] = {}
        for p in postings:
            if p.bucket != FREE and p.bucket != LOCKED:
                raise LedgerError(f"unknown bucket {p.bucket!r}")
            u18 = _units18(p.amount)
            exact.append(u18)
            need = max(_places(u18), target.get(p.asset, scales.get(p.asset, 0)))
            target[p.asset] = need
        # 2. the new balances of the held accounts (at the target scales), checked before anything changes
        new: dict[tuple[str, str], list[int]] = {}
        sums: dict[str, int] = {}
        for p, u18 in zip(postings, exact, strict=True):
            asset = p.asset
            scale = target[asset]
            amount = u18 // _POW10[MAX_SCALE - scale]
            sums[asset] = sums.get(asset, 0) + amount
            if not p.account.startswith(scope):  # not held: it only has to balance
                continue
            key = (p.account, asset)
            cur = new.get(key)
            if cur is None:
                old = cells.get(key)
                if old is None:
                    cur = new[key] = [0, 0]
                else:
                    grow = _POW10[scale - scales.get(asset, 0)]
                    cur = new[key] = [old.free * grow, old.locked * grow]
            if p.bucket == FREE:
                cur[0] += amount
            else:
                cur[1] += amount
        for (account, asset), (free, locked) in new.items():
            if (free < 0 or locked < 0) and account != EXTERNAL_ACCOUNT:
                scale = target[asset]
                raise LedgerError(
                    f"{entry.kind} {entry.ref}: {account} {asset} would be "
                    f"{_to_decimal(free, scale)}/{_to_decimal(locked, scale)}"
                )
        if any(sums.values()):
            raise LedgerError(f"{entry.kind} {entry.ref} does not balance")
        # 3. commit
        for asset, scale in target.items():
            self._ensure_scale(asset, scale)
        for key, (free, locked) in new.items():
            cell = cells.get(key)
            if cell is None:
                cells[key] = Cell(free, locked, key[0] != EXTERNAL_ACCOUNT)
            else:
                cell.free = free
                cell.locked = locked
        if self.keep_journal:
            self.journal.append(entry)

    def load(self, free: Mapping[tuple[str, str], Decimal]) -> None:
        """Start over from these free balances, nothing locked and no journal (a snapshot, not an entry): the
        paper venue loads its system accounts from the database after a restart. Cells handed out stay valid
        (they are reset in place). ``LedgerError`` (nothing changed) for an account outside ``scope`` or an
        amount the ledger cannot hold exactly."""
        for account, _ in free:
            if not self.holds(account):
                raise LedgerError(f"{account} is not held by this ledger (scope {self._scope!r})")
        for (_, asset), amount in free.items():
            self.units(
                asset, amount
            )  # refine every unit first, so the amounts below are all in the final one
        units = {key: self.units(key[1], amount) for key, amount in free.items()}
        for cell in self._cells.values():
            cell.free = 0
            cell.locked = 0
        for (account, asset), n in units.items():
            self.cell(account, asset).free = n
        self.journal.clear()

    # -- the unit-level interface (``Cell``) ---------------------------------------------------------------

    @property
    def epoch(self) -> int:
        """Changes whenever an asset's unit is refined (every held cell of it rescaled)."""
        return self._epoch

    def scale(self, asset: str) -> int:
        """Decimal places of ``asset``'s unit."""
        return self._scales.get(asset, 0)

    def units(self, asset: str, amount: Decimal) -> int:
        """``amount`` in ``asset``'s units, refining the unit if it must (which changes ``epoch``);
        ``LedgerError`` if it is finer than 10**-18 or not finite."""
        u18 = _units18(amount)
        self._ensure_scale(asset, _places(u18))
        return u18 // _POW10[MAX_SCALE - self._scales.get(asset, 0)]

    def cell(self, account: str, asset: str) -> Cell:
        """The cell of (account, asset), created empty if needed; a detached, unbounded one for an account
        this ledger does not hold."""
        key = (account, asset)
        cell = self._cells.get(key)
        if cell is None:
            if not account.startswith(self._scope):
                return Cell(0, 0, False)
            cell = self._cells[key] = Cell(0, 0, account != EXTERNAL_ACCOUNT)
        return cell

    def lock(self, account: str, asset: str, units: int) -> Cell | None:
        """Reserve ``units`` (in ``asset``'s units): move them from free to locked if the free balance covers
        them, and return the cell; None (nothing changed) if it does not. ``LedgerError`` for an account this
        ledger does not hold: its orders must come reserved."""
        if not account.startswith(self._scope):
            raise LedgerError(
                f"{account} is not held by this ledger: its orders must come with a reservation"
            )
        cell = self._cells.get((account, asset))
        if cell is None or cell.free < units:
            return None
        cell.free -= units
        cell.locked += units
        return cell

    def _ensure_scale(self, asset: str, places: int) -> None:
        """Make ``asset``'s unit at least as fine as 10**-places, rescaling its balances exactly."""
        if places > MAX_SCALE:
            raise LedgerError(f"{asset} amounts with {places} decimal places cannot be held exactly")
        scale = self._scales.get(asset, 0)
        if places <= scale:
            return
        self._scales[asset] = places
        grow = _POW10[places - scale]
        for (_, a), cell in self._cells.items():
            if a == asset:
                cell.free *= grow
                cell.locked *= grow
        self._epoch += 1

    def _decimal(self, asset: str, units: int) -> Decimal:
        return _to_decimal(units, self._scales.get(asset, 0))

    # -- reads -----------------------------------------------------------------------------------------------

    def apply_all(self, entries: Iterable[JournalEntry]) -> None:
        for e in entries:
            self.apply(e)

    def free(self, account: str, asset: str) -> Decimal:
        """The available balance; ``LedgerError`` for an account this ledger does not hold."""
        c = self._cells.get((account, asset))
        if c is not None:
            return self._decimal(asset, c.free)
        if not account.startswith(self._scope):
            raise LedgerError(f"{account} is not held by this ledger (scope {self._scope!r})")
        return _ZERO

    def balance(self, account: str, asset: str) -> Balance:
        c = self._cells.get((account, asset))
        if c is None:
            return Balance(_ZERO, _ZERO)
        return Balance(self._decimal(asset, c.free), self._decimal(asset, c.locked))

    def balances(self, account: str) -> dict[str, Balance]:
        return {
            a: Balance(self._decimal(a, c.free), self._decimal(a, c.locked))
            for (acc, a), c in self._cells.items()
            if acc == account
        }

    def accounts(self) -> set[str]:
        return {acc for acc, _ in self._cells}

    def assets(self) -> set[str]:
        return {a for _, a in self._cells}

    def total(self, asset: str) -> Decimal:
        """Sum of free + locked over every held account but the external one (= their net deposits)."""
        units = sum(
            (
                c.free + c.locked
                for (acc, a), c in self._cells.items()
                if a == asset and acc != EXTERNAL_ACCOUNT
            ),
            0,
        )
        return self._decimal(asset, units)


class JournalRecorder:
    """A ``LedgerStore`` for an adapter that owns balances elsewhere (a database): it records entries and
    enforces nothing; ``free`` comes from a callback so the exchange can still check affordability."""

    __slots__ = ("_free", "entries")

    def __init__(self, free: dict[tuple[str, str], Decimal] | None = None) -> None:
        self.entries: list[JournalEntry] = []
        self._free = free if free is not None else {}

    def apply(self, entry: JournalEntry) -> None:
        self.entries.append(entry)

    def free(self, account: str, asset: str) -> Decimal:
        return self._free.get((account, asset), _ZERO)
