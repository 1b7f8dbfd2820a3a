"""The WebSocket wire protocol: close codes, channel names, client ops and server messages.

Pure functions and frozen values only (no I/O), so the rules the hub applies can be tested on their own.

Authentication, in this order: `?token=`, `Authorization: Bearer`, the subprotocols `["bearer", TOKEN]`
(the server selects "bearer"), else the first message `{"op": "auth", "token": ...}` within the auth deadline.
The header, subprotocol and message ways keep the token out of URLs, which proxies and servers log.

Close codes (documented for API clients):
- 4401 unauthorized: missing, bad or expired token (or no auth message in time, or another message first), or
  the token expired while connected, or "signed out": an admin locked the user (tokens issued before the lock
  are refused from then on);
- 4429 too many connections: the user already holds the maximum number of sockets on this server process;
- 1009 message too big: a client message over the size limit (it is not parsed);
- 4008 slow consumer: the client did not read fast enough (its outgoing queue overflowed or a send timed out);
  it should reconnect and `resume` from its last event id;
- 1001 going away: the server is shutting down; reconnect (to any instance) and `resume`;
- 1013 try again later: a resume could not read the bus; reconnect and `resume` again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from shared.candles import CANDLE_INTERVAL_MS
from shared.streams import MARKET_VENUES, PAPER_VENUE, PUBLIC_CHANNELS

CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_SLOW_CONSUMER: Final = 4008
CLOSE_GOING_AWAY: Final = 1001
CLOSE_TRY_AGAIN: Final = 1013
CLOSE_TOO_MANY_CONNECTIONS: Final = 4429
CLOSE_MESSAGE_TOO_BIG: Final = 1009

BEARER_SUBPROTOCOL: Final = "bearer"

CANDLE_INTERVALS: Final = frozenset(CANDLE_INTERVAL_MS)
MAX_CHANNELS_PER_CONNECTION: Final = 200
_SYMBOL_RE: Final = re.compile(r"^[A-Z0-9]{2,20}$")

# stream name -> (channel kind, message type); the reverse of PUBLIC_CHANNELS for routing.
STREAM_KINDS: Final = {stream: (kind, msg_type) for kind, (stream, msg_type) in PUBLIC_CHANNELS.items()}


@dataclass(frozen=True, slots=True)
class ChannelError:
    """A channel the client asked for that we refuse, and why (sent back as an ERROR naming it)."""

    channel: str
    reason: str


def normalize_channel(raw: object, symbols: frozenset[str] | None) -> str | ChannelError:
    """Canonical channel name ("ticker:BTCUSDT", "candles:BTCUSDT:1m", "depth:BTCUSDT@testnet") or the reason
    it is refused.

    Symbols are upper-cased and "BTC/USDT" is accepted (as on REST); with `symbols`, only those are known. A
    channel names its venue with "@venue" (paper when absent; "@paper" is canonically dropped).
    """
    if not isinstance(raw, str) or not raw or len(raw) > 64:
        return ChannelError(str(raw)[:64], "channel must be a non-empty string")
    body, at, venue = raw.partition("@")
    venue = venue.lower()
    if at and venue not in MARKET_VENUES:
        return ChannelError(raw, f"unknown venue {venue!r}; one of {', '.join(MARKET_VENUES)}")
    channel = _channel(raw, body, symbols)
    if isinstance(channel, ChannelError) or not at or venue == PAPER_VENUE:
        return channel
    return f"{channel}@{venue}"


def _channel(raw: str, body: str, symbols: frozenset[str] | None) -> str | ChannelError:
    parts = body.split(":")
    kind = parts[0].lower()
    if kind not in PUBLIC_CHANNELS:
        return ChannelError(raw, f"unknown channel kind {parts[0]!r}")
    if len(parts) < 2:
        return ChannelError(raw, "channel needs a symbol, e.g. ticker:BTCUSDT")
    symbol = parts[1].replace("/", "").upper()
    if not _SYMBOL_RE.match(symbol) or (symbols is not None and symbol not in symbols):
        return ChannelError(raw, f"unknown symbol {parts[1]!r}")
    if kind == "candles":
        if len(parts) != 3 or parts[2] not in CANDLE_INTERVALS:
            return ChannelError(
                raw, f"candles need an interval: candles:SYMBOL:{'|'.join(CANDLE_INTERVAL_MS)}"
            )
        return f"candles:{symbol}:{parts[2]}"
    if len(parts) != 2:
        return ChannelError(raw, "malformed channel")
    return f"{kind}:{symbol}"


def public_channel_of(stream: str, payload: Mapping[str, Any]) -> tuple[str, str] | None:
    """(channel, message type) a public stream entry belongs to; None if the entry is malformed."""
    found = STREAM_KINDS.get(stream)
    symbol = payload.get("symbol")
    venue = payload.get("venue", PAPER_VENUE)
    if found is None or not isinstance(symbol, str) or venue not in MARKET_VENUES:
        return None
    suffix = "" if venue == PAPER_VENUE else f"@{venue}"
    kind, msg_type = found
    if kind == "candles":
        interval = payload.get("interval")
        if not isinstance(interval, str):
            return None
        return f"candles:{symbol}:{interval}{suffix}", msg_type
    return f"{kind}:{symbol}{suffix}", msg_type


def public_data(payload: Mapping[str, Any]) -> Any:
    """A public entry's `data` as clients get it: naming its venue (entries written before venues are paper's)."""
    data = payload.get("data")
    if isinstance(data, dict) and "venue" not in data:
        return {**data, "venue": payload.get("venue", PAPER_VENUE)}
    return data


def encode(message: Mapping[str, Any]) -> str:
    return orjson.dumps(message).decode()


def event_message(msg_type: str, event_id: str | None, ts: Any, data: Any, **extra: Any) -> str:
    """The server envelope `{"type", "id", "ts", "data"}` (public channels add "channel"), as JSON text."""
    return encode({"type": msg_type, "id": event_id, "ts": ts, "data": data, **extra})


def control_message(msg_type: str, ts: str, data: Mapping[str, Any] | None = None) -> str:
    """Server replies that are not stream events (PONG, SUBSCRIBED, ERROR, RESYNC_REQUIRED...): id is null."""
    return event_message(msg_type, None, ts, dict(data or {}))


def error_message(ts: str, code: str, message: str, **extra: Any) -> str:
    return control_message("ERROR", ts, {"code": code, "message": message, **extra})


@dataclass(frozen=True, slots=True)
class Op:
    """A parsed client operation."""

    op: str
    channels: tuple[object, ...] = ()
    last_event_id: str | None = None


def parse_op(text: str | bytes) -> Op | str:
    """The client's op, or a message saying why it is malformed (sent back as an ERROR)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return "malformed JSON"
    if not isinstance(value, dict):
        return "a message must be a JSON object with an 'op'"
    op = value.get("op")
    if op == "ping":
        return Op("ping")
    if op in ("subscribe", "unsubscribe"):
        channels = value.get("channels")
        if not isinstance(channels, list) or not channels:
            return f"'{op}' needs a non-empty 'channels' list"
        return Op(op, channels=tuple(channels))
    if op == "auth":
        return "already authenticated"
    if op == "resume":
        last = value.get("last_event_id")
        if not isinstance(last, str) or not last:
            return "'resume' needs 'last_event_id' (the id of the last event received)"
        return Op("resume", last_event_id=last)
    return f"unknown op {str(op)[:32]!r}"


def dedupe(channels: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(channels))


def token_from_subprotocols(offered: Iterable[str]) -> str | None:
    """The token of `Sec-WebSocket-Protocol: bearer, TOKEN` (the entry after "bearer"), if offered."""
    items = list(offered)
    try:
        token = items[items.index(BEARER_SUBPROTOCOL) + 1]
    except (ValueError, IndexError):
        return None
    return token or None


def parse_auth(text: str | bytes) -> str | None:
    """The token of a first message `{"op": "auth", "token": "..."}`; None for anything else."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, dict) or value.get("op") != "auth":
        return None
    token = value.get("token")
    return token if isinstance(token, str) and token else None


def too_big(text: str | bytes, limit: int) -> bool:
    """Whether a message exceeds `limit` bytes (UTF-8 for text); encodes only when the length can't tell."""
    if isinstance(text, bytes) or len(text) > limit:
        return len(text) > limit
    return len(text) * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit
