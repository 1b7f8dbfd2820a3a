"""Binance spot testnet access through ccxt."""

from execution.testnet.client import REWRITTEN_URL_KEYS, SPOT_URL_PATHS, make_binance_client
from execution.testnet.errors import Disposition, ErrorKind, VenueError, classify
from execution.testnet.venue import TestnetVenue, TestnetVenueConfig, build_testnet_venue

__all__ = [
    "REWRITTEN_URL_KEYS",
    "SPOT_URL_PATHS",
    "Disposition",
    "ErrorKind",
    "TestnetVenue",
    "TestnetVenueConfig",
    "VenueError",
    "build_testnet_venue",
    "classify",
    "make_binance_client",
]
