"""What a check produces: findings (one per mismatch) and per-check counts; the catalogue of kinds.

Pure data, no I/O: the runner stores them, the routes and the CLI render them."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from shared.amounts import plain_or_none


@dataclass(frozen=True, slots=True)
class Kind:
    name: str
    action: str  # the suggested action, shown to the admin
    repair: str | None = None  # the repair an admin may request for it (None: investigate by hand)


KINDS: Final[dict[str, Kind]] = {
    k.name: k
    for k in (
        # paper ledger
        Kind(
            "ledger_total_mismatch",
            "investigate: balances, net deposits and the journal disagree for this asset",
        ),
        Kind(
            "balance_journal_mismatch", "investigate: the balance row is not the sum of its journal postings"
        ),
        Kind("journal_unbalanced", "investigate: journal postings of this asset do not sum to zero"),
        Kind("negative_balance", "investigate: a balance other than external deposits is negative"),
        Kind("locked_mismatch", "investigate: locked funds differ from what open orders still reserve"),
        Kind("fill_unpaired", "investigate: a paper trade has one side only and no system counterparty"),
        Kind("fill_unsettled", "investigate: a fill has no SETTLE postings in the journal"),
        Kind(
            "filled_quantity_mismatch", "investigate: the order's filled quantity is not the sum of its fills"
        ),
        Kind("position_mismatch", "investigate: the position is not the fold of its fills"),
        Kind("book_missing_order", "restart the execution worker: it rebuilds the books from the database"),
        Kind("book_extra_order", "restart the execution worker: it rebuilds the books from the database"),
        Kind(
            "book_quantity_mismatch", "restart the execution worker: it rebuilds the books from the database"
        ),
        Kind("book_lock_mismatch", "restart the execution worker: it rebuilds the books from the database"),
        Kind(
            "book_unavailable",
            "check that an execution worker runs and holds the paper lease (it publishes its book every second)",
        ),
        Kind("order_stuck", "republish the order's command to the execution worker", "republish"),
        # testnet
        Kind("order_status_drift", "adopt the exchange's status and filled quantity", "sync_order"),
        Kind("order_fill_drift", "adopt the exchange's status and filled quantity", "sync_order"),
        Kind(
            "exchange_order_missing",
            "close the order locally (the exchange does not have it)",
            "close_missing",
        ),
        Kind(
            "unknown_exchange_order",
            "adopt the exchange's order (flagged external) and its fills",
            "adopt_order",
        ),
        Kind("fill_missing", "adopt the exchange's fill", "adopt_fill"),
        Kind("fill_extra", "investigate: TradeBridge has a fill the exchange does not"),
        Kind("fill_price_mismatch", "investigate: the fill's price or quantity differs from the exchange's"),
        Kind("fill_fee_mismatch", "investigate: the fill's fee differs from the exchange's"),
        Kind("exchange_negative_balance", "investigate: the exchange reports a negative balance"),
        Kind("exchange_unreachable", "check the user's keys and the testnet's availability, then run again"),
        Kind(
            "testnet_reset",
            "acknowledge the testnet reset: close the user's open testnet orders",
            "close_reset",
        ),
    )
}


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str
    scope: str  # paper | testnet
    reference_source: str  # ledger | journal | exchange | memory | fills | clock | orders
    tradebridge_value: str | None
    reference_value: str | None
    user_id: str | None = None
    asset: str | None = None
    symbol: str | None = None
    order_id: str | None = None
    trade_id: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown mismatch kind {self.kind!r}")

    @property
    def action(self) -> str:
        return KINDS[self.kind].action

    @property
    def repair(self) -> str | None:
        return KINDS[self.kind].repair


@dataclass(slots=True)
class CheckOutcome:
    """One check's tally: how many things it looked at, what failed, and why it skipped anything."""

    name: str
    checked: int = 0
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    skipped: bool = False

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    @property
    def passed(self) -> int:
        return max(self.checked - len(self.findings), 0)


def fmt(value: Decimal | None) -> str | None:
    """Decimals as plain strings (no exponent), normalised, for stable comparisons in reports."""
    return plain_or_none(value)


def summarise(outcomes: list[CheckOutcome]) -> dict[str, Any]:
    by_kind: dict[str, int] = {}
    for o in outcomes:
        for f in o.findings:
            by_kind[f.kind] = by_kind.get(f.kind, 0) + 1
    return {
        "checks": [
            {
                "name": o.name,
                "checked": o.checked,
                "passed": o.passed,
                "mismatches": len(o.findings),
                "skipped": o.skipped,
                "notes": list(o.notes),
            }
            for o in outcomes
        ],
        "checked": sum(o.checked for o in outcomes),
        "passed": sum(o.passed for o in outcomes),
        "mismatches": sum(len(o.findings) for o in outcomes),
        "by_kind": dict(sorted(by_kind.items())),
    }
