"""Following the users' key changes: a user's data stream starts when they store testnet keys, switches when they
rotate them and stops when they delete them, not with their next order.

The gateway announces each change on `shared.streams.TESTNET_KEYS` through the outbox (so only once committed);
every execution process tails that stream from where it stood before its venue read the users with keys at start
(so no change falls between the two) and hands each change to its venue.
"""

from __future__ import annotations

import functools
from typing import Protocol

import structlog

from shared.bus import Bus, BusUnavailable
from shared.retry import Backoff, retry
from shared.streams import TESTNET_KEYS

log = structlog.get_logger(__name__)

READ_BACKOFF = Backoff(base=0.1, factor=2.0, cap=5.0)


class KeysChanged(Protocol):
    """What the follower drives (TestnetVenue implements it)."""

    async def keys_changed(self, user_id: str) -> None: ...


async def key_changes_start(bus: Bus) -> str:
    """Where to start following: after the last change announced so far ("0", all retained, if the bus cannot
    say; replaying a change is harmless)."""
    try:
        return await bus.last_id(TESTNET_KEYS) or "0"
    except Exception as exc:
        log.warning("key changes: the bus cannot say where they stand; replaying them", error=str(exc))
        return "0"


async def follow_key_changes(bus: Bus, target: KeysChanged, after: str) -> None:
    """Hand every key change after `after` to `target`, in order, until cancelled."""
    while True:
        messages = await retry(
            functools.partial(bus.read, {TESTNET_KEYS: after}, block_ms=1000),
            what="reading key changes",
            backoff=READ_BACKOFF,
            expected=BusUnavailable,
        )
        for m in messages:
            after = m.id
            user_id = m.data.get("user_id")
            if not isinstance(user_id, str):
                continue
            try:
                await target.keys_changed(user_id)
            except Exception:
                log.exception(
                    "a key change was not applied; the user's next order applies it", user_id=user_id
                )


__all__ = ["KeysChanged", "follow_key_changes", "key_changes_start"]
