"""The trading domain's exceptions: a broken market rule, an unaffordable reservation, a broken ledger invariant.

Below the services, so the gateway's acceptance and the execution worker raise and catch the same classes.
Never compiled: the paper modules (``shared.paper``'s ``rules`` and ``ledger``, ``execution.paper``'s ``book``
and ``exchange``) may be compiled with mypyc (``execution/paper/build_accel.py``), and a compiled class cannot
subclass a class of an uncompiled module (``shared.errors``) nor most builtin exceptions; they raise these.
"""

from __future__ import annotations

from decimal import Decimal

from shared.amounts import plain
from shared.errors import InvalidInput

__all__ = ["InsufficientBalance", "LedgerError", "RuleViolation"]


class RuleViolation(InvalidInput):
    """An order parameter broke a market rule; ``rule`` is the filter name, ``field`` the request field."""

    def __init__(self, rule: str, field: str, detail: str) -> None:
        super().__init__(f"{rule}: {detail}", errors=[{"field": field, "rule": rule, "message": detail}])
        self.rule = rule
        self.field = field


class InsufficientBalance(InvalidInput):
    """The account cannot afford the reservation; nothing was locked."""

    def __init__(self, account: str, asset: str, needed: Decimal, available: Decimal) -> None:
        detail = f"insufficient {asset} balance: needs {plain(needed)}, available {plain(available)}"
        errors = [{"field": "quantity", "rule": "INSUFFICIENT_BALANCE", "message": detail}]
        super().__init__(detail, errors=errors)
        self.account = account
        self.asset = asset
        self.needed = needed
        self.available = available


class LedgerError(RuntimeError):
    """An entry that would break an invariant (unbalanced, or a negative balance); nothing was applied."""
