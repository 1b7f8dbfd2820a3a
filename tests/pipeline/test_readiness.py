"""`/readyz` and the worker's start agree on paper liquidity, on SQLite with the in-process bus and memory
market data, and on PostgreSQL with Redis: with the market maker on, the worker matches nothing before it
has quoted and the gateway is not ready before then; with it off there is nothing to wait for."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from shared.settings import Settings
from shared.streams import MARKET_TICKER, TESTNET_VENUE, public_event
from tests.support.api import Api, make_settings, running_api
from tests.support.eventually import eventually

PRICES = {"BTCUSDT": "60000", "ETHUSDT": "3000", "BNBUSDT": "600"}


Stack = Callable[..., tuple[Settings, bool]]


@pytest.fixture(params=["sqlite", "postgresql"])
def stack(
    request: pytest.FixtureRequest, tmp_path: Path, pg_url: str, redis_url: str, redis_prefix: str
) -> Stack:
    """Settings for SQLite (in-process bus, memory market data) or PostgreSQL with Redis; and whether to
    migrate (the PostgreSQL database comes migrated)."""

    def make(**extra: str) -> tuple[Settings, bool]:
        if request.param == "sqlite":
            return make_settings(f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}", **extra), True
        return make_settings(pg_url, redis_url=redis_url, redis_prefix=redis_prefix, **extra), False

    return make


async def tick(api: Api, symbol: str, price: str, *, stale: bool = False, venue: str | None = None) -> None:
    """A ticker on the public stream as the price feed publishes it (paper: no venue), or as
    pricefeed.testnet_market does (`venue="testnet"`, in the event and its data)."""
    data: dict[str, object] = {"symbol": symbol, "price": price, "stale": stale}
    extra = {} if venue is None else {"venue": venue}
    event = public_event("TICKER", symbol, datetime.now(UTC), {**data, **extra}, **extra)
    await api.parts.bus.publish(MARKET_TICKER, event)


async def status(api: Api, auth: dict[str, str], oid: str) -> str:
    return str((await api.client.get(f"/api/orders/{oid}", headers=auth)).json()["status"])


async def test_not_ready_and_not_matching_until_the_market_maker_quotes(stack: Stack) -> None:
    settings, migrate = stack(paper_market_maker="on", paper_starting_balances_csv="USDT=10000,BTC=1")
    async with running_api(settings, services=("execution",), migrate=migrate) as api:
        await api.system.worker.ready.wait()
        r = await api.client.get("/readyz")
        assert r.status_code == 503 and "BTCUSDT" in r.json()["checks"]["liquidity"], r.text
        # Accepted before any price: the worker holds it instead of letting it expire on an empty book.
        auth = await api.user("early@example.com")
        body = {"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.01"}
        r = await api.client.post("/api/orders", json=body, headers=auth)
        assert r.status_code == 202, r.text
        oid = r.json()["order_id"]

        async def quoted_everywhere() -> bool:
            for symbol, price in PRICES.items():
                await tick(api, symbol, price)
            return (await api.client.get("/readyz")).status_code == 200

        await eventually(quoted_everywhere, timeout=15, interval=0.1)
        await eventually(lambda: _is(api, auth, oid, "FILLED"), timeout=15)

        # A stale price pulls the quotes of that symbol: not ready again, and the check says which.
        async def pulled() -> bool:
            await tick(api, "BTCUSDT", "60000", stale=True)
            r = await api.client.get("/readyz")
            return r.status_code == 503 and r.json()["checks"]["liquidity"] == "waiting: BTCUSDT no quotes"

        await eventually(pulled, timeout=15, interval=0.1)


async def _is(api: Api, auth: dict[str, str], oid: str, expected: str) -> bool:
    current = await status(api, auth, oid)
    assert current in ("PENDING", expected), current
    return current == expected


async def test_without_the_market_maker_there_is_no_liquidity_to_wait_for(stack: Stack) -> None:
    """PAPER_MARKET_MAKER=off: /readyz checks the database and the bus only, and the worker matches at once
    (no price ever arrives here)."""
    settings, migrate = stack(paper_market_maker="off", paper_starting_balances_csv="USDT=10000,BTC=1")
    async with running_api(settings, services=("execution",), migrate=migrate) as api:
        await api.system.worker.ready.wait()
        r = await api.client.get("/readyz")
        assert r.status_code == 200 and r.json()["checks"] == {"database": "ok", "bus": "ok"}, r.text
        seller, buyer = await api.user("s@example.com"), await api.user("b@example.com")
        limit = {"symbol": "BTCUSDT", "type": "LIMIT", "quantity": "0.01", "price": "60000"}
        r = await api.client.post("/api/orders", json={**limit, "side": "SELL"}, headers=seller)
        resting = r.json()["order_id"]
        r = await api.client.post("/api/orders", json={**limit, "side": "BUY"}, headers=buyer)
        taker = r.json()["order_id"]
        await eventually(lambda: _is(api, buyer, taker, "FILLED"), timeout=15)
        assert await status(api, seller, resting) == "FILLED"


async def test_testnet_tickers_are_never_quoted_on_paper(stack: Stack) -> None:
    """The testnet's own tickers share the public ticker stream (venue "testnet", pricefeed.testnet_market): the
    paper market maker must not quote around them, or /readyz says ready and a paper market order fills at the
    testnet's price while the paper feed has none."""
    settings, migrate = stack(paper_market_maker="on", paper_starting_balances_csv="USDT=10000,BTC=1")
    async with running_api(settings, services=("execution",), migrate=migrate) as api:
        await api.system.worker.ready.wait()

        async def readiness() -> str:
            return str((await api.client.get("/readyz")).json()["checks"].get("liquidity", "ok"))

        async def all_but_btc_quoted() -> bool:
            for symbol in ("ETHUSDT", "BNBUSDT"):
                await tick(api, symbol, PRICES[symbol])
            await tick(api, "BTCUSDT", PRICES["BTCUSDT"], venue=TESTNET_VENUE)
            return (await readiness()).startswith("waiting: BTCUSDT") and "ETHUSDT" not in await readiness()

        # The worker's start waits up to 30 s for every symbol's price before it quotes any (restore_liquidity).
        await eventually(all_but_btc_quoted, timeout=60, interval=0.2)
        # Another testnet ticker, then a stale paper one behind it on the same stream: once ETHUSDT's quotes are
        # pulled, the worker has read the testnet one as well, and BTCUSDT is still not quoted.
        await tick(api, "BTCUSDT", PRICES["BTCUSDT"], venue=TESTNET_VENUE)
        await tick(api, "ETHUSDT", PRICES["ETHUSDT"], stale=True)

        async def eth_pulled() -> str | None:
            liquidity = await readiness()
            return liquidity if "ETHUSDT" in liquidity else None

        liquidity = await eventually(eth_pulled, timeout=15, interval=0.1)
        assert liquidity is not None and liquidity.startswith("waiting: BTCUSDT"), liquidity
