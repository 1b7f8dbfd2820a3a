"""The paper book snapshot: the execution worker holding the paper lease publishes its open book to the market
data store (Redis when distributed, memory in the embedded process), so reconciliation in any process compares
the same thing with the database. Versioned and timestamped: a reader treats an old snapshot as "no book"
(its worker is gone), and compares only rows not changed since the snapshot was taken."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from shared.marketdata import MarketData

KIND = "paper_book"  # the market data kind (one key: the whole book)
KEY = "all"
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


async def publish(store: MarketData, snapshot: BookSnapshot) -> None:
    await store.put(KIND, KEY, encode(snapshot))


async def latest(store: MarketData) -> BookSnapshot | str:
    """The last published snapshot, or why there is none usable."""
    try:
        value = await store.get(KIND, KEY)
    except Exception as exc:
        return f"market data store unreachable ({type(exc).__name__})"
    if value is None:
        return "no execution worker has published its paper book"
    try:
        return decode(value)
    except (KeyError, ValueError, TypeError, ArithmeticError):
        return "the published paper book is unreadable"
