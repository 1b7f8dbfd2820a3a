"""Redis Streams adapter: the bus when REDIS_URL is set (several processes, several instances each).

Every key is namespaced with `prefix`; callers only ever see unprefixed stream names. Each entry has one
field, "d", holding the JSON payload. Connection trouble of any kind surfaces as `BusUnavailable`; the
client is created lazily and redis-py replaces broken connections on the next call, so a Redis restart or a
killed connection never leaves the adapter permanently broken. A consumer group that vanished (Redis
restarted without persistence) is recreated from "0" on the next group read.

Delivery is at least once: a command retried after a dropped connection may have been applied already
(a plain publish may be duplicated; a group read may leave entries pending that `pending_own`/`claim_stale`
then deliver). Handlers are idempotent, as the design requires. A mirrored publish (a private event) is the
exception: the same payload published again within `mirror_once_s` is not appended again (`MIRROR_ONCE_S`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.bus.base import (
    MIRROR_ONCE_S,
    PAYLOAD_FIELD,
    BusMessage,
    BusUnavailable,
    Retention,
    block_deadline,
    check_count,
    check_mirror,
    decode_payload,
    encode_payload,
    once_digest,
    parse_id,
)
from shared.redis_bounds import bounded
from shared.retry import reraise_if_cancelled

__all__ = ["RedisStreamsBus"]

log = logging.getLogger(__name__)

_MAX_ID = (2**64 - 1, 2**64 - 1)

# XADD the entry to the stream with a fresh id, then the same entry with the same id to the mirror. If the
# mirror already holds a newer id (it is fed from elsewhere too), pick an id newer than both and redo both,
# so ids stay strictly increasing in each stream and identical across the pair.
_PUBLISH_LIB = """
local function xadd(call, key, maxlen, id, payload)
  if maxlen == '' then return call('XADD', key, id, 'd', payload) end
  return call('XADD', key, 'MAXLEN', '~', maxlen, id, 'd', payload)
end
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function mirrored(k1, k2, payload, max1, max2)
  local id = xadd(redis.call, k1, max1, '*', payload)
  local r = xadd(redis.pcall, k2, max2, id, payload)
  if type(r) == 'table' and r.err then
    local info = redis.call('XINFO', 'STREAM', k2)
    local last = id
    for i = 1, #info, 2 do
      if info[i] == 'last-generated-id' then last = info[i + 1] end
    end
    local ms, seq = parse(id)
    local ms2, seq2 = parse(last)
    if ms2 > ms or (ms2 == ms and seq2 > seq) then ms, seq = ms2, seq2 end
    local fresh = string.format('%d-%d', ms, seq + 1)
    redis.call('XDEL', k1, id)
    xadd(redis.call, k1, max1, fresh, payload)
    xadd(redis.call, k2, max2, fresh, payload)
    id = fresh
  end
  return id
end
-- A mirrored entry (a private event) is appended once: `kd` remembers its id for `ttl` ms, and the same
-- payload published again meanwhile (an outbox row published by its writer and again by a relay, or again
-- after a crash before its row was deleted) answers that id instead of appending a copy users would see twice.
-- The mirror (a user's stream) then lives `idle` ms past its last entry ('': for ever, up to its cap).
local function once(k1, k2, kd, payload, max1, max2, ttl, idle)
  local prior = redis.call('GET', kd)
  if prior then return prior end
  local id = mirrored(k1, k2, payload, max1, max2)
  redis.call('SET', kd, id, 'PX', ttl)
  if idle ~= '' then redis.call('PEXPIRE', k2, idle) end
  return id
end
"""
_PUBLISH_MIRROR = (
    _PUBLISH_LIB + "return once(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5])\n"
)
# A batch in one call (one round trip, applied atomically, in order): entry i has KEYS[3i-2] (stream),
# KEYS[3i-1] (its mirror, or the stream again when ARGV[4i] is '0') and KEYS[3i] (its once-key, or the stream
# again), payload ARGV[4i-3], maxlens ARGV[4i-2..4i-1]; the last two ARGV are the once-keys' lifetime and the
# mirrors' idle lifetime in ms ('' for none).
_PUBLISH_BATCH = (
    _PUBLISH_LIB
    + """
local ids = {}
local ttl, idle = ARGV[#ARGV - 1], ARGV[#ARGV]
for i = 1, #KEYS / 3 do
  local a, k = 4 * (i - 1), 3 * (i - 1)
  if ARGV[a + 4] == '1' then
    ids[i] = once(KEYS[k + 1], KEYS[k + 2], KEYS[k + 3], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ttl, idle)
  else
    ids[i] = xadd(redis.call, KEYS[k + 1], ARGV[a + 2], '*', ARGV[a + 1])
  end
end
return ids
"""
)

# XAUTOCLAIM until `count` entries are claimed or the whole PEL was scanned, then report each claimed
# entry's delivery count (XAUTOCLAIM itself does not return it). Entries trimmed away are dropped by Redis.
_CLAIM = """
local group, consumer, min_idle, count = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
local cursor = '0-0'
local out, dropped = {}, {}
for _ = 1, tonumber(ARGV[5]) do
  local r = redis.call('XAUTOCLAIM', KEYS[1], group, consumer, min_idle, cursor, 'COUNT', count - #out)
  cursor = r[1]
  for _, e in ipairs(r[2]) do
    if e[2] then
      local p = redis.call('XPENDING', KEYS[1], group, e[1], e[1], 1)
      local n = 1
      if p[1] then n = p[1][4] end
      out[#out + 1] = {e[1], e[2], n}
    else
      dropped[#dropped + 1] = e[1]
    end
  end
  if r[3] then for _, d in ipairs(r[3]) do dropped[#dropped + 1] = d end end
  if cursor == '0-0' or #out >= count then break end
end
return {out, dropped}
"""

# Re-read this consumer's own pending entries (XREADGROUP ... 0), with their delivery counts. Entries
# trimmed before anyone acked them come back without data: ack them (nothing left to process) and go on.
_PENDING_OWN = """
local group, consumer, count = ARGV[1], ARGV[2], ARGV[3]
local out, dropped = {}, {}
for _ = 1, 100 do
  local r = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count, 'STREAMS', KEYS[1], '0')
  local gone = {}
  if r and r[1] then
    for _, e in ipairs(r[1][2]) do
      if e[2] then
        local p = redis.call('XPENDING', KEYS[1], group, e[1], e[1], 1)
        local n = 1
        if p[1] then n = p[1][4] end
        out[#out + 1] = {e[1], e[2], n}
      else
        gone[#gone + 1] = e[1]
        dropped[#dropped + 1] = e[1]
      end
    end
  end
  if #gone > 0 then redis.call('XACK', KEYS[1], group, unpack(gone)) end
  if #out > 0 or #gone == 0 then break end
end
return {out, dropped}
"""


class RedisStreamsBus:
    """`Bus` on Redis Streams. No I/O until the first call.

    `maxlen`/`retention`: approximate per-stream MAXLEN (`~`) applied on every XADD.
    `socket_timeout` bounds every send and read (`shared.redis_bounds`; blocking reads are issued in chunks
    below it);
    `connect_timeout` keeps "Redis is down" fast; `retries` is how often redis-py retries a command on a
    fresh connection after a connection error before `BusUnavailable` is raised.
    """

    def __init__(
        self,
        url: str,
        *,
        prefix: str = "tradebridge:",
        maxlen: int | None = 10_000,
        retention: Mapping[str, int | None] | None = None,
        socket_timeout: float = 5.0,
        connect_timeout: float = 1.0,
        retries: int = 1,
        client_name: str | None = "tradebridge-bus",
        max_claim_scans: int = 100,
        mirror_once_s: float = MIRROR_ONCE_S,
        mirror_idle_s: float | None = None,
    ) -> None:
        """`mirror_idle_s`: a mirror stream (a user's private events) is deleted once it has had no entry for
        this long (None: kept, up to its cap), so Redis holds the streams of recently active users only."""
        if socket_timeout <= 0.1:
            raise ValueError("socket_timeout must be > 0.1 s")
        self._url = url
        self._prefix = prefix
        self._retention = Retention(maxlen, retention)
        self._socket_timeout = socket_timeout
        self._connect_timeout = connect_timeout
        self._retries = retries
        self._client_name = client_name
        self._max_claim_scans = max_claim_scans
        self._once_ms = str(int(mirror_once_s * 1000))
        self._idle_ms = "" if mirror_idle_s is None else str(max(1, int(mirror_idle_s * 1000)))
        self._chunk_ms = max(50, int(socket_timeout * 800))  # stay below the socket timeout
        self._client: aioredis.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._closed = False

    @property
    def client_name(self) -> str | None:
        """The CLIENT SETNAME of this adapter's connections (visible in CLIENT LIST, for operators)."""
        return self._client_name

    # -- publishing -----------------------------------------------------------------------------------------

    async def publish(self, stream: str, data: Mapping[str, Any], *, mirror_to: str | None = None) -> str:
        payload = encode_payload(data)
        async with self._call() as r:
            if mirror_to is None:
                raw = await r.xadd(self._key(stream), {PAYLOAD_FIELD: payload}, **self._trim(stream))
            else:
                check_mirror(stream, mirror_to)
                raw = await self._script(r, "mirror", _PUBLISH_MIRROR)(
                    keys=[
                        self._key(stream),
                        self._key(mirror_to),
                        self._once_key(stream, mirror_to, payload),
                    ],
                    args=[
                        payload,
                        self._maxlen_arg(stream),
                        self._maxlen_arg(mirror_to),
                        self._once_ms,
                        self._idle_ms,
                    ],
                )
        return _s(raw)

    async def publish_many(
        self, items: Sequence[tuple[str, Mapping[str, Any]]], *, mirrors: Sequence[str | None] | None = None
    ) -> list[str]:
        if mirrors is not None and len(mirrors) != len(items):
            raise ValueError("publish_many: one mirror (or None) per item")
        if mirrors is not None:
            for (stream, _), m in zip(items, mirrors, strict=True):
                if m is not None:
                    check_mirror(stream, m)
        encoded = [(stream, encode_payload(data)) for stream, data in items]
        if not encoded:
            return []
        if mirrors is None or all(m is None for m in mirrors):
            async with self._call() as r:
                pipe = r.pipeline(transaction=False)
                for stream, payload in encoded:
                    pipe.xadd(self._key(stream), {PAYLOAD_FIELD: payload}, **self._trim(stream))
                raw = await pipe.execute()
            return [_s(i) for i in raw]
        keys: list[str] = []
        args: list[bytes | str] = []
        for (stream, payload), m in zip(encoded, mirrors, strict=True):
            keys += [
                self._key(stream),
                self._key(m if m is not None else stream),
                self._once_key(stream, m, payload) if m is not None else self._key(stream),
            ]
            args += [
                payload,
                self._maxlen_arg(stream),
                self._maxlen_arg(m) if m is not None else "",
                "0" if m is None else "1",
            ]
        args += [self._once_ms, self._idle_ms]
        async with self._call() as r:
            raw = await self._script(r, "batch", _PUBLISH_BATCH)(keys=keys, args=args)
        return [_s(i) for i in raw]

    def _maxlen_arg(self, stream: str) -> str:
        n = self._retention.maxlen_for(stream)
        return "" if n is None else str(n)

    def _trim(self, stream: str) -> dict[str, Any]:
        n = self._retention.maxlen_for(stream)
        return {} if n is None else {"maxlen": n, "approximate": True}

    # -- consumer groups ------------------------------------------------------------------------------------

    async def ensure_group(self, stream: str, group: str, *, start: str = "0") -> None:
        if start != "$":
            parse_id(start)
        async with self._call() as r:
            await self._create_group(r, stream, group, start)

    async def _create_group(self, r: aioredis.Redis, stream: str, group: str, start: str) -> None:
        try:
            await r.xgroup_create(self._key(stream), group, id=start, mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

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
        check_count(count)
        for i in ack:
            parse_id(i)
        deadline = block_deadline(block_ms)
        key = self._key(stream)
        recreated = 0
        async with self._call() as r:
            while True:
                try:
                    if ack:  # XACK then XREADGROUP, one round trip (the pipeline raises the first error)
                        async with r.pipeline(transaction=False) as pipe:
                            pipe.xack(key, group, *ack)
                            pipe.xreadgroup(
                                group, consumer, {key: ">"}, count=count, block=self._block_arg(deadline)
                            )
                            resp = (await pipe.execute())[1]
                        ack = ()
                    else:
                        resp = await r.xreadgroup(
                            group, consumer, {key: ">"}, count=count, block=self._block_arg(deadline)
                        )
                except ResponseError as exc:
                    if not _group_missing(exc) or recreated >= 3:
                        raise
                    recreated += 1
                    log.warning("bus: consumer group %s on %s missing; recreating", group, stream)
                    await self._create_group(r, stream, group, "0")
                    continue
                reraise_if_cancelled()  # what it took stays pending for the group: read again, not lost
                out = self._messages(resp)
                if out or not _time_left(deadline):
                    return out

    async def ack(self, stream: str, group: str, ids: Sequence[str]) -> None:
        for i in ids:
            parse_id(i)
        if not ids:
            return
        async with self._call() as r:
            await r.xack(self._key(stream), group, *ids)

    async def claim_stale(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 100
    ) -> list[BusMessage]:
        check_count(count)
        if min_idle_ms < 0:
            raise ValueError("min_idle_ms must be >= 0")
        args = [group, consumer, str(min_idle_ms), str(count), str(self._max_claim_scans)]
        return await self._redeliver(stream, group, "claim", _CLAIM, args)

    async def pending_own(
        self, stream: str, group: str, consumer: str, *, count: int = 100
    ) -> list[BusMessage]:
        check_count(count)
        return await self._redeliver(stream, group, "pending", _PENDING_OWN, [group, consumer, str(count)])

    async def _redeliver(
        self, stream: str, group: str, name: str, source: str, args: list[str]
    ) -> list[BusMessage]:
        async with self._call() as r:
            script = self._script(r, name, source)
            try:
                entries, dropped = await script(keys=[self._key(stream)], args=args)
            except ResponseError as exc:
                if not _group_missing(exc):
                    raise
                log.warning("bus: consumer group %s on %s missing; recreating", group, stream)
                await self._create_group(r, stream, group, "0")
                return []
        for d in dropped:
            log.warning("bus: pending entry %s on %s trimmed before ack; dropped", _s(d), stream)
        return [BusMessage(stream, _s(i), decode_payload(_field(f)), int(n)) for i, f, n in entries]

    # -- plain reads ----------------------------------------------------------------------------------------

    async def read(
        self, streams: Mapping[str, str], *, count: int = 100, block_ms: int | None = 1000
    ) -> list[BusMessage]:
        check_count(count)
        for after in streams.values():
            if after != "$":
                parse_id(after)
        if not streams:
            return []
        deadline = block_deadline(block_ms)
        ids: dict[Any, Any] = {self._key(name): after for name, after in streams.items()}
        async with self._call() as r:
            if deadline is not None and "$" in ids.values() and self._chunks(deadline):
                # "$" must mean "now" once: later chunks would otherwise skip what arrived in between.
                ids = await self._resolve_dollar(r, ids)
            while True:
                resp = await r.xread(ids, count=count, block=self._block_arg(deadline))
                # redis-py sends a command under Python 3.11's `wait_for`, which drops a cancellation that
                # comes as the send completes: the read went on, and a loop stopped by cancelling it never
                # stopped (a shutdown hung on it, 1 in 14).
                reraise_if_cancelled()
                out = self._messages(resp)
                if out or not _time_left(deadline):
                    return out

    async def _resolve_dollar(self, r: aioredis.Redis, ids: dict[Any, Any]) -> dict[Any, Any]:
        todo = [k for k, v in ids.items() if v == "$"]
        pipe = r.pipeline(transaction=False)
        for k in todo:
            pipe.xrevrange(k, "+", "-", count=1)
        results = await pipe.execute()
        resolved = dict(ids)
        for k, res in zip(todo, results, strict=True):
            resolved[k] = _s(res[0][0]) if res else "0-0"
        return resolved

    async def range_after(self, stream: str, after_id: str, *, count: int = 1000) -> list[BusMessage]:
        check_count(count)
        if parse_id(after_id) >= _MAX_ID:
            return []
        async with self._call() as r:
            raw = await r.xrange(self._key(stream), min="(" + after_id, max="+", count=count)
        return [BusMessage(stream, _s(i), decode_payload(_field(f))) for i, f in raw or [] if f is not None]

    async def first_id(self, stream: str) -> str | None:
        async with self._call() as r:
            raw = await r.xrange(self._key(stream), min="-", max="+", count=1)
        return _s(raw[0][0]) if raw else None

    async def last_id(self, stream: str) -> str | None:
        async with self._call() as r:
            raw = await r.xrevrange(self._key(stream), max="+", min="-", count=1)
        return _s(raw[0][0]) if raw else None

    # -- lifecycle ------------------------------------------------------------------------------------------

    async def ping(self) -> None:
        async with self._call() as r:
            await r.ping()

    async def close(self) -> None:
        self._closed = True
        client, self._client = self._client, None
        self._scripts.clear()
        if client is not None:
            await client.aclose()

    # -- internals ------------------------------------------------------------------------------------------

    def _key(self, stream: str) -> str:
        return self._prefix + stream

    def _once_key(self, stream: str, mirror: str, payload: bytes) -> str:
        return self._prefix + "once:" + once_digest(stream, mirror, payload)

    def _connection(self) -> aioredis.Redis:
        if self._closed:
            raise BusUnavailable("message bus is closed")
        if self._client is None:
            backoff = ExponentialBackoff(cap=0.2, base=0.02) if self._retries else NoBackoff()
            self._client = aioredis.Redis.from_url(
                self._url,
                decode_responses=False,
                # every send and read bounded to socket_timeout by a watchdog, not by a timer per command
                **bounded(self._url, self._socket_timeout),
                socket_connect_timeout=self._connect_timeout,
                retry=Retry(backoff, self._retries),
                client_name=self._client_name,
            )
        return self._client

    def _script(self, r: aioredis.Redis, name: str, source: str) -> AsyncScript:
        # redis-py's Script reloads itself on NOSCRIPT, e.g. after a Redis restart flushed the script cache.
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = r.register_script(source)
        return script

    @asynccontextmanager
    async def _call(self) -> AsyncIterator[aioredis.Redis]:
        try:
            yield self._connection()
        except (RedisConnectionError, RedisTimeoutError, ReadOnlyError, OSError, TimeoutError) as exc:
            reraise_if_cancelled(exc)
            raise BusUnavailable(f"message bus unavailable: {exc}") from exc

    def _chunks(self, deadline: float) -> bool:
        remaining = deadline - asyncio.get_running_loop().time()
        return remaining * 1000 > self._chunk_ms

    def _block_arg(self, deadline: float | None) -> int | None:
        if deadline is None:
            return None
        if deadline == float("inf"):
            return self._chunk_ms
        remaining_ms = int((deadline - asyncio.get_running_loop().time()) * 1000)
        return max(1, min(self._chunk_ms, remaining_ms))  # BLOCK 0 would mean "forever"

    def _messages(self, resp: Any) -> list[BusMessage]:
        out: list[BusMessage] = []
        if not resp:
            return out
        cut = len(self._prefix)
        for raw_key, entries in resp:
            name = _s(raw_key)[cut:]
            for entry_id, fields in entries:
                if fields is None:  # trimmed away while pending: nothing to hand out
                    continue
                out.append(BusMessage(name, _s(entry_id), decode_payload(fields.get(PAYLOAD_FIELD))))
        return out


def _field(fields: Any) -> bytes | None:
    """The payload from a script's flat [field, value, ...] reply or from a parsed dict."""
    if isinstance(fields, dict):
        value = fields.get(PAYLOAD_FIELD)
        return value if isinstance(value, bytes) else None
    for i in range(0, len(fields) - 1, 2):
        if fields[i] == PAYLOAD_FIELD:
            value = fields[i + 1]
            return value if isinstance(value, bytes) else None
    return None


def _s(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _group_missing(exc: ResponseError) -> bool:
    text = str(exc)
    return "NOGROUP" in text or "UNBLOCKED" in text


def _time_left(deadline: float | None) -> bool:
    if deadline is None:
        return False
    return deadline == float("inf") or asyncio.get_running_loop().time() < deadline
