"""In-process bus for the embedded single process (`tradebridge up` without REDIS_URL).

It mirrors Redis Streams semantics closely (ids, consumer groups, pending entries, claims, fan-out reads,
retention, mirror_to) so that services tested against it behave the same against Redis. It lives in one
event loop; blocked readers are woken by the publish itself (futures), never by polling.
Payloads are stored as JSON bytes and decoded per delivery, so readers get independent copies and exactly
the types a Redis round trip would give them.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from sortedcontainers import SortedDict

from shared.bus.base import (
    MIRROR_ONCE_S,
    BusMessage,
    BusUnavailable,
    Retention,
    block_deadline,
    check_count,
    check_mirror,
    decode_payload,
    encode_payload,
    format_id,
    once_digest,
    parse_id,
)
from shared.clock import Clock, SystemClock, to_ms
from shared.retry import reraise_if_cancelled

__all__ = ["MemoryBus"]

log = logging.getLogger(__name__)

_Id = tuple[int, int]
_Entry = tuple[_Id, bytes]
_entry_id = itemgetter(0)


@dataclass(slots=True)
class _Pending:
    consumer: str
    delivered_at: float
    deliveries: int


@dataclass(slots=True)
class _Group:
    last_delivered: _Id
    pel: SortedDict[_Id, _Pending] = field(default_factory=SortedDict)  # ordered by id, like Redis' PEL


@dataclass(slots=True)
class _Stream:
    entries: list[_Entry] = field(default_factory=list)
    last: _Id = (0, 0)
    groups: dict[str, _Group] = field(default_factory=dict)
    waiters: set[asyncio.Future[None]] = field(default_factory=set)

    def after(self, after: _Id, count: int) -> list[_Entry]:
        i = bisect_right(self.entries, after, key=_entry_id)
        return self.entries[i : i + count]

    def get(self, entry_id: _Id) -> bytes | None:
        i = bisect_right(self.entries, entry_id, key=_entry_id) - 1
        if i >= 0 and self.entries[i][0] == entry_id:
            return self.entries[i][1]
        return None

    def wake(self) -> None:
        for fut in self.waiters:
            if not fut.done():
                fut.set_result(None)
        self.waiters.clear()


class MemoryBus:
    """`Bus` in memory. `maxlen` bounds every stream (approximately, like `MAXLEN ~`), `retention`
    overrides it per stream. `clock` supplies the milliseconds of ids and the idle time of pending entries."""

    def __init__(
        self,
        *,
        maxlen: int | None = 10_000,
        retention: Mapping[str, int | None] | None = None,
        clock: Clock | None = None,
        mirror_once_s: float = MIRROR_ONCE_S,
        mirror_idle_s: float | None = None,
    ) -> None:
        self._retention = Retention(maxlen, retention)
        self._clock: Clock = clock or SystemClock()
        self._streams: dict[str, _Stream] = {}
        # Mirrored entries published lately: digest -> (id, expiry in clock ms), oldest first (MIRROR_ONCE_S).
        self._once: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._once_ms = int(mirror_once_s * 1000)
        # Mirror streams (users' private events) -> when they expire, least recently written first: as Redis's
        # PEXPIRE on each mirrored publish, a mirror with no entry for `mirror_idle_s` is deleted.
        self._idle_ms = None if mirror_idle_s is None else max(1, int(mirror_idle_s * 1000))
        self._mirror_expiry: OrderedDict[str, int] = OrderedDict()
        self._closed = False

    # -- publishing -----------------------------------------------------------------------------------------

    async def publish(self, stream: str, data: Mapping[str, Any], *, mirror_to: str | None = None) -> str:
        self._check_open()
        return self._publish_encoded(stream, encode_payload(data), mirror_to)

    def _publish_encoded(self, stream: str, payload: bytes, mirror_to: str | None) -> str:
        names = [stream] if mirror_to is None else [stream, check_mirror(stream, mirror_to)]
        digest = None
        if mirror_to is not None:  # a private event is appended once (see MIRROR_ONCE_S)
            now = to_ms(self._clock.now())
            self._expire_mirrors(now)
            while self._once and next(iter(self._once.values()))[1] <= now:
                self._once.popitem(last=False)
            digest = once_digest(stream, mirror_to, payload)
            prior = self._once.get(digest)
            if prior is not None:
                return prior[0]
        targets = [(name, self._stream(name)) for name in names]
        # The id must be fresh in both streams, so it is derived from the larger of their last ids.
        new_id = self._next_id(max(s.last for _, s in targets))
        for name, s in targets:
            self._append(name, s, new_id, payload)
        if digest is not None:
            now = to_ms(self._clock.now())
            self._once[digest] = (format_id(new_id), now + self._once_ms)
            if self._idle_ms is not None and mirror_to is not None:
                self._mirror_expiry[mirror_to] = now + self._idle_ms
                self._mirror_expiry.move_to_end(mirror_to)
        return format_id(new_id)

    def _expire_mirrors(self, now: int) -> None:
        while self._mirror_expiry and next(iter(self._mirror_expiry.values())) <= now:
            name, _ = self._mirror_expiry.popitem(last=False)
            s = self._streams.pop(name, None)
            if s is not None:
                s.wake()

    async def publish_many(
        self, items: Sequence[tuple[str, Mapping[str, Any]]], *, mirrors: Sequence[str | None] | None = None
    ) -> list[str]:
        self._check_open()
        if mirrors is not None and len(mirrors) != len(items):
            raise ValueError("publish_many: one mirror (or None) per item")
        for i, (name, _) in enumerate(items):
            if mirrors is not None and mirrors[i] is not None:
                check_mirror(name, mirrors[i])  # type: ignore[arg-type]
        encoded = [(name, encode_payload(data)) for name, data in items]  # all-or-nothing on bad payloads
        return [
            self._publish_encoded(name, payload, None if mirrors is None else mirrors[i])
            for i, (name, payload) in enumerate(encoded)
        ]

    def _next_id(self, last: _Id) -> _Id:
        ms = to_ms(self._clock.now())
        # A clock that stalls or steps back must not break monotonic ids (Redis does the same).
        return (ms, 0) if ms > last[0] else (last[0], last[1] + 1)

    def _append(self, name: str, s: _Stream, new_id: _Id, payload: bytes) -> None:
        s.entries.append((new_id, payload))
        s.last = new_id
        maxlen = self._retention.maxlen_for(name)
        if maxlen is not None and len(s.entries) > maxlen + max(1, maxlen // 8):
            # Trim in batches (like `MAXLEN ~`) so a long stream is not memmoved on every publish.
            del s.entries[: len(s.entries) - maxlen]
        s.wake()

    # -- consumer groups ------------------------------------------------------------------------------------

    async def ensure_group(self, stream: str, group: str, *, start: str = "0") -> None:
        self._check_open()
        s = self._stream(stream)
        if group in s.groups:
            return
        s.groups[group] = _Group(last_delivered=s.last if start == "$" else parse_id(start))

    async def read_group(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block_ms: int | None = 1000,
        ack: Sequence[str] = (),
    ) -> list[BusMessage]:
        self._check_open()
        check_count(count)
        if ack:
            await self.ack(stream, group, ack)
        s = self._stream(stream)
        deadline = block_deadline(block_ms)
        while True:
            g = self._group(stream, s, group)
            batch = s.after(g.last_delivered, count)
            if batch:
                now = self._clock.monotonic()
                for entry_id, _ in batch:
                    g.pel[entry_id] = _Pending(consumer, now, 1)
                g.last_delivered = batch[-1][0]
                return [BusMessage(stream, format_id(i), decode_payload(p), 1) for i, p in batch]
            if not await self._wait([s], deadline):
                return []

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> None:
        self._check_open()
        parsed = [parse_id(i) for i in ids]
        s = self._streams.get(stream)
        g = s.groups.get(group) if s else None
        if g is None:
            return
        for entry_id in parsed:
            g.pel.pop(entry_id, None)

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 100
    ) -> list[BusMessage]:
        self._check_open()
        check_count(count)
        s = self._stream(stream)
        g = self._group(stream, s, group)
        now = self._clock.monotonic()
        threshold = min_idle_ms / 1000.0
        return self._redeliver(
            stream,
            s,
            g,
            ((i, p) for i, p in g.pel.items() if now - p.delivered_at >= threshold),
            consumer,
            count,
        )

    async def pending_own(
        self, stream: str, group: str, consumer: str, *, count: int = 100
    ) -> list[BusMessage]:
        self._check_open()
        check_count(count)
        s = self._stream(stream)
        g = self._group(stream, s, group)
        return self._redeliver(
            stream, s, g, ((i, p) for i, p in g.pel.items() if p.consumer == consumer), consumer, count
        )

    def _redeliver(
        self,
        stream: str,
        s: _Stream,
        g: _Group,
        candidates: Iterable[tuple[_Id, _Pending]],
        consumer: str,
        count: int,
    ) -> list[BusMessage]:
        now = self._clock.monotonic()
        out: list[BusMessage] = []
        trimmed: list[_Id] = []
        for entry_id, pending in candidates:
            payload = s.get(entry_id)
            if payload is None:
                trimmed.append(entry_id)
                continue
            pending.consumer = consumer
            pending.delivered_at = now
            pending.deliveries += 1
            out.append(BusMessage(stream, format_id(entry_id), decode_payload(payload), pending.deliveries))
            if len(out) >= count:
                break
        for entry_id in trimmed:
            # Trimmed by retention before anyone acked it: nothing left to process.
            log.warning(
                "bus: pending entry %s on %s trimmed before ack; dropped", format_id(entry_id), stream
            )
            del g.pel[entry_id]
        return out

    def _group(self, name: str, s: _Stream, group: str) -> _Group:
        g = s.groups.get(group)
        if g is None:
            # Same behaviour as the Redis adapter after a data-losing restart: recreate from the start.
            log.warning("bus: consumer group %s on %s missing; recreating", group, name)
            g = s.groups[group] = _Group(last_delivered=(0, 0))
        return g

    # -- plain reads ----------------------------------------------------------------------------------------

    async def read(
        self, streams: Mapping[str, str], *, count: int = 100, block_ms: int | None = 1000
    ) -> list[BusMessage]:
        self._check_open()
        check_count(count)
        positions: dict[str, tuple[_Stream, _Id]] = {}
        for name, after in streams.items():
            s = self._stream(name)
            positions[name] = (s, s.last if after == "$" else parse_id(after))
        deadline = block_deadline(block_ms)
        while True:
            out = [
                BusMessage(name, format_id(i), decode_payload(p))
                for name, (s, after) in positions.items()
                for i, p in s.after(after, count)
            ]
            if out or not positions:
                return out
            if not await self._wait([s for s, _ in positions.values()], deadline):
                return []

    async def range_after(self, stream: str, after_id: str, *, count: int = 1000) -> list[BusMessage]:
        self._check_open()
        check_count(count)
        after = parse_id(after_id)
        self._expire_mirrors(to_ms(self._clock.now()))
        s = self._streams.get(stream)
        if s is None:
            return []
        return [BusMessage(stream, format_id(i), decode_payload(p)) for i, p in s.after(after, count)]

    async def first_id(self, stream: str) -> str | None:
        self._check_open()
        self._expire_mirrors(to_ms(self._clock.now()))
        s = self._streams.get(stream)
        return format_id(s.entries[0][0]) if s and s.entries else None

    async def last_id(self, stream: str) -> str | None:
        self._check_open()
        s = self._streams.get(stream)
        return format_id(s.entries[-1][0]) if s and s.entries else None

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def ping(self) -> None:
        self._check_open()

    async def close(self) -> None:
        self._closed = True
        for s in self._streams.values():
            s.wake()

    # -- internals ------------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise BusUnavailable("message bus is closed")

    def _stream(self, name: str) -> _Stream:
        s = self._streams.get(name)
        if s is None:
            s = self._streams[name] = _Stream()
        return s

    async def _wait(self, streams: list[_Stream], deadline: float | None) -> bool:
        """Wait for a publish on any of `streams`; False once the deadline has passed or the bus closed."""
        if self._closed:
            return False
        loop = asyncio.get_running_loop()
        if deadline is None:
            return False
        timeout = None if deadline == float("inf") else deadline - loop.time()
        if timeout is not None and timeout <= 0:
            return False
        reraise_if_cancelled()  # a cancellation something swallowed on the way here: no wait begins
        fut: asyncio.Future[None] = loop.create_future()
        for s in streams:
            s.waiters.add(fut)
        try:
            # Not `wait_for`: on Python 3.11 it returns the publish when a cancellation arrives with it, and a
            # reader stopped only by cancellation (the events hub's) would carry on for ever.
            async with asyncio.timeout(timeout):
                await fut
        except TimeoutError:
            return False
        finally:
            for s in streams:
                s.waiters.discard(fut)
        return not self._closed
