"""Database tables (SQLModel). Importing this package registers every table on `SQLModel.metadata`."""

from shared.models.accounts import AuditLog, ExchangeCredential, RefreshToken, User

__all__ = ["AuditLog", "ExchangeCredential", "RefreshToken", "User"]
