"""The execution worker's paper loop ends when cancelled while it waits for a first price to quote around,
even when the cancellation arrives with a price. It waited with Python 3.11's `asyncio.wait_for`, which then
returns normally: the wait went on until its deadline (`price_wait_s`, 30 s) and the paper loop after it, for
as long as nothing set the worker's stop flag. Through the app as `create_app` builds it (SQLite, in-process
bus, market maker on, no price feed: the worker waits for a price)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tests.support.api import make_settings, running_api
from tests.support.eventually import eventually


async def test_the_paper_loop_ends_when_cancelled_as_a_price_arrives(tmp_path: Path) -> None:
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}", paper_market_maker="on")
    async with running_api(settings, migrate=True, services=("execution",)) as api:
        worker = api.system.worker
        await asyncio.wait_for(worker.ready.wait(), 30)
        [paper] = [t for t in worker._tasks if t.get_name() == "paper-loop"]
        price = worker._price_event
        # waiting for a price (none comes): someone waits on the event
        await eventually(lambda: bool(price._waiters), timeout=10, message="the worker waits for a price")
        price.set()  # a price arrives ...
        paper.cancel()  # ... and the cancellation with it
        done, _ = await asyncio.wait({paper}, timeout=3)
        assert done, "the paper loop carried on after its cancellation"
        assert paper.cancelled()


async def test_the_paper_loop_ends_when_a_cancellation_comes_back_as_another_error(tmp_path: Path) -> None:
    """stop() cancels the paper loop mid-batch; the database layer may raise its own error instead (the statement's
    connection is invalidated: PendingRollbackError). The loop took that for a failed batch, waited, and rebuilt
    its books from the database before looking at its stop flag: seconds of shutdown. Here the batch turns the
    cancellation into a RuntimeError as such a library does; the stop flag is not set, so only the cancellation
    can end the loop."""
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}")
    async with running_api(settings, migrate=True, services=("execution",)) as api:
        worker = api.system.worker
        await asyncio.wait_for(worker.ready.wait(), 30)
        [paper] = [t for t in worker._tasks if t.get_name() == "paper-loop"]
        in_batch = asyncio.Event()

        async def batch_in_a_library(msgs: object) -> None:
            in_batch.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError as exc:
                raise RuntimeError("the library's own error") from exc

        worker.handle_paper = batch_in_a_library
        order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001", "price": "20000"}
        r = await api.client.post("/api/orders", json=order, headers=await api.user("cancel@example.com"))
        assert r.status_code == 202, r.text
        await asyncio.wait_for(in_batch.wait(), 10)
        paper.cancel()
        done, _ = await asyncio.wait({paper}, timeout=3)
        assert done, "the paper loop carried on after its cancellation"
        assert paper.cancelled()
        del worker.handle_paper  # the real one again for the shutdown
