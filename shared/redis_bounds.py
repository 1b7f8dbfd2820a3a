"""Redis round trips bounded by a watchdog instead of a timer per command.

redis-py bounds each command with ``socket_timeout``: its send under ``asyncio.wait_for`` (on Python 3.11 a
Task and an extra event-loop turn per command) and its read under ``asyncio.timeout``. That was ~17 us of a
~72 us GET here, and 4% of TradeBridge's CPU per order at 0.2 R in issue #16's benchmark. The same bound is kept
by one timer per event loop: each connection notes when its current send or read began (a float); every
``WATCH_EVERY_S`` the watchdog aborts the transport of any connection whose send or read has run longer than its
bound. redis-py, finding the connection closed, raises ``ConnectionError``: the client retries on a fresh
connection by its retry policy, and the adapter then reports Redis unavailable as it did after a timeout.

A bound is enforced within ``WATCH_EVERY_S`` after it passes; blocking reads (XREAD BLOCK) must be issued in
chunks shorter than the bound, as they were under ``socket_timeout``.
"""

from __future__ import annotations

import asyncio
import weakref
from typing import Any, ClassVar

import structlog
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)

log = structlog.get_logger(__name__)

WATCH_EVERY_S = 0.25

__all__ = ["WATCH_EVERY_S", "bounded", "bounded_connection_class"]


class _Watched(AbstractConnection):
    """A connection whose sends and reads the watchdog times (mixed in before redis-py's concrete class)."""

    bound_s: ClassVar[float]
    _busy_since: float | None = None
    _watched_on: asyncio.AbstractEventLoop | None = None

    def _began(self) -> float | None:
        """Note the start of a send or read unless one is already timed (a health check's PING inside a send
        is timed from the send's start); returns what to restore when it ends."""
        prior = self._busy_since
        if prior is None:
            loop = asyncio.get_running_loop()
            if self._watched_on is not loop:
                self._watched_on = loop
                _watchdog(loop).add(self)
            self._busy_since = loop.time()
        return prior

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        prior = self._began()
        try:
            await super().send_packed_command(command, check_health)
        finally:
            self._busy_since = prior

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        prior = self._began()
        try:
            return await super().read_response(*args, **kwargs)
        finally:
            self._busy_since = prior

    def _overdue(self, now: float) -> bool:
        since = self._busy_since
        return since is not None and now - since > self.bound_s

    def _abort(self) -> None:
        writer = self._writer
        if writer is not None:
            log.warning("redis: a round trip outlasted its bound; connection dropped", bound_s=self.bound_s)
            writer.transport.abort()


class _Watchdog:
    """One per event loop: a timer every ``WATCH_EVERY_S`` while it has connections to watch."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = weakref.ref(loop)  # not kept alive by its entry in _WATCHDOGS (tests make many loops)
        self._conns: weakref.WeakSet[_Watched] = weakref.WeakSet()
        self._ticking = False  # not the timer's handle: it refers to the loop, which would then stay alive

    def add(self, conn: _Watched) -> None:
        self._conns.add(conn)
        if not self._ticking:
            self._schedule()

    def _schedule(self) -> None:
        loop = self._loop()
        if loop is not None and not loop.is_closed():
            loop.call_later(WATCH_EVERY_S, self._tick)
            self._ticking = True

    def _tick(self) -> None:
        self._ticking = False
        loop = self._loop()
        if loop is None:
            return
        now = loop.time()
        for conn in list(self._conns):
            if conn._overdue(now):
                conn._abort()
        if self._conns:
            self._schedule()


_WATCHDOGS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Watchdog] = weakref.WeakKeyDictionary()


def _watchdog(loop: asyncio.AbstractEventLoop) -> _Watchdog:
    dog = _WATCHDOGS.get(loop)
    if dog is None:
        dog = _WATCHDOGS[loop] = _Watchdog(loop)
    return dog


def bounded_connection_class(url: str, bound_s: float) -> type[AbstractConnection]:
    """The connection class for ``url`` (TCP, TLS or a Unix socket) with sends and reads bounded to
    ``bound_s`` (``bounded`` gives it to redis-py with what goes with it)."""
    if bound_s <= 0:
        raise ValueError("bound_s must be positive")
    base: type[AbstractConnection]
    if url.startswith("rediss://"):
        base = SSLConnection
    elif url.startswith("unix://"):
        base = UnixDomainSocketConnection
    else:
        base = Connection
    return type(f"Bounded{base.__name__}", (_Watched, base), {"bound_s": bound_s})


def bounded(url: str, bound_s: float) -> dict[str, Any]:
    """redis-py client options for ``url`` with every send and read bounded to ``bound_s`` by the watchdog:
    the connection class, and ``socket_timeout=None``, without which redis-py (whose default is 5 s) would
    time every command again."""
    return {"connection_class": bounded_connection_class(url, bound_s), "socket_timeout": None}
