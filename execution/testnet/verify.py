"""Checks a user's Binance testnet keys with one signed call before they are stored."""

from __future__ import annotations

import ccxt.async_support as ccxt

from shared.errors import InvalidInput, Unavailable


class ExchangeKeyVerifier:
    def __init__(self, base_url: str, *, timeout_ms: int = 10_000) -> None:
        self.base_url = base_url
        self.timeout_ms = timeout_ms

    async def verify(self, api_key: str, api_secret: str) -> None:
        from execution.testnet.client import make_binance_client

        client = make_binance_client(api_key, api_secret, base_url=self.base_url, timeout_ms=self.timeout_ms)
        try:
            await client.fetch_balance()
        except (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.AccountSuspended) as exc:
            raise InvalidInput(
                "Binance testnet rejected these API keys (wrong key or secret, or the key lacks trading "
                "permission). Nothing was saved.",
                errors=[{"field": "api_key", "message": "rejected by the exchange"}],
            ) from exc
        except (ccxt.NetworkError, ccxt.ExchangeNotAvailable) as exc:
            raise Unavailable(
                "Binance testnet could not be reached to check the keys; nothing was saved. Try again."
            ) from exc
        except ccxt.ExchangeError as exc:
            raise InvalidInput(
                f"Binance testnet refused the keys ({type(exc).__name__}). Nothing was saved."
            ) from exc
        finally:
            await client.close()
