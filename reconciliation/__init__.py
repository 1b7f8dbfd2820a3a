"""Admin reconciliation: paper ledger invariants and testnet-vs-exchange checks, stored reports, repairs."""

from reconciliation.findings import KINDS, CheckOutcome, Finding
from reconciliation.runner import Reconciler, ReconOptions, get_reconciler
from reconciliation.scheduler import ReconciliationScheduler, reconciliation_hook

__all__ = [
    "KINDS",
    "CheckOutcome",
    "Finding",
    "ReconOptions",
    "Reconciler",
    "ReconciliationScheduler",
    "get_reconciler",
    "reconciliation_hook",
]
