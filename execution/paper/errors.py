"""The paper exchange's exceptions, defined below the services in ``shared.trading_errors`` (the gateway raises
them too). This module is the paper package's own name for them, so the compiled modules (``rules``, ``ledger``)
import a sibling and their build digest does not change when the definitions move; it is never compiled.
"""

from __future__ import annotations

from shared.trading_errors import InsufficientBalance, LedgerError, RuleViolation

__all__ = ["InsufficientBalance", "LedgerError", "RuleViolation"]
