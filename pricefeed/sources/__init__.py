"""Price sources behind one Protocol, chosen by the `PRICEFEED_SOURCE` setting."""

from __future__ import annotations

import random
from collections.abc import Sequence

from shared.clock import Clock

from .base import PriceSource, Sleeper, real_sleep
from .exchange import (
    DEFAULT_TESTNET_URL,
    ExchangeTickerSource,
    TickerClient,
    TickerClientFactory,
    binance_client_factory,
)
from .replay import ReplayFormatError, ReplaySource, read_ticks
from .synthetic import SyntheticSource

__all__ = [
    "DEFAULT_TESTNET_URL",
    "ExchangeTickerSource",
    "PriceSource",
    "ReplayFormatError",
    "ReplaySource",
    "Sleeper",
    "SyntheticSource",
    "TickerClient",
    "TickerClientFactory",
    "binance_client_factory",
    "build_source",
    "read_ticks",
]


def build_source(
    spec: str,
    *,
    symbols: Sequence[str],
    clock: Clock,
    ccxt_factory: TickerClientFactory | None = None,
    seed: int = 0,
    binance_testnet_url: str = DEFAULT_TESTNET_URL,
    poll_interval: float = 1.0,
    synthetic_interval: float = 0.25,
    replay_speed: float = 0.0,
    replay_retime: bool = False,
    sleep: Sleeper = real_sleep,
    rng: random.Random | None = None,
) -> PriceSource:
    """`synthetic` | `binance-testnet` | `binance` | `replay:PATH` -> a source.

    `ccxt_factory` overrides the ccxt client (tests point it at a local server); without it
    the testnet client is rooted at `binance_testnet_url`, which callers take from `Settings`
    (BINANCE_TESTNET_URL there, `.env` included): the environment is never read here.
    """
    spec = spec.strip()
    kind = spec.lower()
    if kind == "synthetic":
        return SyntheticSource(symbols, clock, seed=seed, interval=synthetic_interval, sleep=sleep)
    if kind in {"binance", "binance-testnet"}:
        testnet = kind == "binance-testnet"
        factory = ccxt_factory or binance_client_factory(
            testnet=testnet,
            testnet_url=binance_testnet_url,
        )
        return ExchangeTickerSource(
            kind,
            symbols,
            clock,
            factory,
            poll_interval=poll_interval,
            sleep=sleep,
            rng=rng if rng is not None else random.Random(seed),
        )
    if kind.startswith("replay:"):
        path = spec[len("replay:") :]
        if not path:
            raise ValueError("replay source needs a path: replay:PATH")
        return ReplaySource(path, clock, speed=replay_speed, retime=replay_retime, sleep=sleep)
    raise ValueError(
        f"unknown PRICEFEED_SOURCE {spec!r}: use synthetic, binance-testnet, binance or replay:PATH"
    )
