"""The testnet market rules' retries back off while the exchange cannot be read (issue #16): each try builds a
ccxt client (an SSL context, a DNS lookup), and an offline `tradebridge up` tried every 30 s for ever."""

from __future__ import annotations

from gateway.services.testnet_markets import READ_BOUND, RETRY_S
from gateway.services.testnet_markets import TestnetMarkets as Markets
from shared.clock import SystemClock
from shared.exchanges import get_adapter


def _markets(refresh_s: float) -> Markets:
    return Markets(
        get_adapter("binance-testnet", base_url="http://127.0.0.1:9"), {}, SystemClock(), refresh_s=refresh_s
    )


def test_failed_reads_are_retried_less_and_less_up_to_the_refresh() -> None:
    waits = [_markets(600).retry_after(n) for n in range(1, 8)]
    assert waits == [RETRY_S, 2 * RETRY_S, 4 * RETRY_S, 8 * RETRY_S, 16 * RETRY_S, 600, 600]


def test_a_refresh_shorter_than_the_retry_is_the_wait() -> None:
    assert [_markets(0.5).retry_after(n) for n in (1, 2, 10)] == [0.5, 0.5, 0.5]


async def test_a_read_from_an_exchange_that_never_answers_fails_within_its_bound() -> None:
    """A server that accepts the connection and says nothing: the read fails, the reason is kept and the
    configured rules stay, within the read's bound (READ_BOUND request timeouts), not never."""
    import asyncio
    import time

    held: list[asyncio.StreamWriter] = []

    async def silent(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # never answered

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    markets = Markets(
        get_adapter("binance-testnet", base_url=f"http://127.0.0.1:{port}"),
        {},
        SystemClock(),
        refresh_s=600,
        timeout_ms=300,
    )
    try:
        started = time.monotonic()
        assert await asyncio.wait_for(markets.refresh(), 10) is False
        assert time.monotonic() - started < READ_BOUND * 0.3 + 1.0
        assert markets.last_error and markets.source == "configured"
    finally:
        for w in held:
            w.close()
        server.close()
        await server.wait_closed()
