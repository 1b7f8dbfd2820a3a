"""Binance spot testnet access through ccxt."""

from execution.testnet.client import REWRITTEN_URL_KEYS, SPOT_URL_PATHS, make_binance_client

__all__ = ["REWRITTEN_URL_KEYS", "SPOT_URL_PATHS", "make_binance_client"]
