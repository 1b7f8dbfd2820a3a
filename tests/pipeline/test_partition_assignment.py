"""Partition assignment: which partition a symbol's commands and book belong to (shared.streams.CommandRouting),
what EXECUTION_PARTITION accepts, how the partitions' published books merge for reconciliation, and the paper
lease between processes (execution.lease) on real PostgreSQL: own partitions at once, another's only once it
stays free, handed back to its own process, freed for real on release."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncEngine

from execution.lease import LeaseConfig, PaperLease
from shared import paper_book
from shared.clock import SystemClock
from shared.db import create_engine
from shared.marketdata import MemoryMarketData
from shared.settings import Settings
from shared.streams import PAPER_COMMANDS, TESTNET_COMMANDS, CommandRouting
from tests.support.eventually import eventually

SYMBOLS = ("BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT")


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8])
def test_every_symbol_has_one_partition_and_the_partitions_are_balanced(n: int) -> None:
    r = CommandRouting(SYMBOLS, n)
    parts = [r.symbols_of(k) for k in range(n)]
    assert sorted(s for p in parts for s in p) == sorted(SYMBOLS)  # each symbol in exactly one
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1
    for k, p in enumerate(parts):
        assert all(r.partition_of(s) == k for s in p)


def test_the_assignment_does_not_depend_on_the_order_symbols_are_configured_in() -> None:
    a, b = CommandRouting(SYMBOLS, 2), CommandRouting(tuple(reversed(SYMBOLS)), 2)
    assert all(a.partition_of(s) == b.partition_of(s) for s in SYMBOLS)
    # an unconfigured symbol still has a stable partition (a stale command is routed, never lost)
    assert a.partition_of("DOGEUSDT") == b.partition_of("DOGEUSDT") in (0, 1)


def test_streams_one_partition_keeps_the_historical_name_and_testnet_is_never_partitioned() -> None:
    one, two = CommandRouting(SYMBOLS, 1), CommandRouting(SYMBOLS, 2)
    assert {one.stream("paper", s) for s in SYMBOLS} == {PAPER_COMMANDS}
    assert {two.stream("paper", s) for s in SYMBOLS} == {f"{PAPER_COMMANDS}.0of2", f"{PAPER_COMMANDS}.1of2"}
    # the count is in the name: processes configured with 2 and 3 partitions never share a stream
    assert not {two.paper_stream(k) for k in range(2)} & {
        CommandRouting(SYMBOLS, 3).paper_stream(k) for k in range(3)
    }
    assert {two.stream("testnet", s) for s in SYMBOLS} == {TESTNET_COMMANDS}


def test_settings_partitions() -> None:
    s = Settings(_env_file=None, EXECUTION_PARTITIONS=3, EXECUTION_PARTITION="2, 0")
    assert s.execution_partition == {0, 2}
    assert s.command_routing.partitions == 3
    assert Settings(_env_file=None, EXECUTION_PARTITIONS=3).execution_partition == {0, 1, 2}
    for bad in ("3", "x", "-1"):
        with pytest.raises(ValidationError, match="EXECUTION_PARTITION"):
            Settings(_env_file=None, EXECUTION_PARTITIONS=3, EXECUTION_PARTITION=bad)


def _snapshot(writer: str, taken_at: datetime, order_id: str, symbol: str) -> paper_book.BookSnapshot:
    entry = paper_book.BookEntry(
        order_id, "u1", symbol, "BUY", Decimal("1"), Decimal("10"), "USDT", Decimal("10")
    )
    return paper_book.BookSnapshot(1, taken_at, writer, [entry])


async def test_the_partitions_books_merge_as_old_as_the_oldest_and_a_missing_one_is_named() -> None:
    store = MemoryMarketData()
    now = datetime.now(UTC)
    await paper_book.publish(store, _snapshot("a", now, "o1", "ETHUSDT"), key=paper_book.key(0, 2))
    assert await paper_book.latest(store, partitions=2) == (
        "no execution worker has published its paper book of partition 1of2"
    )
    await paper_book.publish(store, _snapshot("b", now - timedelta(seconds=3), "o2", "BTCUSDT"), key="1of2")
    merged = await paper_book.latest(store, partitions=2)
    assert isinstance(merged, paper_book.BookSnapshot)
    assert {e.order_id for e in merged.orders} == {"o1", "o2"}
    assert merged.taken_at == now - timedelta(seconds=3) and merged.writer == "b (partition 1of2)"


# -- the lease, on PostgreSQL ----------------------------------------------------------------------------------


@pytest.fixture
async def engines(pg_url: str) -> AsyncIterator[Callable[[], AsyncEngine]]:
    """An engine per "process": each lease its own pool, as two execution processes have."""
    made: list[AsyncEngine] = []

    def make() -> AsyncEngine:
        made.append(create_engine(pg_url))
        return made[-1]

    yield make
    for e in made:
        await e.dispose()


def _lease(engine: AsyncEngine, store: MemoryMarketData, holder: str, *, own: bool) -> PaperLease:
    config = LeaseConfig(1, 2, ("BTCUSDT",), holder, own=own, poll_s=0.05, takeover_after_s=0.5)
    return PaperLease(config, engine, store, SystemClock(), sqlite=False)


async def test_a_partition_goes_to_its_own_process_first_then_to_another_once_it_stays_free(
    engines: Callable[[], AsyncEngine],
) -> None:
    store = MemoryMarketData()  # the claims' store, shared by the two "processes"
    own, other = _lease(engines(), store, "own", own=True), _lease(engines(), store, "other", own=False)
    stop = asyncio.Event()
    try:
        assert await own.acquire(stop)
        waiting = asyncio.create_task(other.acquire(stop))
        await asyncio.sleep(1.0)  # twice the takeover delay: held all along, so never taken
        assert not waiting.done() and not other.held
        await own.release()  # as when its process dies: the locks go with it
        started = asyncio.get_running_loop().time()
        assert await asyncio.wait_for(waiting, timeout=10)
        assert asyncio.get_running_loop().time() - started >= 0.5  # seen free for the takeover delay first
        assert await other.keep()
        # Its own process is back: it claims the partition; the other hands it back at its next check.
        back = asyncio.create_task(own.acquire(stop))
        await eventually(_handed_back(other), timeout=10)
        assert await asyncio.wait_for(back, timeout=10) and own.held
    finally:
        stop.set()
        await own.release()
        await other.release()


def _handed_back(lease: PaperLease) -> Callable[[], Awaitable[bool]]:
    async def probe() -> bool:
        return not await lease.keep()

    return probe


async def test_a_released_lease_is_free_at_once_even_though_its_connection_returns_to_the_pool(
    engines: Callable[[], AsyncEngine],
) -> None:
    """Advisory locks belong to the session, not to the pooled connection object: a release that only
    closed it would keep the partition locked by a connection idle in the pool."""
    store = MemoryMarketData()
    first, second = _lease(engines(), store, "first", own=True), _lease(engines(), store, "second", own=True)
    stop = asyncio.Event()
    try:
        assert await first.acquire(stop)
        await first.release()
        assert await asyncio.wait_for(second.acquire(stop), timeout=2)
    finally:
        stop.set()
        await first.release()
        await second.release()
