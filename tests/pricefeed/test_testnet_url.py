"""The price feed's testnet client is rooted where `Settings` says (BINANCE_TESTNET_URL, `.env` included),
never at an environment variable read behind the settings' back."""

from __future__ import annotations

from typing import Any

import pytest

from pricefeed.sources import DEFAULT_TESTNET_URL, ExchangeTickerSource, build_source
from shared.clock import ManualClock


async def _api_root(src: object) -> str:
    assert isinstance(src, ExchangeTickerSource)
    # what it would poll (built without any I/O): a ccxt client or a session around one
    client = src._factory()
    try:
        ccxt_client: Any = getattr(client, "client", client)
        return str(ccxt_client.urls["api"]["public"])
    finally:
        await client.close()


async def test_the_environment_is_not_read_behind_the_settings_back(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BINANCE_TESTNET_URL", "http://127.0.0.1:9")
    clock = ManualClock()
    default = build_source("binance-testnet", symbols=["BTCUSDT"], clock=clock)
    assert await _api_root(default) == f"{DEFAULT_TESTNET_URL.rstrip('/')}/api/v3"
    given = build_source(
        "binance-testnet", symbols=["BTCUSDT"], clock=clock, binance_testnet_url="http://127.0.0.1:8123"
    )
    assert await _api_root(given) == "http://127.0.0.1:8123/api/v3"
