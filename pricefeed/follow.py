"""The loops the price feed's parts share: following bus streams from their end (as they come, or caught up
at the moments a reader acts), and stopping tasks. The feed's runner and the equity snapshots had each their
own copy of both."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence

import structlog

from shared.bus import Bus
from shared.bus.base import BusMessage, BusUnavailable
from shared.retry import reraise_if_cancelled

log = structlog.get_logger(__name__)

UNAVAILABLE_WAIT_S = 1.0  # the bus down: read again after this long


async def follow(
    bus: Bus,
    streams: Sequence[str],
    on_batch: Callable[[list[BusMessage]], Awaitable[None]],
    *,
    count: int = 500,
    block_ms: Callable[[], int] = lambda: 1000,
) -> None:
    """Read ``streams`` from their current end for ever, handing each batch to ``on_batch`` (an empty one when
    a wait of ``block_ms()`` ran out, so a caller can act on time too). A bus that cannot be reached is read
    again after a second, from where the last batch ended. Ends when its task is cancelled even if the read
    lost the cancellation (a shutdown waited for ever on that)."""
    last = dict.fromkeys(streams, "$")
    while True:
        reraise_if_cancelled()
        try:
            msgs = await bus.read(last, count=count, block_ms=max(1, block_ms()))
        except BusUnavailable as exc:
            reraise_if_cancelled(exc)
            await asyncio.sleep(UNAVAILABLE_WAIT_S)
            continue
        for m in msgs:
            last[m.stream] = m.id
        await on_batch(msgs)


class CatchUp:
    """Streams read from where the last read ended, without waiting, whenever the reader is about to act: for
    a reader whose input only matters at its own moments (the price feed's ticks and flushes), a read per
    publication was ~235 bus round trips a second at 100 orders/s (issue #16). ``start`` takes the streams'
    ends; what is published after it is handed to ``on_batch`` in order by the ``catch_up`` that follows."""

    def __init__(
        self,
        bus: Bus,
        streams: Sequence[str],
        on_batch: Callable[[list[BusMessage]], Awaitable[None]],
        *,
        count: int = 500,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.streams = list(streams)
        self.on_batch = on_batch
        self.count = count
        self._clock = clock
        self._last: dict[str, str] = {}
        self._retry_at = float("-inf")  # the bus was unreachable: not read again before this

    async def start(self) -> None:
        """From the streams' current ends ("0-0" for one not created yet: all of it is new); the bus
        unreachable, from their ends once it answers."""
        try:
            self._last = {s: await self.bus.last_id(s) or "0-0" for s in self.streams}
        except BusUnavailable as exc:
            self._unavailable(exc)

    async def catch_up(self) -> None:
        """Hand over everything published since the last read. The bus unreachable: nothing now, and no read
        for `UNAVAILABLE_WAIT_S` (the reader's own work must not wait on it every time)."""
        if self._clock() < self._retry_at:
            return
        if not self._last:
            await self.start()
            return
        while True:
            try:
                msgs = await self.bus.read(self._last, count=self.count, block_ms=None)
            except BusUnavailable as exc:
                self._unavailable(exc)
                return
            for m in msgs:
                self._last[m.stream] = m.id
            if msgs:
                await self.on_batch(msgs)
            if len(msgs) < self.count:
                return

    def _unavailable(self, exc: BusUnavailable) -> None:
        reraise_if_cancelled(exc)
        self._retry_at = self._clock() + UNAVAILABLE_WAIT_S
        log.warning("catching up with the bus failed; reading again later", error=str(exc))


async def stop_tasks(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait for each to end, whatever it ended with."""
    tasks = list(tasks)
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
