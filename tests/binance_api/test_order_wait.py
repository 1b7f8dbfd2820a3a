"""What a Binance call costs the database, counted per request (its X-Request-ID, the correlation id every
statement of the request runs under): a look-up by orderId or clientOrderId reads the key and the order in
one read, one statement each; a new order's FULL answer and a cancel wait for the order's own update on the
bus (the in-process bus of `tradebridge up`, Redis Streams when distributed) and answer with what it
shows (reading the order once more only for fills), instead of polling the order. ccxt unmodified against uvicorn-served tradebridge up, SQLite and PostgreSQL."""

from __future__ import annotations

import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from asgi_correlation_id import correlation_id
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.binance_api.conftest import Served, serve

SYMBOL = "BTC/USDT"
READS_ORDERS = re.compile(r"^\s*SELECT\b.*\bFROM orders\b", re.IGNORECASE | re.DOTALL)


@contextmanager
def statements(engine: AsyncEngine) -> Iterator[dict[str, list[str]]]:
    """Every statement (and COMMIT) the app sends while inside, by the request that sent it."""
    seen: dict[str, list[str]] = defaultdict(list)

    def on_execute(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if rid := correlation_id.get():
            seen[rid].append(statement)

    def on_commit(conn: Any) -> None:
        if rid := correlation_id.get():
            seen[rid].append("COMMIT")

    sync = engine.sync_engine
    event.listen(sync, "before_cursor_execute", on_execute)
    event.listen(sync, "commit", on_commit)
    try:
        yield seen
    finally:
        event.remove(sync, "before_cursor_execute", on_execute)
        event.remove(sync, "commit", on_commit)


def tagged(exchange: Any) -> str:
    """The request id of the exchange's next calls."""
    rid = str(uuid.uuid4())
    exchange.headers = {"X-Request-ID": rid}
    return rid


def selects(sent: list[str]) -> list[str]:
    return [s for s in sent if s.lstrip().upper().startswith("SELECT")]


def after_commit(sent: list[str]) -> list[str]:
    assert "COMMIT" in sent, sent
    return sent[len(sent) - sent[::-1].index("COMMIT") :]


async def _trader(tb: Served, email: str) -> Any:
    key = await tb.api_key(await tb.user(email))
    exchange = tb.ccxt(key)
    await exchange.load_markets()
    return exchange


async def test_lookups_read_key_and_order_in_one_read(tb: Served) -> None:
    ex = await _trader(tb, "lookup@example.com")
    try:
        resting = await ex.create_order(SYMBOL, "limit", "buy", 0.001, 20000)
        with statements(tb.parts.engine) as seen:
            by_id = tagged(ex)
            assert (await ex.fetch_order(resting["id"], SYMBOL))["status"] == "open"
            by_client_id = tagged(ex)
            found = await ex.fetch_order(None, SYMBOL, {"origClientOrderId": resting["clientOrderId"]})
            assert found["id"] == resting["id"]
            open_orders = tagged(ex)
            assert [o["id"] for o in await ex.fetch_open_orders(SYMBOL)] == [resting["id"]]
        # the key, then the order with its orderId: one statement each, no look-up of the id apart
        for rid in (by_id, by_client_id, open_orders):
            assert len(selects(seen[rid])) == 2, seen[rid]
            assert seen[rid].count("BEGIN") <= 1, seen[rid]  # one read transaction (SQLite's own BEGIN)
    finally:
        await ex.close()


@pytest.fixture
async def tb_redis(pg_url: str, redis_url: str, redis_prefix: str) -> AsyncIterator[Served]:
    """tradebridge up distributed: PostgreSQL, and Redis Streams for its bus."""
    async with serve(pg_url, redis_url=redis_url, redis_prefix=redis_prefix) as served:
        yield served


async def test_waits_on_the_in_process_bus(tb_sqlite: Served) -> None:
    assert type(tb_sqlite.parts.bus).__name__ == "MemoryBus"
    await _full_answer_and_cancel_wait_for_the_orders_update(tb_sqlite)


async def test_waits_on_redis_streams(tb_redis: Served) -> None:
    assert type(tb_redis.parts.bus).__name__ != "MemoryBus"
    await _full_answer_and_cancel_wait_for_the_orders_update(tb_redis)


async def _full_answer_and_cancel_wait_for_the_orders_update(tb_bus: Served) -> None:
    ex = await _trader(tb_bus, "waiter@example.com")
    try:
        with statements(tb_bus.parts.engine) as seen:
            market = tagged(ex)
            bought = await ex.create_order(
                SYMBOL, "market", "buy", 0.001
            )  # FULL: the fills are in the answer
            limit = tagged(ex)
            resting = await ex.create_order(
                SYMBOL, "limit", "buy", 0.001, 20000
            )  # nothing filled: the update is the answer
            cancel = tagged(ex)
            canceled = await ex.cancel_order(resting["id"], SYMBOL)
        assert (bought["status"], bought["filled"], len(bought["trades"])) == ("closed", 0.001, 1)
        assert canceled["status"] == "canceled"
        # after its write the request read the order at most once (with the fills of the FULL answer): it
        # waited on the bus, it did not poll
        for rid, most in ((market, 1), (limit, 0), (cancel, 0)):
            reads = [s for s in after_commit(seen[rid]) if READS_ORDERS.match(s)]
            assert len(reads) == most, "\n".join(x[:90] for x in seen[rid])
    finally:
        await ex.close()
