"""Pytest fixtures for the Binance double.

Other test packages import them in their own conftest.py:
`from tests.binance_double.plugin import binance_account, binance_double  # noqa: F401`
(pytest only honours `pytest_plugins = ["tests.binance_double.plugin"]` in the root tests/conftest.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.binance_double.server import BinanceDouble
from tests.binance_double.state import Account

DEFAULT_BALANCES = {"USDT": "10000", "BTC": "1", "ETH": "10", "BNB": "50"}


@pytest.fixture
def binance_double() -> Iterator[BinanceDouble]:
    """A fresh double of this test's own on a free 127.0.0.1 port (`.url`, `.state`, fault shortcuts)."""
    with BinanceDouble() as double:
        yield double


@pytest.fixture
def binance_account(binance_double: BinanceDouble) -> Account:
    """An account on `binance_double` seeded with DEFAULT_BALANCES."""
    return binance_double.state.create_account(DEFAULT_BALANCES)
