"""Exchange adapters: the only code that talks to an exchange library (ccxt).

Callers ask the registry for an adapter by name and get sessions that speak in our terms: exchange ids for
symbols, Decimal amounts, immutable records (shared.exchanges.base), our order statuses, and one exception
type (`ExchangeCallFailed`) whose `VenueError` says whether a failed call may be retried, must be looked up,
or is final. Adding an exchange means one adapter module, one line in `_ADAPTERS`, and its test double.

Adapters are imported on first use, so importing this package does not import ccxt.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import cast

from shared.exchanges.base import (
    BalanceDeltaEvent,
    BalancesEvent,
    Disposition,
    ErrorKind,
    ExchangeAdapter,
    ExchangeBalance,
    ExchangeCallFailed,
    ExchangeOrder,
    ExchangeSession,
    ExchangeTrade,
    Kline,
    MarketFilters,
    OrderEvent,
    Reachability,
    SessionOptions,
    StreamDown,
    StreamOptions,
    StreamUp,
    Ticker,
    UserStream,
    UserStreamEvent,
    VenueError,
)

AdapterFactory = Callable[[str | None], ExchangeAdapter]

DEFAULT_TESTNET_URL = "https://testnet.binance.vision"  # binance-testnet's root when none is configured
# binance-testnet's WebSocket base (its WebSocket API is at /ws-api/v3) when none is configured
DEFAULT_TESTNET_WS_URL = "wss://ws-api.testnet.binance.vision"

# name -> "module:function(base_url) -> adapter"
_ADAPTERS: dict[str, str] = {
    "binance-testnet": "shared.exchanges.binance:testnet",
    "binance": "shared.exchanges.binance:mainnet",
}


def register_adapter(name: str, target: str) -> None:
    """Make `get_adapter(name)` build its adapter with `target` ("module:function", imported on first use)."""
    if ":" not in target:
        raise ValueError(f"an adapter target is 'module:function', got {target!r}")
    _ADAPTERS[name] = target


def adapter_names() -> tuple[str, ...]:
    return tuple(sorted(_ADAPTERS))


def get_adapter(name: str, *, base_url: str | None = None) -> ExchangeAdapter:
    """The adapter registered as `name` ("binance-testnet", "binance"), rooted at `base_url` where the
    exchange has one to configure (BINANCE_TESTNET_URL)."""
    target = _ADAPTERS.get(name)
    if target is None:
        raise ValueError(f"unknown exchange {name!r}; known: {', '.join(adapter_names())}")
    module, _, attr = target.partition(":")
    factory = cast(AdapterFactory, getattr(importlib.import_module(module), attr))
    return factory(base_url)


__all__ = [
    "DEFAULT_TESTNET_URL",
    "DEFAULT_TESTNET_WS_URL",
    "AdapterFactory",
    "BalanceDeltaEvent",
    "BalancesEvent",
    "Disposition",
    "ErrorKind",
    "ExchangeAdapter",
    "ExchangeBalance",
    "ExchangeCallFailed",
    "ExchangeOrder",
    "ExchangeSession",
    "ExchangeTrade",
    "Kline",
    "MarketFilters",
    "OrderEvent",
    "Reachability",
    "SessionOptions",
    "StreamDown",
    "StreamOptions",
    "StreamUp",
    "Ticker",
    "UserStream",
    "UserStreamEvent",
    "VenueError",
    "adapter_names",
    "get_adapter",
    "register_adapter",
]
