"""A local Binance spot test double that ccxt and python-binance, unmodified, talk to.

REST at `.url` (BINANCE_TESTNET_URL), market streams and the WebSocket API with the user data stream at
`.ws_url` (BINANCE_TESTNET_WS_URL); `tests.binance_double.clients` shows how to point each library at it.

Use the `binance_double` pytest fixture (`tests.binance_double.plugin`), `run_binance_double()` as a context
manager, or `python -m tests.binance_double --port N` as its own process (driven by `DoubleControl`).
"""

from tests.binance_double.control import DoubleControl
from tests.binance_double.server import BinanceDouble, run_binance_double
from tests.binance_double.state import (
    Account,
    Balance,
    BinanceError,
    ExchangeState,
    Fault,
    Order,
    SymbolSpec,
    Trade,
)

__all__ = [
    "Account",
    "Balance",
    "BinanceDouble",
    "BinanceError",
    "DoubleControl",
    "ExchangeState",
    "Fault",
    "Order",
    "SymbolSpec",
    "Trade",
    "run_binance_double",
]
