"""Whether a user's testnet updates are pushed, shared between the execution worker and every gateway.

Only the execution worker follows a user's orders (and holds their user data stream); the gateway answering
`GET /api/venue-status` may run in another process. So the worker's testnet venue keeps a marker per user in the
market data store (Redis when configured, memory in the embedded process), refreshed every few seconds, with
when it last reached the exchange. A marker not refreshed within `MARKER_MAX_AGE` was left by a worker that is
gone: its stream counts as down.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, Literal

KIND = "venue-status"  # the market data kind the markers are stored under (symbol: "testnet:<user id>")
HEARTBEAT_S = 2.0  # how often the worker refreshes its markers
MARKER_MAX_AGE = timedelta(seconds=10)

StreamState = Literal["up", "down", "polling"]


def marker_key(user_id: str) -> str:
    return f"testnet:{user_id}"


def marker(
    *, streaming: bool, last_ok_ms: int | None, last_failure_ms: int | None, now: datetime
) -> dict[str, Any]:
    """What the worker stores for one user: is their stream subscribed, and its venue's latest calls (ms)."""
    return {
        "stream": "up" if streaming else "down",
        "last_ok_ms": last_ok_ms,
        "last_failure_ms": last_failure_ms,
        "ts": now.isoformat(),
    }


def fresh(value: dict[str, Any] | None, now: datetime) -> dict[str, Any] | None:
    """The marker if a live worker wrote it (recently, readable), else None."""
    if value is None:
        return None
    try:
        age = now - datetime.fromisoformat(str(value["ts"]))
    except (KeyError, ValueError, TypeError):
        return None
    return value if age <= MARKER_MAX_AGE else None


def stream_state(value: dict[str, Any] | None, *, streams_configured: bool) -> StreamState:
    """`up`: pushed over the user data stream; `polling`: no stream configured, orders are polled; `down`: the
    stream is configured but not subscribed now (or no live worker says it is)."""
    if not streams_configured:
        return "polling"
    return "up" if value is not None and value.get("stream") == "up" else "down"


def latest(*values: int | None) -> int | None:
    seen = [v for v in values if v is not None]
    return max(seen) if seen else None
