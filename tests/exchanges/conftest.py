from tests.binance_double.plugin import binance_account, binance_double

__all__ = ["binance_account", "binance_double"]
