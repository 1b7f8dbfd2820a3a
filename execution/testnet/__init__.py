"""The Binance spot testnet venue; the exchange itself is reached through shared.exchanges."""

from execution.testnet.venue import TestnetVenue, TestnetVenueConfig, build_testnet_venue

__all__ = ["TestnetVenue", "TestnetVenueConfig", "build_testnet_venue"]
