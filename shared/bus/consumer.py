"""One consumer of a group, reading in the order a restart needs: its own pending entries first, then
entries a dead consumer left idle, then new ones. Written once for every group consumer (the execution
worker's paper and testnet loops)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator

from shared.bus.base import Bus, BusMessage


class GroupConsumer:
    """``next_batch()`` yields, in turn:

    1. this consumer's own unacked entries (``pending_own``): what it read before a crash, a restart or a
       failed batch, finished before anything new so a command is never overtaken by a later one;
    2. once those are drained, entries idle for ``claim_idle_ms`` in other consumers (``claim_stale``: a
       dead worker's), looked for at most every ``claim_every_s`` (0: every batch);
    3. otherwise new entries (``read_group``), waiting up to ``block_ms``.

    After an error (the bus went away, a batch failed and was not acked) call ``rewind()``: the entries
    read are still pending for this consumer and are read again first.

    ``handled(ids)`` acks entries with the next read of new ones, in its round trip (a separate XACK was one
    more round trip and wake-up per batch, issue #16); before reading pending or stale entries, and on
    ``flush()``, they are acked on their own. An ack lost with the process only redelivers what was handled,
    which its handler must (and the worker's does) recognise as done."""

    __slots__ = (
        "_acks",
        "_clock",
        "_last_claim",
        "block_ms",
        "bus",
        "claim_every_s",
        "claim_idle_ms",
        "count",
        "draining",
        "group",
        "name",
        "stream",
    )

    def __init__(
        self,
        bus: Bus,
        stream: str,
        group: str,
        name: str,
        *,
        count: int,
        block_ms: int,
        claim_idle_ms: int,
        claim_every_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.bus = bus
        self.stream = stream
        self.group = group
        self.name = name
        self.count = count
        self.block_ms = block_ms
        self.claim_idle_ms = claim_idle_ms
        self.claim_every_s = claim_every_s
        self._clock = clock
        self._last_claim = clock() if claim_every_s > 0 else float("-inf")
        self.draining = True  # reading our own pending entries
        self._acks: list[str] = []  # handled, acked with the next read

    def rewind(self) -> None:
        """Read our own pending entries again first (after an error left some unacked)."""
        self.draining = True

    def handled(self, ids: list[str]) -> None:
        """Entries handled: acked with the next read of new entries (or by ``flush``)."""
        self._acks += ids

    @contextlib.contextmanager
    def _taking_acks(self) -> Iterator[list[str]]:
        """The handled entries, taken for one bus call; put back if it fails (not known to have reached the
        bus: acked again by a later call, acks are idempotent)."""
        acks, self._acks = self._acks, []
        try:
            yield acks
        except BaseException:
            self._acks[:0] = acks
            raise

    async def flush(self) -> None:
        """Ack what was handled now."""
        if not self._acks:
            return
        with self._taking_acks() as acks:
            await self.bus.ack(self.stream, self.group, acks)

    async def next_batch(self) -> list[BusMessage]:
        """The next entries to handle (possibly none); pass them to ``handled`` (or ack them) once handled."""
        if self.draining:
            await self.flush()  # or the handled entries would be read again as pending
            msgs = await self.bus.pending_own(self.stream, self.group, self.name, count=self.count)
            self.draining = bool(msgs)
            return msgs
        now = self._clock()
        if now - self._last_claim >= self.claim_every_s:
            self._last_claim = now
            await self.flush()
            claimed = await self.bus.claim_stale(
                self.stream, self.group, self.name, min_idle_ms=self.claim_idle_ms, count=self.count
            )
            if claimed:
                return claimed
        with self._taking_acks() as acks:
            return await self.bus.read_group(
                self.stream, self.group, self.name, count=self.count, block_ms=self.block_ms, ack=acks
            )


__all__ = ["GroupConsumer"]
