"""Database tables (SQLModel). Importing this package registers every table on `SQLModel.metadata`."""

from shared.models.accounts import AuditLog, ExchangeCredential, RefreshToken, User
from shared.models.apikeys import ApiKey
from shared.models.market import CandleRow, Position
from shared.models.portfolio import EquitySnapshot
from shared.models.reconciliation import ReconciliationMismatch, ReconciliationReport
from shared.models.trading import (
    Balance,
    Fill,
    LedgerPosting,
    Order,
    OrderEvent,
    OutboxMessage,
    PaperAccount,
    ProcessedCommand,
)

__all__ = [
    "ApiKey",
    "AuditLog",
    "Balance",
    "CandleRow",
    "EquitySnapshot",
    "ExchangeCredential",
    "Fill",
    "LedgerPosting",
    "Order",
    "OrderEvent",
    "OutboxMessage",
    "PaperAccount",
    "Position",
    "ProcessedCommand",
    "ReconciliationMismatch",
    "ReconciliationReport",
    "RefreshToken",
    "User",
]
