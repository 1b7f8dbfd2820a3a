"""The ledger's shared terms: what every service reading or writing `balances`/`ledger_postings` agrees on.

The paper exchange's ledger (execution), the gateway's acceptance and reconciliation's checks all name the
outside world's account and do money arithmetic in one exact context; defining them here keeps those services
from importing each other."""

from __future__ import annotations

from decimal import Context, DivisionByZero, Inexact, InvalidOperation, Overflow
from typing import Final

__all__ = ["EXACT", "EXTERNAL_ACCOUNT"]

EXTERNAL_ACCOUNT: Final = "external/deposits"
"""The counter-account of deposits: the only account allowed to go negative."""

EXACT: Final = Context(prec=60, traps=[InvalidOperation, Inexact, Overflow, DivisionByZero])
"""Arithmetic context for money: an inexact result raises instead of rounding silently."""
