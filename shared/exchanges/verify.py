"""Checks a user's exchange keys with one signed call before they are stored (the gateway's KeyVerifier)."""

from __future__ import annotations

from shared.errors import InvalidInput, Unavailable
from shared.exchanges import get_adapter
from shared.exchanges.base import ErrorKind, ExchangeCallFailed

_KEY_PROBLEMS = frozenset({ErrorKind.AUTHENTICATION, ErrorKind.PERMISSION, ErrorKind.ACCOUNT_SUSPENDED})


class ExchangeKeyVerifier:
    """Resolves its adapter on first use, so a process that never stores keys never imports ccxt."""

    def __init__(self, exchange: str, base_url: str | None = None) -> None:
        self.exchange = exchange
        self.base_url = base_url

    async def verify(self, api_key: str, api_secret: str) -> None:
        adapter = get_adapter(self.exchange, base_url=self.base_url)
        try:
            await adapter.verify_keys(api_key, api_secret)
        except ExchangeCallFailed as exc:
            err = exc.error
            if err.kind in _KEY_PROBLEMS:
                raise InvalidInput(
                    f"{adapter.label} rejected these API keys (wrong key or secret, or the key lacks trading "
                    "permission). Nothing was saved.",
                    errors=[{"field": "api_key", "message": "rejected by the exchange"}],
                ) from exc
            if err.final or err.kind is ErrorKind.EXCHANGE:
                raise InvalidInput(
                    f"{adapter.label} refused the keys: {err.reason}. Nothing was saved."
                ) from exc
            raise Unavailable(
                f"{adapter.label} could not be reached to check the keys; nothing was saved. Try again."
            ) from exc


__all__ = ["ExchangeKeyVerifier"]
