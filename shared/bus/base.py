"""The bus contract every adapter honours, plus the pieces both adapters share.

Services only ever see `Bus` and `BusMessage`, so the embedded single process (in-memory adapter) and the
distributed deployment (Redis Streams adapter) run the very same code paths.

Semantics both adapters guarantee (and `tests/bus` checks against both):
- entry ids are "<ms>-<seq>" and strictly increasing per stream;
- a consumer group hands each entry to exactly one of its consumers; entries stay pending until acked and
  can be taken over (`claim_stale`) by another consumer once idle long enough; every group sees every entry;
- `read` is a plain fan-out read: every caller sees every entry after the ids it gives;
- `block_ms`: None = do not wait, 0 = wait until something arrives, n = wait up to n milliseconds;
- payloads are JSON objects; `Decimal` values are encoded as strings by `encode_payload` (callers turn them
  back into `Decimal`), so money never travels as a float.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

import orjson

from shared.amounts import plain
from shared.errors import InvalidInput, Unavailable

__all__ = [
    "MIRROR_ONCE_S",
    "Bus",
    "BusMessage",
    "BusUnavailable",
    "InvalidStreamId",
    "Retention",
    "decode_payload",
    "encode_payload",
    "format_id",
    "once_digest",
    "parse_id",
]

PAYLOAD_FIELD = b"d"
"""The single stream-entry field holding the JSON payload."""

MIRROR_ONCE_S = 600.0
"""How long a mirrored publish (a private event) is remembered: the same payload published again within it (its
outbox row published by its writer and by a relay, or again after a crash before the row was deleted) is not
appended again, so no client sees an event twice. A duplicate later than this gets through."""

_ID_RE = re.compile(r"^(\d{1,20})(?:-(\d{1,20}))?$")
_MAX_U64 = 2**64 - 1


class BusUnavailable(Unavailable):
    """The bus cannot be reached right now; callers back off and retry (the adapter reconnects by itself)."""

    def __init__(self, detail: str = "message bus unavailable", **kw: Any) -> None:
        super().__init__(detail, **kw)


class InvalidStreamId(InvalidInput):
    """A stream id that is not "<ms>" or "<ms>-<seq>"; raised before any I/O, identically by both adapters."""


@dataclass(frozen=True, slots=True)
class BusMessage:
    """One stream entry as delivered to a reader.

    `data` is the decoded JSON object (a fresh copy per delivery; treat it as read-only).
    `deliveries` is how many times a consumer group has handed this entry out (1 for fan-out reads), so a
    worker can park an entry that keeps failing.
    """

    stream: str
    id: str
    data: Mapping[str, Any]
    deliveries: int = 1


def parse_id(value: str) -> tuple[int, int]:
    """Parse "<ms>-<seq>" (or "<ms>", seq 0) into a comparable tuple; InvalidStreamId otherwise."""
    m = _ID_RE.match(value) if isinstance(value, str) else None
    if m is None:
        raise InvalidStreamId(f"invalid stream id {value!r}: expected '<ms>-<seq>'")
    ms, seq = int(m.group(1)), int(m.group(2) or 0)
    if ms > _MAX_U64 or seq > _MAX_U64:
        raise InvalidStreamId(f"invalid stream id {value!r}: out of range")
    return ms, seq


def format_id(value: tuple[int, int]) -> str:
    return f"{value[0]}-{value[1]}"


def check_mirror(stream: str, mirror_to: str) -> str:
    if mirror_to == stream:
        raise ValueError("mirror_to must name a different stream")
    return mirror_to


def check_count(count: int) -> None:
    if count < 1:
        raise ValueError("count must be >= 1")


def block_deadline(block_ms: int | None) -> float | None:
    """Loop-time deadline for a read: None = do not block, inf = block until something arrives (BLOCK 0)."""
    if block_ms is None:
        return None
    if block_ms < 0:
        raise ValueError("block_ms must be >= 0 or None")
    if block_ms == 0:
        return float("inf")
    return asyncio.get_running_loop().time() + block_ms / 1000.0


def _json_default(obj: Any) -> Any:
    # orjson has no Decimal support; strings keep every digit (a float would not), in plain digits: str() would
    # write "1E-7" or "0E-8", which a client would show as it is.
    if isinstance(obj, Decimal):
        if not obj.is_finite():
            raise TypeError(f"non-finite Decimal {obj} cannot go on the bus")
        return plain(obj)
    if isinstance(obj, (set, frozenset)):
        return sorted(obj)
    raise TypeError(f"type {type(obj).__name__} is not JSON serialisable on the bus")


def encode_payload(data: Mapping[str, Any]) -> bytes:
    """JSON bytes for `data`; Decimal -> str, datetime -> RFC 3339, UUID/enum/dataclass natively (orjson)."""
    if not isinstance(data, Mapping):
        raise TypeError("bus payloads must be mappings (JSON objects)")
    try:
        return orjson.dumps(dict(data), default=_json_default)
    except orjson.JSONEncodeError as exc:
        raise TypeError(str(exc)) from exc


def once_digest(stream: str, mirror_to: str, payload: bytes) -> str:
    """The identity of a mirrored entry for `MIRROR_ONCE_S`: its streams and its payload with sorted keys (a
    row published from memory and the same row read back from a JSONB column differ only in key order)."""
    canonical = orjson.dumps(orjson.loads(payload), option=orjson.OPT_SORT_KEYS)
    return hashlib.sha1(
        b"\0".join((stream.encode(), mirror_to.encode(), canonical)), usedforsecurity=False
    ).hexdigest()


def decode_payload(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        return {}
    value = orjson.loads(raw)
    return value if isinstance(value, dict) else {"value": value}


class Retention:
    """Per-stream MAXLEN: a default plus overrides by exact name or by "prefix*" pattern (longest wins).

    Commands keep far more history than ticker streams, e.g.
    `Retention(10_000, {"orders.commands": 1_000_000, "ticker:*": 1_000})`. None means unbounded.
    """

    __slots__ = ("_cache", "_exact", "_prefixes", "default")

    def __init__(self, default: int | None, overrides: Mapping[str, int | None] | None = None) -> None:
        for n in [default, *(overrides or {}).values()]:
            if n is not None and n < 1:
                raise ValueError("maxlen must be >= 1 (or None for unbounded)")
        self.default = default
        self._exact: dict[str, int | None] = {}
        self._prefixes: list[tuple[str, int | None]] = []
        for key, n in (overrides or {}).items():
            if key.endswith("*"):
                self._prefixes.append((key[:-1], n))
            else:
                self._exact[key] = n
        self._prefixes.sort(key=lambda kv: len(kv[0]), reverse=True)
        self._cache: dict[str, int | None] = {}

    def maxlen_for(self, stream: str) -> int | None:
        try:
            return self._cache[stream]
        except KeyError:
            pass
        if stream in self._exact:
            found = self._exact[stream]
        else:
            found = next((n for p, n in self._prefixes if stream.startswith(p)), self.default)
        if len(self._cache) < 10_000:
            self._cache[stream] = found
        return found


@runtime_checkable
class Bus(Protocol):
    """Append-only streams with consumer groups and fan-out reads (Redis Streams semantics)."""

    async def publish(self, stream: str, data: Mapping[str, Any], *, mirror_to: str | None = None) -> str:
        """Append `data`; return its id. With `mirror_to`, the same entry is also appended to that stream
        with the same id, atomically (a global stream all readers tail, a per-user one for cheap resume)."""
        ...

    async def publish_many(
        self, items: Sequence[tuple[str, Mapping[str, Any]]], *, mirrors: Sequence[str | None] | None = None
    ) -> list[str]:
        """Append several entries in one round trip; ids in the order given. ``mirrors`` (one per item, None
        for none) mirrors an item as ``publish(..., mirror_to=...)`` does, in the same round trip."""
        ...

    async def ensure_group(self, stream: str, group: str, *, start: str = "0") -> None:
        """Create the group (and stream) if missing; "0" = deliver existing entries too, "$" = only new."""
        ...

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
        """Entries never delivered to this group; they stay pending for `consumer` until acked.
        A group that vanished (Redis restarted without persistence) is recreated transparently.
        ``ack``: entries handled since the last read, acked first in the same round trip (`ack`)."""
        ...

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> None: ...

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 100
    ) -> list[BusMessage]:
        """Take over entries read but left unacked for `min_idle_ms` (a dead consumer's); deliveries + 1."""
        ...

    async def pending_own(
        self, stream: str, group: str, consumer: str, *, count: int = 100
    ) -> list[BusMessage]:
        """This consumer's unacked entries (oldest first): what a restarted worker must finish first."""
        ...

    async def read(
        self, streams: Mapping[str, str], *, count: int = 100, block_ms: int | None = 1000
    ) -> list[BusMessage]:
        """Fan-out read of entries after the given id per stream ("$" = only entries newer than now)."""
        ...

    async def range_after(self, stream: str, after_id: str, *, count: int = 1000) -> list[BusMessage]:
        """Retained entries strictly after `after_id`, oldest first (replay and resume)."""
        ...

    async def first_id(self, stream: str) -> str | None:
        """Oldest retained id: a resume point older than this has lost events."""
        ...

    async def last_id(self, stream: str) -> str | None: ...

    async def ping(self) -> None:
        """Raise BusUnavailable if the bus cannot be reached (readiness probe)."""
        ...

    async def close(self) -> None: ...
