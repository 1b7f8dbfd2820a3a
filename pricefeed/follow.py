"""The loops the price feed's parts share: following bus streams from their end, and stopping tasks. The
feed's runner and the equity snapshots had each their own copy of both."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Sequence

from shared.bus import Bus
from shared.bus.base import BusMessage, BusUnavailable
from shared.retry import reraise_if_cancelled

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


async def stop_tasks(tasks: Iterable[asyncio.Task[None]]) -> None:
    """Cancel ``tasks`` and wait for each to end, whatever it ended with."""
    tasks = list(tasks)
    for t in tasks:
        t.cancel()
    for t in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await t
