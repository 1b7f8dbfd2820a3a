"""The testnet market client's rate limiter waits without spinning (issue #16). ccxt's leaky bucket looks at
its queue again every `delay` while a request waits for tokens: 1 ms by default, so the price feed's REST
fallbacks queued behind exchangeInfo (weight 20: a second of tokens) woke the event loop ~1,600 times a
second whenever the testnet was unreachable. The real client, no network: `throttle` is the limiter alone."""

from __future__ import annotations

import resource
import time

from shared.exchanges.binance_market import MARKET_THROTTLE_POLL_S, make_market_client


def _sleeps() -> int:
    """Times this thread gave up the CPU to wait (each wait of the event loop for a timer is one)."""
    return resource.getrusage(resource.RUSAGE_THREAD).ru_nvcsw


async def test_a_request_waiting_for_tokens_wakes_the_loop_seldom() -> None:
    client = make_market_client("http://127.0.0.1:9", "ws://127.0.0.1:9")
    try:
        await client.throttle(6)  # taken at once; the next request waits for 6 x rateLimit (300 ms) of tokens
        before, t0 = _sleeps(), time.monotonic()
        await client.throttle(1)
        waited, woke = time.monotonic() - t0, _sleeps() - before
    finally:
        await client.close()
    assert waited >= 0.2, waited  # the rate limit is still on: the request did wait for its tokens
    # At ccxt's default 1 ms this is ~300 wake-ups; at MARKET_THROTTLE_POLL_S about waited / 25 ms = 12.
    assert woke <= 3 * waited / MARKET_THROTTLE_POLL_S + 10, (woke, waited)
