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
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import (
    ROUND_FLOOR,
    Context,
    Decimal,
    DivisionByZero,
    Inexact,
    InvalidOperation,
    Overflow,
)
from typing import Final, Protocol

from shared.errors import InvalidInput

from .errors import InsufficientBalance, LedgerError
from .rules import MarketRules

__all__ = [
    "EXACT",
    "EXTERNAL_ACCOUNT",
    "FEE_ACCOUNT",
    "FREE",
    "LOCKED",
    "Balance",
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

EXTERNAL_ACCOUNT: Final = "external/deposits"
FEE_ACCOUNT: Final = "system/fees"
FREE: Final = "free"
LOCKED: Final = "locked"

EXACT: Final = Context(prec=60, traps=[InvalidOperation, Inexact, Overflow, DivisionByZero])
"""Arithmetic context for money: an inexact result raises instead of rounding silently."""

_ZERO: Final = Decimal(0)


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    asset: str
    bucket: str  # FREE or LOCKED
    amount: Decimal  # signed


class JournalEntry:
    """One balanced movement of money. Immutable: ``kind``, ``ref`` and ``postings`` are read-only.

    The exchange's hot path creates entries from the few numbers that define them (``_LazyEntry``) and the
    ``Posting`` tuple is built on first read: most entries of a busy book are applied to the in-memory
    ledger and never looked at, and building six frozen postings per fill dominated the cost of a fill.
    Equality, hashing and ``repr`` are those of the materialised (kind, ref, postings), as a dataclass's.
    """

    __slots__ = ("_args", "_kind", "_postings", "_ref")

    def __init__(self, kind: str, ref: str, postings: Iterable[Posting]) -> None:
        self._kind = kind
        self._ref = ref
        self._postings: tuple[Posting, ...] | None = tuple(postings)
        self._args: tuple[object, ...] | None = None

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
            args = self._args
            assert args is not None
            p = self._postings = _build_postings(self._kind, args)
            self._args = None
        return p

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
    """A ``JournalEntry`` whose postings ``_build_postings(kind, args)`` makes when first read."""

    __slots__ = ()

    def __init__(self, kind: str, ref: str, args: tuple[object, ...]) -> None:
        self._kind = kind
        self._ref = ref
        self._postings = None
        self._args = args


def _build_postings(kind: str, args: tuple[object, ...]) -> tuple[Posting, ...]:
    if kind == "SETTLE":
        base, quote, buyer, seller, quantity, notional, buyer_fee, seller_fee, consumed, refund, fee_account = args
        assert isinstance(base, str) and isinstance(quote, str) and isinstance(buyer, str)
        assert isinstance(seller, str) and isinstance(fee_account, str)
        assert isinstance(quantity, Decimal) and isinstance(notional, Decimal) and isinstance(consumed, Decimal)
        assert isinstance(buyer_fee, Decimal) and isinstance(seller_fee, Decimal) and isinstance(refund, Decimal)
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
    account, asset, amount = args
    assert isinstance(account, str) and isinstance(asset, str) and isinstance(amount, Decimal)
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
        (base, quote, buyer, seller, quantity, notional, buyer_fee, seller_fee, buyer_lock_consumed, refund,
         fee_account),
    )


# -- stores --------------------------------------------------------------------------------------------


class LedgerStore(Protocol):
    """The port the exchange writes through: apply an entry atomically, read an available balance."""

    def apply(self, entry: JournalEntry) -> None: ...

    def free(self, account: str, asset: str) -> Decimal: ...


class Ledger:
    """The in-memory reference store: checks every entry balances and leaves no balance negative."""

    __slots__ = ("_balances", "journal", "keep_journal")

    def __init__(self, keep_journal: bool = True) -> None:
        self._balances: dict[tuple[str, str], list[Decimal]] = {}
        self.journal: list[JournalEntry] = []
        self.keep_journal = keep_journal

    def apply(self, entry: JournalEntry) -> None:
        balances = self._balances
        new: dict[tuple[str, str], list[Decimal]] = {}
        sums: dict[str, Decimal] = {}
        for p in entry.postings:
            sums[p.asset] = EXACT.add(sums.get(p.asset, _ZERO), p.amount)
            key = (p.account, p.asset)
            cur = new.get(key)
            if cur is None:
                old = balances.get(key)
                cur = new[key] = [old[0], old[1]] if old is not None else [_ZERO, _ZERO]
            if p.bucket == FREE:
                cur[0] = EXACT.add(cur[0], p.amount)
            elif p.bucket == LOCKED:
                cur[1] = EXACT.add(cur[1], p.amount)
            else:
                raise LedgerError(f"unknown bucket {p.bucket!r}")
        for (account, asset), (free, locked) in new.items():
            if (free < 0 or locked < 0) and account != EXTERNAL_ACCOUNT:
                raise LedgerError(f"{entry.kind} {entry.ref}: {account} {asset} would be {free}/{locked}")
        if any(sums.values()):
            raise LedgerError(f"{entry.kind} {entry.ref} does not balance")
        for key, (free, locked) in new.items():
            # cells are updated in place: the exchange holds references to them (see ``_cell``)
            cell = balances.get(key)
            if cell is None:
                balances[key] = [free, locked]
            else:
                cell[0] = free
                cell[1] = locked
        if self.keep_journal:
            self.journal.append(entry)

    def _cell(self, account: str, asset: str) -> list[Decimal]:
        """The mutable [free, locked] cell of (account, asset), created empty if needed. Only the exchange's
        fast settlement path uses it (it checks and posts exactly what ``apply`` would, without building
        the postings); a cell is never replaced, so holding a reference to it is safe."""
        key = (account, asset)
        cell = self._balances.get(key)
        if cell is None:
            cell = self._balances[key] = [_ZERO, _ZERO]
        return cell

    def apply_all(self, entries: Iterable[JournalEntry]) -> None:
        for e in entries:
            self.apply(e)

    def free(self, account: str, asset: str) -> Decimal:
        b = self._balances.get((account, asset))
        return b[0] if b is not None else _ZERO

    def balance(self, account: str, asset: str) -> Balance:
        b = self._balances.get((account, asset))
        return Balance(b[0], b[1]) if b is not None else Balance(_ZERO, _ZERO)

    def balances(self, account: str) -> dict[str, Balance]:
        return {a: Balance(v[0], v[1]) for (acc, a), v in self._balances.items() if acc == account}

    def accounts(self) -> set[str]:
        return {acc for acc, _ in self._balances}

    def assets(self) -> set[str]:
        return {a for _, a in self._balances}

    def total(self, asset: str) -> Decimal:
        """Sum of free + locked over every account but the external one (= net deposits)."""
        return sum(
            (v[0] + v[1] for (acc, a), v in self._balances.items() if a == asset and acc != EXTERNAL_ACCOUNT),
            _ZERO,
        )


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
