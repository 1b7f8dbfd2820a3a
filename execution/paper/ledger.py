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
]

EXTERNAL_ACCOUNT: Final = "external/deposits"
FEE_ACCOUNT: Final = "system/fees"
FREE: Final = "free"
LOCKED: Final = "locked"

EXACT: Final = Context(prec=60, traps=[InvalidOperation, Inexact, Overflow, DivisionByZero])
"""Arithmetic context for money: an inexact result raises instead of rounding silently."""

_ZERO: Final = Decimal(0)


class InsufficientBalance(InvalidInput):
    """The account cannot afford the reservation; nothing was locked."""

    def __init__(self, account: str, asset: str, needed: Decimal, available: Decimal) -> None:
        detail = f"insufficient {asset} balance: needs {needed}, available {available}"
        errors = [{"field": "quantity", "rule": "INSUFFICIENT_BALANCE", "message": detail}]
        super().__init__(detail, errors=errors)
        self.account = account
        self.asset = asset
        self.needed = needed
        self.available = available


class LedgerError(RuntimeError):
    """An entry that would break an invariant (unbalanced, or a negative balance); nothing was applied."""


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    asset: str
    bucket: str  # FREE or LOCKED
    amount: Decimal  # signed


@dataclass(frozen=True, slots=True)
class JournalEntry:
    kind: str  # DEPOSIT | RESERVE | SETTLE | RELEASE
    ref: str  # order id (RESERVE/RELEASE), trade id (SETTLE), caller's reference (DEPOSIT)
    postings: tuple[Posting, ...]

    def is_balanced(self) -> bool:
        sums: dict[str, Decimal] = {}
        for p in self.postings:
            sums[p.asset] = sums.get(p.asset, _ZERO) + p.amount
        return all(v == 0 for v in sums.values())


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
    return JournalEntry(
        "RESERVE", ref, (Posting(account, asset, FREE, -amount), Posting(account, asset, LOCKED, amount))
    )


def release_entry(account: str, asset: str, amount: Decimal, ref: str) -> JournalEntry:
    return JournalEntry(
        "RELEASE", ref, (Posting(account, asset, LOCKED, -amount), Posting(account, asset, FREE, amount))
    )


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
    postings = [
        Posting(seller, base, LOCKED, -quantity),
        Posting(buyer, base, FREE, quantity),
        Posting(buyer, quote, LOCKED, -buyer_lock_consumed),
        Posting(seller, quote, FREE, notional - seller_fee),
    ]
    if refund:
        postings.append(Posting(buyer, quote, FREE, refund))
    fee = buyer_fee + seller_fee
    if fee:
        postings.append(Posting(fee_account, quote, FREE, fee))
    return JournalEntry("SETTLE", ref, tuple(postings))


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
        balances.update(new)
        if self.keep_journal:
            self.journal.append(entry)

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
