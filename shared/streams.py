"""Stream names and event envelopes on the bus: the contract between producers and the events service.

Private events (ORDER_UPDATE, TRADE, POSITION_UPDATE, BALANCE_UPDATE) go to one global stream that every
events-service instance tails, mirrored with the same id to the owner's stream for cheap resume:
    publish(PRIVATE_EVENTS, envelope, mirror_to=user_stream(user_id))
Public market data goes to one stream per kind; the symbol (and interval) is inside the payload.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

# Command streams: paper commands per partition of the books (`CommandRouting`; one partition: this one name),
# each partition with a single writer (its lease holder), while testnet commands spread over every worker of
# the group.
PAPER_COMMANDS: Final = "orders.commands.paper"
TESTNET_COMMANDS: Final = "orders.commands.testnet"
EXECUTION_GROUP: Final = "execution"
PRIVATE_EVENTS: Final = "events.private"
USER_STREAM_PREFIX: Final = "events.user."
# Stored, rotated or deleted exchange keys ({"user_id"}), announced by the gateway after the commit (outbox):
# every execution process tails it, so a user's data stream starts (or stops) with their keys, not their orders.
TESTNET_KEYS: Final = "testnet.keys"
# Account events every events process tails ({"type", "user_id", "ts"}), announced by the gateway after the
# commit (outbox): USER_LOCKED closes the user's open sockets at once rather than when their token expires.
USER_EVENTS: Final = "users.events"
USER_LOCKED: Final = "USER_LOCKED"

MARKET_TICKER: Final = "market.ticker"
MARKET_DEPTH: Final = "market.depth"
MARKET_TRADES: Final = "market.trades"
MARKET_CANDLES: Final = "market.candles"
PUBLIC_STREAMS: Final = (MARKET_TICKER, MARKET_DEPTH, MARKET_TRADES, MARKET_CANDLES)

PRIVATE_TYPES: Final = frozenset({"ORDER_UPDATE", "TRADE", "POSITION_UPDATE", "BALANCE_UPDATE"})
# Many users' mark-driven POSITION_UPDATEs in one entry on PRIVATE_EVENTS (``position_marks``): the events
# service hands each its own as POSITION_UPDATE frames sharing the entry's id. Never sent as such.
POSITION_MARKS: Final = "POSITION_MARKS"
# Market venues. Public market events carry "venue" next to "symbol" (absent = paper, as before venues); a
# client names a venue's channel with a suffix: "ticker:BTCUSDT@testnet" ("ticker:BTCUSDT" is paper's).
PAPER_VENUE: Final = "paper"
TESTNET_VENUE: Final = "testnet"
MARKET_VENUES: Final = (PAPER_VENUE, TESTNET_VENUE)

# Public channel kind (client's "ticker:BTCUSDT") -> (stream, message type)
PUBLIC_CHANNELS: Final = {
    "ticker": (MARKET_TICKER, "TICKER"),
    "depth": (MARKET_DEPTH, "DEPTH"),
    "trades": (MARKET_TRADES, "MARKET_TRADE"),
    "candles": (MARKET_CANDLES, "CANDLE"),
}

# Retention (approximate MAXLEN) per stream; private user streams bound how far back `resume` reaches.
RETENTION: Final[dict[str, int | None]] = {
    "orders.commands.*": 1_000_000,
    PRIVATE_EVENTS: 200_000,
    USER_STREAM_PREFIX + "*": 10_000,
    "market.*": 20_000,
    TESTNET_KEYS: 10_000,
    USER_EVENTS: 10_000,
}


# A user's stream is deleted after this long without an event (USER_STREAM_IDLE_S): bounded by activity.
USER_STREAM_IDLE_S: Final = 7 * 24 * 3600.0


def command_stream(mode: str) -> str:
    """The stream of `mode`'s commands when paper execution is one partition (`CommandRouting.stream` else)."""
    return PAPER_COMMANDS if mode == "paper" else TESTNET_COMMANDS


def paper_stream(partition: int, partitions: int) -> str:
    """The paper commands of one partition. The count is in the name: processes configured with different
    counts never share a stream (their commands wait for the worker's sweep instead of reaching the wrong book).
    One partition keeps the historical name."""
    return PAPER_COMMANDS if partitions <= 1 else f"{PAPER_COMMANDS}.{partition}of{partitions}"


@dataclass(frozen=True, slots=True)
class CommandRouting:
    """Where an order's commands go: paper books are partitioned by symbol (EXECUTION_PARTITIONS), each
    partition with its own stream and one writer; testnet commands keep one stream that every execution
    process consumes (no book in memory: any process may place any user's order, idempotently by id).

    A symbol's partition is its place among the configured symbols, sorted, modulo the count: balanced for
    a few symbols and the same in every process configured alike (a symbol not configured falls back to a
    stable hash)."""

    symbols: tuple[str, ...] = ()
    partitions: int = 1
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_index", {s: i for i, s in enumerate(sorted(set(self.symbols)))})

    def partition_of(self, symbol: str) -> int:
        if self.partitions <= 1:
            return 0
        index = self._index.get(symbol)
        return (zlib.crc32(symbol.encode()) if index is None else index) % self.partitions

    def symbols_of(self, partition: int) -> tuple[str, ...]:
        return tuple(s for s in self.symbols if self.partition_of(s) == partition)

    def paper_stream(self, partition: int) -> str:
        return paper_stream(partition, self.partitions)

    def stream(self, mode: str, symbol: str) -> str:
        if mode != "paper":
            return TESTNET_COMMANDS
        return paper_stream(self.partition_of(symbol), self.partitions)


def order_command(kind: str, order_id: str, mode: str, *, tag: str | None = None) -> dict[str, str]:
    """A command on ``command_stream(mode)``; its id makes a redelivery recognisable to the worker. A ``tag``
    (a reconciliation repair's ``recon-<id>``) makes a deliberate re-send a new command, not a redelivery."""
    command_id = f"{order_id}:{kind}:{tag}" if tag else f"{order_id}:{kind}"
    return {"command_id": command_id, "kind": kind, "order_id": order_id, "mode": mode}


def user_stream(user_id: str) -> str:
    return USER_STREAM_PREFIX + user_id


def private_event(event_type: str, user_id: str, ts: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """The payload of a private event on the bus; the events service adds the stream id as `id`."""
    if event_type not in PRIVATE_TYPES:
        raise ValueError(f"unknown private event type {event_type}")
    return {"type": event_type, "user_id": user_id, "ts": ts.isoformat(), "data": data}


def position_marks(ts: datetime, marks: Iterable[tuple[str, datetime, dict[str, Any]]]) -> dict[str, Any]:
    """One PRIVATE_EVENTS entry for a re-mark's POSITION_UPDATEs, (user id, ts, data) each: a re-mark touches
    every open position a few times a second, and an entry each made the bus, not the marking, its cost (the
    price feed's publishing, every reader's decoding: issue #16). Not mirrored: marks are not resumed."""
    return {
        "type": POSITION_MARKS,
        "ts": ts.isoformat(),
        "data": {"positions": [{"user_id": u, "ts": t.isoformat(), "data": d} for u, t, d in marks]},
    }


def public_event(
    event_type: str, symbol: str, ts: datetime, data: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {"type": event_type, "symbol": symbol, "ts": ts.isoformat(), "data": data, **extra}
