"""A local Binance spot REST test double that ccxt's unmodified `binance` client talks to.

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
