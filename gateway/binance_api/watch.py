"""Waiting for an order to change without polling the database: Binance answers a new order's RESULT/FULL and
a cancel with the outcome, our book answers at acceptance, so the adapter waits for the worker's
``ORDER_UPDATE`` on the bus (the private stream the events service tails: the in-process bus of
``tradebridge up``, Redis Streams when distributed).

One tailer per process reads the private stream while any request is waiting (one blocking read for all of
them) and wakes the requests whose order changed. A request ``hold``s the watch *before* its write, so the
tailer's position is never past the change it waits for; it then ``expect``s its order after the commit, and
an update the tailer read in between is found among the last ones it keeps. If the bus fails, waiters are
woken at once and answer with the order as the database has it, as they do after the timeout."""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from typing import Any

import structlog

from shared.bus import Bus
from shared.retry import reraise_if_cancelled
from shared.streams import PRIVATE_EVENTS

log = structlog.get_logger(__name__)

RECENT = 4096  # the last orders' updates the tailer keeps, for requests that expect them after it read them


class Expectation:
    """A request waiting for its order to leave ``pending`` at a version above ``after_version``."""

    __slots__ = ("_done", "after_version", "order_id", "pending", "update")

    def __init__(self, order_id: str, pending: frozenset[str], after_version: int) -> None:
        self.order_id = order_id
        self.pending = pending
        self.after_version = after_version
        self.update: Mapping[str, Any] | None = None  # the ORDER_UPDATE data that ended the wait
        self._done = asyncio.Event()

    def saw(self, data: Mapping[str, Any]) -> None:
        """An ORDER_UPDATE of the order: done once it shows a status past ``pending``; an older update still
        in the stream (a NEW before this cancel, say) is not the change awaited."""
        version = data.get("version")
        if data.get("status") not in self.pending and (
            not isinstance(version, int) or version > self.after_version
        ):
            self.update = data
            self._done.set()

    def give_up(self) -> None:
        self._done.set()

    async def wait(self, timeout_s: float) -> Mapping[str, Any] | None:
        """The order's update once seen; None after ``timeout_s`` or if the watch gave up."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done.wait(), timeout_s)
        return self.update


class OrderWatch:
    """The process's tailer of ``ORDER_UPDATE``s for the requests that wait on their order."""

    def __init__(self, bus: Bus, *, block_ms: int = 500) -> None:
        self.bus = bus
        self.block_ms = block_ms
        self._holders = 0
        self._expected: dict[str, set[Expectation]] = {}
        self._recent: OrderedDict[str, Mapping[str, Any]] = OrderedDict()
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[OrderWatch]:
        """Keep the tailer running (started at the stream's end if it was not) for the block's duration."""
        self._holders += 1
        try:
            if self._task is None:
                self._ready = asyncio.Event()
                self._task = asyncio.create_task(self._tail(self._ready), name="binance-order-watch")
            assert self._ready is not None
            await self._ready.wait()
            yield self
        finally:
            self._holders -= 1

    def expect(self, order_id: str, pending: frozenset[str], after_version: int = 0) -> Expectation:
        """The order's next change past ``pending`` (call it while holding the watch, after the write);
        forgotten once awaited through ``wait``."""
        expectation = Expectation(order_id, pending, after_version)
        self._expected.setdefault(order_id, set()).add(expectation)
        if self._task is None:  # the bus failed: answer from the database at once
            expectation.give_up()
        elif (seen := self._recent.get(order_id)) is not None:
            expectation.saw(seen)
        return expectation

    async def wait(self, expectation: Expectation, timeout_s: float) -> Mapping[str, Any] | None:
        """The ORDER_UPDATE data that ended the wait (the order as the book left it), else None: then the
        caller reads the order."""
        try:
            return await expectation.wait(timeout_s)
        finally:
            waiting = self._expected.get(expectation.order_id)
            if waiting is not None:
                waiting.discard(expectation)
                if not waiting:
                    del self._expected[expectation.order_id]

    async def _tail(self, ready: asyncio.Event) -> None:
        try:
            after = await self.bus.last_id(PRIVATE_EVENTS) or "0-0"
            self._recent.clear()  # a gap: what was kept may be stale
            ready.set()
            while self._holders or self._expected:
                for message in await self.bus.read(
                    {PRIVATE_EVENTS: after}, count=500, block_ms=self.block_ms
                ):
                    after = message.id
                    if message.data.get("type") != "ORDER_UPDATE":
                        continue
                    data = message.data.get("data") or {}
                    order_id = data.get("order_id")
                    if not isinstance(order_id, str):
                        continue
                    self._recent[order_id] = data
                    self._recent.move_to_end(order_id)
                    if len(self._recent) > RECENT:
                        self._recent.popitem(last=False)
                    for expectation in tuple(self._expected.get(order_id, ())):
                        expectation.saw(data)
        except Exception as exc:
            reraise_if_cancelled(exc)
            if self._holders or self._expected:
                log.warning("binance api: order watch stopped; answering from the database", error=str(exc))
        finally:
            self._task = None  # no await since the loop's last check: a new holder starts a new tailer
            ready.set()
            for waiting in self._expected.values():
                for expectation in waiting:
                    expectation.give_up()
