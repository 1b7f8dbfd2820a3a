"""The message bus: one interface, two adapters (Redis Streams with REDIS_URL, in-process without)."""

from __future__ import annotations

from collections.abc import Mapping

from shared.bus.base import (
    Bus,
    BusMessage,
    BusUnavailable,
    InvalidStreamId,
    Retention,
    decode_payload,
    encode_payload,
    format_id,
    parse_id,
)
from shared.clock import Clock

__all__ = [
    "Bus",
    "BusMessage",
    "BusUnavailable",
    "InvalidStreamId",
    "Retention",
    "create_bus",
    "decode_payload",
    "encode_payload",
    "format_id",
    "parse_id",
]


def create_bus(
    redis_url: str | None,
    *,
    prefix: str,
    maxlen: int | None,
    clock: Clock,
    retention: Mapping[str, int | None] | None = None,
    mirror_idle_s: float | None = None,
) -> Bus:
    """The adapter the configuration asks for; no I/O here (the Redis client connects on first use).

    `maxlen` bounds every stream (None: unbounded); `retention` overrides it per stream name or "prefix*";
    a mirror stream (a user's private events) with no entry for `mirror_idle_s` is deleted (None: kept).
    """
    if redis_url:
        from shared.bus.redis_streams import RedisStreamsBus

        return RedisStreamsBus(
            redis_url, prefix=prefix, maxlen=maxlen, retention=retention, mirror_idle_s=mirror_idle_s
        )
    from shared.bus.memory import MemoryBus

    return MemoryBus(maxlen=maxlen, retention=retention, clock=clock, mirror_idle_s=mirror_idle_s)
