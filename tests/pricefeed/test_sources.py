"""Sources: deterministic synthetic walk, CSV replay, and an exchange feed that fails then recovers."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from pricefeed.domain.backoff import Backoff
from pricefeed.domain.ticks import Tick
from pricefeed.sources import (
    ExchangeTickerSource,
    ReplayFormatError,
    ReplaySource,
    SyntheticSource,
    binance_client_factory,
    build_source,
)
from pricefeed.sources.exchange import _price_of
from shared.clock import ManualClock
from shared.exchanges import SessionOptions, Ticker, get_adapter
from tests.binance_double import BinanceDouble
from tests.binance_double.plugin import binance_double

__all__ = ["binance_double"]  # the fixture

D = Decimal
SYMBOLS = ["BTCUSDT", "ETHUSDT", "BNBUSDT"]


class FakeSleeper:
    """Records requested waits and advances the manual clock instead of waiting."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.clock.advance(seconds)
        await asyncio.sleep(0)


async def take(source: Any, n: int) -> list[Tick]:
    out: list[Tick] = []
    gen = source.ticks()
    try:
        async for tick in gen:
            out.append(tick)
            if len(out) == n:
                break
    finally:
        await gen.aclose()
    return out


# --- synthetic -----------------------------------------------------------------------------


async def test_synthetic_is_deterministic_for_a_seed_and_plausible() -> None:
    runs = []
    for seed in (7, 7, 8):
        clock = ManualClock()
        sleeper = FakeSleeper(clock)
        runs.append((await take(SyntheticSource(SYMBOLS, clock, seed=seed, sleep=sleeper), 300), sleeper))
    (a, sa), (b, _), (c, _) = runs
    assert [(t.symbol, t.price, t.ts) for t in a] == [(t.symbol, t.price, t.ts) for t in b]
    assert [t.price for t in a] != [t.price for t in c]
    assert a[:3] and [t.symbol for t in a[:3]] == SYMBOLS  # one tick per symbol per round
    assert set(sa.calls) == {0.25}
    assert a[-1].ts - a[0].ts == timedelta(seconds=0.25 * 99)
    for symbol, start in (("BTCUSDT", 65000), ("ETHUSDT", 3500), ("BNBUSDT", 600)):
        prices = [t.price for t in a if t.symbol == symbol]
        assert len(set(prices)) > 50  # it moves
        assert all(abs(p / start - 1) < D("0.02") for p in prices)  # ~25 s of realistic volatility
        assert all(isinstance(p, Decimal) and p > 0 for p in prices)


def test_synthetic_volatility_scales_with_the_interval() -> None:
    clock = ManualClock()
    src = SyntheticSource(["BTCUSDT"], clock, seed=1, interval=0.25)
    rets = []
    prev = D(65000)
    for _ in range(4000):
        (tick,) = src.next_round()
        rets.append(float(tick.price / prev) - 1)
        prev = tick.price
    sd = (sum(r * r for r in rets) / len(rets)) ** 0.5
    expected = 0.55 * (0.25 / (365 * 24 * 3600)) ** 0.5
    assert expected * 0.8 < sd < expected * 1.2


# --- replay --------------------------------------------------------------------------------


def write_csv(tmp_path: Path) -> Path:
    path = tmp_path / "prices.csv"
    path.write_text(
        "timestamp,symbol,price\n"
        "2026-01-01T00:00:02Z,ETHUSDT,3501.5\n"
        "1767225600000,BTCUSDT,65000.10\n"  # 2026-01-01T00:00:00Z as epoch ms
        "\n"
        "2026-01-01T00:00:01+00:00,BTC/USDT,65001\n"
        "2026-01-01T00:00:05,BNBUSDT,600.25\n",  # naive: UTC
        encoding="utf-8",
    )
    return path


async def test_replay_yields_rows_in_time_order_as_fast_as_possible(tmp_path: Path) -> None:
    clock = ManualClock()
    sleeper = FakeSleeper(clock)
    ticks = await take(ReplaySource(write_csv(tmp_path), clock, speed=0, sleep=sleeper), 99)
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    assert [(t.symbol, t.price, t.ts) for t in ticks] == [
        ("BTCUSDT", D("65000.10"), t0),
        ("BTCUSDT", D("65001"), t0 + timedelta(seconds=1)),
        ("ETHUSDT", D("3501.5"), t0 + timedelta(seconds=2)),
        ("BNBUSDT", D("600.25"), t0 + timedelta(seconds=5)),
    ]
    assert sleeper.calls == []


async def test_replay_speed_factor_scales_the_gaps_and_retime_stamps_the_clock(tmp_path: Path) -> None:
    clock = ManualClock()
    sleeper = FakeSleeper(clock)
    src = build_source(
        f"replay:{write_csv(tmp_path)}",
        symbols=SYMBOLS,
        clock=clock,
        replay_speed=2.0,
        replay_retime=True,
        sleep=sleeper,
    )
    ticks = await take(src, 99)
    assert sleeper.calls == [0.5, 0.5, 1.5]
    assert [t.ts for t in ticks] == [clock.now() - timedelta(seconds=s) for s in (2.5, 2.0, 1.5, 0)]


def test_replay_rejects_malformed_rows(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("2026-01-01T00:00:00Z,BTCUSDT,not-a-price\n", encoding="utf-8")
    with pytest.raises(ReplayFormatError, match=r"bad\.csv:1"):
        ReplaySource(bad, ManualClock())._rows()
    bad.write_text("2026-01-01T00:00:00Z,BTCUSDT\n", encoding="utf-8")
    with pytest.raises(ReplayFormatError):
        ReplaySource(bad, ManualClock())._rows()


# --- exchange, through the adapter against the Binance double, with failures -----------------------

TICKERS = "/api/v3/ticker/24hr"


def double_sessions(double: BinanceDouble) -> Any:
    """The binance-testnet adapter's public sessions on the double (ccxt's own throttle off: faults are quick)."""
    adapter = get_adapter("binance-testnet", base_url=double.url)
    return lambda: adapter.session(options=SessionOptions(enable_rate_limit=False, timeout_ms=2000))


async def test_exchange_source_backs_off_exponentially_and_recovers(
    binance_double: BinanceDouble, caplog: pytest.LogCaptureFixture
) -> None:
    clock = ManualClock()
    sleeper = FakeSleeper(clock)
    for status in (503, 500, 502, 504, 503):
        binance_double.fail_next("GET", TICKERS, status)
    src = ExchangeTickerSource(
        "binance-testnet",
        SYMBOLS,
        clock,
        double_sessions(binance_double),
        poll_interval=1.0,
        backoff=Backoff(base=0.5, factor=2, cap=4),
        sleep=sleeper,
        rng=random.Random(3),
    )
    with caplog.at_level(logging.INFO, logger="pricefeed.sources.exchange"):
        ticks = await take(src, 6)
    retry_waits = sleeper.calls[:5]
    for attempt, wait in enumerate(retry_waits, start=1):
        ceiling = min(4.0, 0.5 * 2 ** (attempt - 1))
        assert ceiling / 2 <= wait <= ceiling
    assert sleeper.calls[5:] == [1.0]  # back to the normal poll after recovery
    assert src.failures == 0 and src.total_failures == 5
    assert [(t.symbol, t.price, t.source) for t in ticks[:3]] == [
        ("BTCUSDT", D("60000"), "binance-testnet"),
        ("ETHUSDT", D("3000"), "binance-testnet"),
        ("BNBUSDT", D("600"), "binance-testnet"),
    ]
    assert ticks[0].ts == ticks[2].ts and ticks[3].ts == ticks[0].ts + timedelta(seconds=1)
    messages = [r.getMessage() for r in caplog.records]
    assert sum("retrying" in m for m in messages) == 5 and any("recovered after 5" in m for m in messages)
    # the adapter said what each failure was (a 504 is a timeout); no library exception reached the source
    retries = [m for m in messages if "retrying" in m]
    assert sum("(unavailable, ambiguous" in m for m in retries) == 4
    assert sum("(timeout, ambiguous" in m for m in retries) == 1


async def test_backoff_is_capped_under_a_long_outage(binance_double: BinanceDouble) -> None:
    clock = ManualClock()
    sleeper = FakeSleeper(clock)
    binance_double.fail_next("GET", TICKERS, 503, times=40)
    src = ExchangeTickerSource(
        "binance",
        ["BTCUSDT"],
        clock,
        double_sessions(binance_double),
        backoff=Backoff(base=1, cap=30),
        sleep=sleeper,
        rng=random.Random(0),
    )
    (tick,) = await take(src, 1)
    assert len(sleeper.calls) == 40 and max(sleeper.calls) <= 30 and min(sleeper.calls[10:]) >= 15
    assert tick.price == 60000


def test_price_is_the_last_trade_else_the_midpoint() -> None:
    assert _price_of(Ticker("BNBUSDT", D("10"), D("9"), D("11"))) == D("10")
    assert _price_of(Ticker("BNBUSDT", None, D("9"), D("11"))) == D("10")
    assert _price_of(Ticker("BNBUSDT", None, None, D("11"))) is None


def test_backoff_validation() -> None:
    with pytest.raises(ValueError):
        Backoff(base=0)
    with pytest.raises(ValueError):
        Backoff().ceiling(0)
    assert Backoff(base=1, cap=8).ceiling(10_000) == 8


# --- factory ---------------------------------------------------------------------------------


async def test_build_source_specs(tmp_path: Path, binance_double: BinanceDouble) -> None:
    clock = ManualClock()
    assert isinstance(build_source("synthetic", symbols=SYMBOLS, clock=clock), SyntheticSource)
    binance_double.state.set_price("BTCUSDT", "61000")
    src = build_source(
        "binance-testnet",
        symbols=["BTCUSDT"],
        clock=clock,
        binance_testnet_url=binance_double.url,
        sleep=FakeSleeper(clock),
    )
    assert isinstance(src, ExchangeTickerSource) and src.name == "binance-testnet"
    assert [t.price for t in await take(src, 1)] == [D(61000)]
    mainnet = build_source("binance", symbols=["BTCUSDT"], clock=clock)  # built without any I/O
    assert isinstance(mainnet, ExchangeTickerSource) and mainnet.name == "binance"
    assert isinstance(build_source(f"replay:{tmp_path / 'x.csv'}", symbols=[], clock=clock), ReplaySource)
    for bad in ("kraken", "replay:"):
        with pytest.raises(ValueError):
            build_source(bad, symbols=SYMBOLS, clock=clock)


async def test_testnet_factory_takes_a_url_with_or_without_the_rest_prefix(
    binance_double: BinanceDouble,
) -> None:
    for root in (binance_double.url, binance_double.url + "/", binance_double.url + "/api/"):
        session = binance_client_factory(testnet=True, testnet_url=root)()
        try:
            tickers = await session.tickers(["BTCUSDT", "NOPEUSDT"])
        finally:
            await session.close()
        assert list(tickers) == ["BTCUSDT"] and tickers["BTCUSDT"].last == D("60000")
