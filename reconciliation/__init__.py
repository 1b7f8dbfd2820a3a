"""Admin reconciliation: paper ledger invariants and testnet-vs-exchange checks, stored reports, repairs.

A service of its own: the composition root (`tradebridge`) fills `ReconciliationParts` (the execution worker's
paper book and the engine's repair port included) and hands the `Reconciler` to the gateway's routes."""

from reconciliation.findings import KINDS, CheckOutcome, Finding
from reconciliation.runner import Reconciler, ReconciliationParts, ReconOptions
from reconciliation.scheduler import ReconciliationScheduler, start_reconciliation

__all__ = [
    "KINDS",
    "CheckOutcome",
    "Finding",
    "ReconOptions",
    "Reconciler",
    "ReconciliationParts",
    "ReconciliationScheduler",
    "start_reconciliation",
]
