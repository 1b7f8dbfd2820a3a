"""The latest public market data (ticker, depth, recent trades), shared between processes.

The price feed writes tickers, the execution worker writes depth and trades; the gateway reads them for
the market endpoints, quotes and the reference price of market buys. Redis when configured, memory otherwise.

Each venue has its own keys: "paper" (the default, under the keys it always had) and "testnet" (the testnet's
own market, written by pricefeed.testnet_market), so a quote never prices one venue with the other's book.
"""

from __future__ import annotations

from typing import Any, Protocol

import orjson
from redis.exceptions import RedisError

from shared.bus.base import encode_payload
from shared.errors import Unavailable
from shared.redis_bounds import bounded

PAPER = "paper"


class MarketData(Protocol):
    async def put(self, kind: str, symbol: str, value: dict[str, Any], *, venue: str = PAPER) -> None: ...

    async def get(self, kind: str, symbol: str, *, venue: str = PAPER) -> dict[str, Any] | None: ...

    async def push_trades(
        self, symbol: str, trades: list[dict[str, Any]], *, keep: int = 200, venue: str = PAPER
    ) -> None: ...

    async def recent_trades(self, symbol: str, limit: int, *, venue: str = PAPER) -> list[dict[str, Any]]: ...

    async def aclose(self) -> None: ...


class MemoryMarketData:
    def __init__(self) -> None:
        self._values: dict[tuple[str, str, str], bytes] = {}
        self._trades: dict[tuple[str, str], list[bytes]] = {}

    async def put(self, kind: str, symbol: str, value: dict[str, Any], *, venue: str = PAPER) -> None:
        self._values[(venue, kind, symbol)] = encode_payload(value)

    async def get(self, kind: str, symbol: str, *, venue: str = PAPER) -> dict[str, Any] | None:
        raw = self._values.get((venue, kind, symbol))
        return orjson.loads(raw) if raw is not None else None

    async def push_trades(
        self, symbol: str, trades: list[dict[str, Any]], *, keep: int = 200, venue: str = PAPER
    ) -> None:
        buf = self._trades.setdefault((venue, symbol), [])
        buf[:0] = [encode_payload(t) for t in reversed(trades)]
        del buf[keep:]

    async def recent_trades(self, symbol: str, limit: int, *, venue: str = PAPER) -> list[dict[str, Any]]:
        return [orjson.loads(t) for t in self._trades.get((venue, symbol), [])[:limit]]

    async def aclose(self) -> None:
        return None


def _unavailable(exc: Exception) -> Unavailable:
    return Unavailable("Market data is unavailable right now; retry shortly.", headers={"Retry-After": "2"})


class RedisMarketData:
    def __init__(self, url: str, prefix: str) -> None:
        import redis.asyncio as aioredis

        self._redis = aioredis.from_url(
            url,
            **bounded(url, 2.0),  # sends and reads bounded to 2 s
            socket_connect_timeout=2,
        )
        self._prefix = prefix + "md:"

    def _key(self, venue: str, kind: str, symbol: str) -> str:
        # paper keeps the keys it had before venues existed (a rolling upgrade reads them unchanged)
        return (
            f"{self._prefix}{kind}:{symbol}" if venue == PAPER else f"{self._prefix}{venue}:{kind}:{symbol}"
        )

    async def put(self, kind: str, symbol: str, value: dict[str, Any], *, venue: str = PAPER) -> None:
        await self._redis.set(self._key(venue, kind, symbol), encode_payload(value))

    async def get(self, kind: str, symbol: str, *, venue: str = PAPER) -> dict[str, Any] | None:
        try:
            raw = await self._redis.get(self._key(venue, kind, symbol))
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return orjson.loads(raw) if raw is not None else None

    async def push_trades(
        self, symbol: str, trades: list[dict[str, Any]], *, keep: int = 200, venue: str = PAPER
    ) -> None:
        if not trades:
            return
        key = self._key(venue, "trades", symbol)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.lpush(key, *[encode_payload(t) for t in trades])
            pipe.ltrim(key, 0, keep - 1)
            await pipe.execute()

    async def recent_trades(self, symbol: str, limit: int, *, venue: str = PAPER) -> list[dict[str, Any]]:
        try:
            raw = await self._redis.lrange(self._key(venue, "trades", symbol), 0, limit - 1)
        except RedisError as exc:
            raise _unavailable(exc) from exc
        return [orjson.loads(r) for r in raw]

    async def aclose(self) -> None:
        await self._redis.aclose()


def create_market_data(redis_url: str | None, prefix: str) -> MarketData:
    return RedisMarketData(redis_url, prefix) if redis_url else MemoryMarketData()
