"""One user data stream per testnet user, feeding the venue.

The stream (shared.exchanges: library, signing, reconnect with backoff, re-subscribe) pushes order reports and
balances; this module keeps one per user with stored keys, restarts it when the keys change, and tells the
venue when it is up or down. The venue applies reports through the same path polling uses (fills keyed by the
exchange's trade id, so a fill seen by both is applied once), polls slowly while a user's stream is up, fast
while it is down, and on every StreamUp re-reads the user's open orders over REST: whatever a gap hid (orders
filled or canceled while disconnected or unsubscribed) is found then.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from shared.exchanges import (
    BalanceDeltaEvent,
    BalancesEvent,
    ExchangeAdapter,
    OrderEvent,
    StreamDown,
    StreamOptions,
    StreamUp,
    UserStream,
)

log = structlog.get_logger(__name__)


class StreamTarget(Protocol):
    """What the venue offers the streams (TestnetVenue implements it)."""

    async def on_stream_order(self, user_id: str, event: OrderEvent) -> None: ...

    async def on_stream_balances(self, user_id: str, event: BalancesEvent | BalanceDeltaEvent) -> None: ...

    async def on_stream_up(self, user_id: str) -> None: ...

    def on_stream_down(self, user_id: str, reason: str) -> None: ...


@dataclass(eq=False)
class _Running:
    fingerprint: str
    stream: UserStream
    task: asyncio.Task[None]


KeysFor = Callable[[str], Awaitable[tuple[str, str, str] | None]]  # user -> (fingerprint, key, secret)


class UserStreams:
    """The per-user subscriptions of one venue."""

    def __init__(
        self,
        adapter: ExchangeAdapter,
        ws_url: str,
        target: StreamTarget,
        keys_for: KeysFor,
        options: StreamOptions,
    ) -> None:
        self._adapter = adapter
        self._ws_url = ws_url
        self._target = target
        self._keys_for = keys_for
        self._options = options
        self._running: dict[str, _Running] = {}
        self._lock = asyncio.Lock()
        self._stopped = False

    def users(self) -> list[str]:
        """The users with a stream kept (subscribed or reconnecting)."""
        return sorted(self._running)

    def running(self, user_id: str) -> bool:
        r = self._running.get(user_id)
        return r is not None and not r.task.done()

    async def ensure(self, user_id: str, fingerprint: str | None = None) -> None:
        """Subscribe for `user_id` unless already subscribed with the same keys (`fingerprint` of the keys the
        caller holds; None: look the keys up)."""
        async with self._lock:
            if self._stopped:
                return
            current = self._running.get(user_id)
            if current is not None and not current.task.done() and current.fingerprint == fingerprint:
                return
            keys = await self._keys_for(user_id)
            if keys is None:
                await self._drop(user_id)
                return
            fp, api_key, api_secret = keys
            if current is not None and not current.task.done() and current.fingerprint == fp:
                return
            await self._drop(user_id)
            stream = self._adapter.user_stream(
                api_key, api_secret, ws_url=self._ws_url, options=self._options
            )
            task = asyncio.create_task(self._follow(user_id, stream), name=f"user-stream-{user_id}")
            self._running[user_id] = _Running(fp, stream, task)

    async def _drop(self, user_id: str) -> None:
        r = self._running.pop(user_id, None)
        if r is None:
            return
        await r.stream.close()  # wakes and ends its reader
        done, _ = await asyncio.wait({r.task}, timeout=2.0)
        if not done:
            r.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(r.task, timeout=2.0)
        self._target.on_stream_down(user_id, "stopped")

    async def _follow(self, user_id: str, stream: UserStream) -> None:
        async for event in stream.events():
            try:
                if isinstance(event, OrderEvent):
                    await self._target.on_stream_order(user_id, event)
                elif isinstance(event, BalancesEvent | BalanceDeltaEvent):
                    await self._target.on_stream_balances(user_id, event)
                elif isinstance(event, StreamUp):
                    log.info("user data stream subscribed", user_id=user_id, reconnected=event.reconnected)
                    await self._target.on_stream_up(user_id)
                elif isinstance(event, StreamDown):
                    self._target.on_stream_down(user_id, event.reason)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("user data stream event not applied", user_id=user_id)

    async def stop(self) -> None:
        async with self._lock:
            self._stopped = True
            for user_id in list(self._running):
                await self._drop(user_id)


__all__ = ["KeysFor", "StreamTarget", "UserStreams"]
