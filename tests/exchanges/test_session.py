"""The binance-testnet adapter's sessions: ccxt, unmodified, against the Binance double. Everything comes
back as our records, every failure as ExchangeCallFailed (never a ccxt exception)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from shared.errors import InvalidInput, Unavailable
from shared.exchanges import (
    Disposition,
    ErrorKind,
    ExchangeCallFailed,
    ExchangeSession,
    SessionOptions,
    get_adapter,
)
from shared.exchanges.verify import ExchangeKeyVerifier
from shared.orders import Status
from tests.binance_double import Account, BinanceDouble
from tests.support.api import make_settings, running_api

D = Decimal
FAST = SessionOptions(timeout_ms=2000, enable_rate_limit=False)


@pytest.fixture
async def session(binance_double: BinanceDouble, binance_account: Account) -> AsyncIterator[ExchangeSession]:
    s = get_adapter("binance-testnet", base_url=binance_double.url).session(
        binance_account.api_key, binance_account.api_secret, options=FAST
    )
    yield s
    await s.close()
    assert s.closed


async def test_an_order_lifecycle_in_our_terms(
    session: ExchangeSession, binance_double: BinanceDouble
) -> None:
    resting = await session.create_order(
        "BTCUSDT", "LIMIT", "BUY", D("0.01"), D("59000"), client_order_id="tb-rest", time_in_force="GTC"
    )
    assert (resting.status, resting.client_order_id, resting.price, resting.quantity) == (
        Status.NEW,
        "tb-rest",
        D("59000"),
        D("0.01"),
    )
    by_id = await session.fetch_order("BTCUSDT", venue_order_id=resting.venue_order_id)
    by_client = await session.fetch_order("BTCUSDT", client_order_id="tb-rest")
    assert by_id == by_client and by_id.venue_order_id == resting.venue_order_id
    assert [o.client_order_id for o in await session.open_orders("BTCUSDT")] == ["tb-rest"]
    assert [o.client_order_id for o in await session.open_orders()] == ["tb-rest"]

    binance_double.state.fill_order(int(resting.venue_order_id), "0.004")
    canceled = await session.cancel_order("BTCUSDT", client_order_id="tb-rest")
    assert (canceled.status, canceled.client_order_id, canceled.filled) == (
        Status.CANCELED,
        "tb-rest",
        D("0.004"),
    )
    [trade] = await session.order_trades("BTCUSDT", resting.venue_order_id)
    assert (trade.quantity, trade.price, trade.side, trade.is_maker) == (D("0.004"), D("59000"), "BUY", True)

    market = await session.create_order("BTCUSDT", "MARKET", "SELL", D("0.1"), None, client_order_id="tb-mkt")
    assert market.status is Status.FILLED and sum(f.quantity for f in market.fills) == D("0.1")
    assert market.avg_price == D("60000")

    history = await session.all_orders("BTCUSDT", 0)
    assert [(o.client_order_id, o.status) for o in history] == [
        ("tb-rest", Status.CANCELED),
        ("tb-mkt", Status.FILLED),
    ]
    assert {t.venue_order_id for t in await session.all_trades("BTCUSDT", 0)} == {
        resting.venue_order_id,
        market.venue_order_id,
    }
    balances = {b.asset: b for b in await session.balances()}
    assert balances["USDT"].locked == 0 and isinstance(balances["BTC"].free, Decimal)
    assert await session.find_order("BTCUSDT", client_order_id="never-placed") is None
    tickers = await session.tickers(["BTCUSDT", "ETHUSDT"])
    assert (tickers["BTCUSDT"].last, tickers["ETHUSDT"].last) == (D("60000"), D("3000"))


@pytest.mark.parametrize(
    ("qty", "price", "kind", "needle", "sent"),
    [
        ("0.000015", "60000", ErrorKind.FILTER_FAILURE, "LOT_SIZE", False),  # off the step: not sent
        ("0.000000001", "60000", ErrorKind.FILTER_FAILURE, "LOT_SIZE", False),  # below one step
        ("0.01", "60000.001", ErrorKind.FILTER_FAILURE, "PRICE_FILTER", False),
        ("100", "60000", ErrorKind.INSUFFICIENT_FUNDS, "insufficient balance", True),
        ("0.00001", "60000", ErrorKind.FILTER_FAILURE, "NOTIONAL", True),
    ],
)
async def test_refusals_are_final_and_ours(
    session: ExchangeSession,
    binance_double: BinanceDouble,
    qty: str,
    price: str,
    kind: ErrorKind,
    needle: str,
    sent: bool,
) -> None:
    with pytest.raises(ExchangeCallFailed) as info:
        await session.create_order("BTCUSDT", "LIMIT", "BUY", D(qty), D(price), client_order_id="tb-x")
    assert (info.value.error.kind, info.value.error.disposition) == (kind, Disposition.FINAL)
    assert needle in info.value.error.reason
    assert bool(binance_double.state.requests("POST", "/api/v3/order")) is sent


async def test_unknown_symbols_orders_and_keys(
    session: ExchangeSession, binance_double: BinanceDouble, binance_account: Account
) -> None:
    with pytest.raises(ExchangeCallFailed) as info:
        await session.fetch_order("NOPEUSDT", client_order_id="x")
    assert info.value.error.kind is ErrorKind.BAD_SYMBOL and "NOPEUSDT" in info.value.error.reason
    with pytest.raises(ExchangeCallFailed) as info:
        await session.fetch_order("BTCUSDT", venue_order_id="424242")
    assert info.value.error.kind is ErrorKind.ORDER_NOT_FOUND
    bad = get_adapter("binance-testnet", base_url=binance_double.url).session(
        binance_account.api_key, "wrong-secret", options=FAST
    )
    try:
        with pytest.raises(ExchangeCallFailed) as info:
            await bad.balances()
    finally:
        await bad.close()
    assert (info.value.error.kind, info.value.error.disposition) == (
        ErrorKind.AUTHENTICATION,
        Disposition.FINAL,
    )


async def test_unclear_outcomes_are_ambiguous(
    session: ExchangeSession, binance_double: BinanceDouble
) -> None:
    binance_double.fail_next("POST", "/api/v3/order", 503, after_processing=True)
    with pytest.raises(ExchangeCallFailed) as info:
        await session.create_order("BTCUSDT", "LIMIT", "BUY", D("0.01"), D("59000"), client_order_id="tb-503")
    assert info.value.error.ambiguous
    # sent once (no retry in the adapter), and the exchange has it: the caller's lookup finds it
    assert len(binance_double.state.requests("POST", "/api/v3/order")) == 1
    assert (await session.fetch_order("BTCUSDT", client_order_id="tb-503")).status is Status.NEW


async def test_a_429_closes_the_gate_for_its_retry_after(
    session: ExchangeSession, binance_double: BinanceDouble
) -> None:
    binance_double.fail_next("GET", "/api/v3/account", 429, retry_after=1)
    with pytest.raises(ExchangeCallFailed) as info:
        await session.balances()
    err = info.value.error
    assert (err.kind, err.disposition, err.retry_after) == (
        ErrorKind.RATE_LIMITED,
        Disposition.RETRYABLE,
        1.0,
    )
    loop = asyncio.get_running_loop()
    gate = session.blocked_until  # type: ignore[attr-defined]
    assert gate > loop.time()
    await session.balances()  # waits for the gate, then goes out
    assert loop.time() >= gate
    assert len(binance_double.state.requests("GET", "/api/v3/account")) == 2


async def test_key_verification(binance_double: BinanceDouble, binance_account: Account) -> None:
    verifier = ExchangeKeyVerifier("binance-testnet", binance_double.url)
    await verifier.verify(binance_account.api_key, binance_account.api_secret)
    with pytest.raises(InvalidInput) as refused:
        await verifier.verify(binance_account.api_key, "x" * 64)
    assert "rejected these API keys" in refused.value.detail
    assert refused.value.errors == [{"field": "api_key", "message": "rejected by the exchange"}]
    with pytest.raises(Unavailable):
        await ExchangeKeyVerifier("binance-testnet", "http://127.0.0.1:9").verify("k", "s")


@pytest.mark.parametrize("database", ["postgresql", "sqlite"])
async def test_keys_stored_through_the_app_are_verified_by_the_adapter(
    database: str,
    tmp_path: Path,
    pg_url: str,
    redis_url: str,
    redis_prefix: str,
    binance_double: BinanceDouble,
    binance_account: Account,
) -> None:
    """PUT /api/keys: good keys stored; refused keys 422, an unreachable exchange 503 (problem+json), none stored."""
    if database == "postgresql":
        settings, migrate = (
            make_settings(
                pg_url, redis_url=redis_url, redis_prefix=redis_prefix, binance_testnet_url=binance_double.url
            ),
            False,
        )
    else:
        settings, migrate = (
            make_settings(
                f"sqlite+aiosqlite:///{tmp_path / 'keys.db'}", binance_testnet_url=binance_double.url
            ),
            True,
        )
    async with running_api(settings, migrate=migrate) as api:
        auth = await api.user("verify@example.com")
        keys = {"api_key": binance_account.api_key, "api_secret": "y" * 64}
        r = await api.client.put("/api/keys/binance-testnet", json=keys, headers=auth)
        assert r.status_code == 422 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["errors"] == [{"field": "api_key", "message": "rejected by the exchange"}]
        binance_double.fail_next("GET", "/api/v3/account", 503)
        keys["api_secret"] = binance_account.api_secret
        r = await api.client.put("/api/keys/binance-testnet", json=keys, headers=auth)
        assert r.status_code == 503 and "could not be reached" in r.json()["detail"], r.text
        assert (await api.client.get("/api/keys", headers=auth)).json() == []
        r = await api.client.put("/api/keys/binance-testnet", json=keys, headers=auth)
        assert r.status_code == 200, r.text
