"""Klines in every interval the price feed stores, through ccxt's binance unmodified against the Binance-compatible
API (REST) and the kline stream: the same candles as our own candles route, history included from the start."""

from __future__ import annotations

import asyncio
import itertools
import json
from datetime import datetime
from typing import Any

import httpx
import websockets

from tests.binance_api.conftest import Served

SYMBOL = "BTC/USDT"


def ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso).timestamp() * 1000)


async def test_ccxt_fetches_every_interval_as_our_candles_route_has_it(tb: Served) -> None:
    ex = tb.ccxt()
    try:
        async with httpx.AsyncClient(base_url=tb.base) as http:
            for interval, length in (("15m", 900_000), ("4h", 14_400_000), ("1d", 86_400_000)):
                ohlcv = await ex.fetch_ohlcv(SYMBOL, interval, limit=20)
                params: dict[str, str | int] = {"interval": interval, "limit": 20}
                ours = (await http.get("/api/markets/BTCUSDT/candles", params=params)).json()
                assert len(ohlcv) == 20  # a fresh system: the backfilled history
                assert all(b[0] - a[0] == length for a, b in itertools.pairwise(ohlcv))
                # The same buckets (a bucket may roll over between the two calls: at most one differs).
                assert len({row[0] for row in ohlcv} & {ms(c["start"]) for c in ours}) >= 19
    finally:
        await ex.close()


async def test_the_kline_stream_serves_the_longer_intervals(tb: Served) -> None:
    base = tb.base.replace("http://", "ws://") + "/binance"
    async with websockets.connect(base + "/ws/btcusdt@kline_4h") as ws:
        msg: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 15))
    k = msg["k"]
    assert msg["e"] == "kline" and k["i"] == "4h" and k["T"] - k["t"] == 14_400_000 - 1
    assert k["t"] % 14_400_000 == 0
