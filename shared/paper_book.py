"""The paper book snapshot: the execution worker holding a partition's paper lease publishes its open book to
the market data store (Redis when distributed, memory in the embedded process), one key per partition, so
reconciliation in any process merges them and compares the same thing with the database. Versioned and
timestamped: a reader treats an old snapshot as "no book" (its worker is gone), and compares only rows not
changed since the snapshot was taken (merged: since the oldest partition's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.marketdata import MarketData

KIND = "paper_book"  # the market data kind (one key per partition: `key`)
KEY = "all"  # the whole book when execution is one partition
PUBLISH_EVERY_S = 1.0  # the worker republishes at least this often while it holds the lease
COALESCE_S = 0.2  # and after a batch, at most this often
MAX_AGE = timedelta(seconds=10)  # an older snapshot was left by a worker that is gone


@dataclass(frozen=True, slots=True)
class BookEntry:
    """One open order as the book holds it: what it still rests and what it still locks."""

    order_id: str
    account: str
    symbol: str
    side: str
    remaining_quantity: Decimal
    price: Decimal | None
    lock_asset: str
    locked: Decimal


@dataclass(frozen=True, slots=True)
class BookSnapshot:
    version: int
    taken_at: datetime
    writer: str
    orders: list[BookEntry]


def _plain(d: Decimal | None) -> str | None:
    return None if d is None else format(d, "f")


def encode(snapshot: BookSnapshot) -> dict[str, Any]:
    return {
        "version": snapshot.version,
        "ts": snapshot.taken_at.isoformat(),
        "writer": snapshot.writer,
        "orders": [
            {
                "id": e.order_id,
                "account": e.account,
                "symbol": e.symbol,
                "side": e.side,
                "remaining_quantity": _plain(e.remaining_quantity),
                "price": _plain(e.price),
                "lock_asset": e.lock_asset,
                "locked": _plain(e.locked),
            }
            for e in snapshot.orders
        ],
    }


def decode(value: dict[str, Any]) -> BookSnapshot:
    """Raises KeyError/ValueError/TypeError on a malformed value (the reader reports it as unreadable)."""
    return BookSnapshot(
        version=int(value["version"]),
        taken_at=datetime.fromisoformat(str(value["ts"])),
        writer=str(value["writer"]),
        orders=[
            BookEntry(
                order_id=str(o["id"]),
                account=str(o["account"]),
                symbol=str(o["symbol"]),
                side=str(o["side"]),
                remaining_quantity=Decimal(o["remaining_quantity"]),
                price=Decimal(o["price"]) if o.get("price") is not None else None,
                lock_asset=str(o["lock_asset"]),
                locked=Decimal(o["locked"]),
            )
            for o in value["orders"]
        ],
    )


def key(partition: int, partitions: int) -> str:
    return KEY if partitions <= 1 else f"{partition}of{partitions}"


async def publish(store: MarketData, snapshot: BookSnapshot, *, key: str = KEY) -> None:
    await store.put(KIND, key, encode(snapshot))


async def latest(store: MarketData, *, partitions: int = 1) -> BookSnapshot | str:
    """The last published book (every partition's, merged), or why there is none usable. The merged snapshot
    is as old as its oldest part, whose writer it names."""
    parts: list[BookSnapshot] = []
    for k in range(partitions):
        name = key(k, partitions)
        where = "" if partitions <= 1 else f" of partition {name}"
        try:
            value = await store.get(KIND, name)
        except Exception as exc:
            return f"market data store unreachable ({type(exc).__name__})"
        if value is None:
            return f"no execution worker has published its paper book{where}"
        try:
            snap = decode(value)
        except (KeyError, ValueError, TypeError, ArithmeticError):
            return f"the published paper book{where} is unreadable"
        parts.append(snap if partitions <= 1 else _named(snap, name))
    if len(parts) == 1:
        return parts[0]
    oldest = min(parts, key=lambda p: p.taken_at)
    orders = [e for p in parts for e in p.orders]
    return BookSnapshot(sum(p.version for p in parts), oldest.taken_at, oldest.writer, orders)


def _named(snap: BookSnapshot, name: str) -> BookSnapshot:
    return BookSnapshot(snap.version, snap.taken_at, f"{snap.writer} (partition {name})", snap.orders)
