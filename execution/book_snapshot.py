"""Publishing the paper book for reconciliation: the worker holding a partition's paper lease puts a snapshot of
its open orders (remaining quantity, price, what each still locks) into the market data store every second, and
after a batch (coalesced), under its partition's key, so a reconciliation in any process reads the books the same
way, merging the partitions (shared.paper_book)."""

from __future__ import annotations

import asyncio

import structlog

from execution.paper.exchange import PaperExchange, Side
from shared import paper_book
from shared.clock import Clock
from shared.marketdata import MarketData
from shared.symbols import split_symbol

log = structlog.get_logger(__name__)


def snapshot_of(exchange: PaperExchange, version: int, clock: Clock, writer: str) -> paper_book.BookSnapshot:
    """The open book as it is now (call between batches: then it agrees with what the database holds)."""
    taken_at = clock.now()
    entries: list[paper_book.BookEntry] = []
    for account in sorted({acc for acc, _ in exchange.open_locks()}):
        for u in exchange.open_orders(account):
            base, quote = split_symbol(u.symbol)
            entries.append(
                paper_book.BookEntry(
                    order_id=u.order_id,
                    account=u.account,
                    symbol=u.symbol,
                    side=str(u.side),
                    remaining_quantity=u.remaining_quantity,
                    price=u.price,
                    lock_asset=quote if u.side is Side.BUY else base,
                    locked=exchange.locked_for(u.order_id),
                )
            )
    return paper_book.BookSnapshot(version, taken_at, writer, entries)


class BookPublisher:
    """Coalesces publications: at most one per `COALESCE_S` after batches, at least one per `PUBLISH_EVERY_S`."""

    def __init__(
        self, store: MarketData, clock: Clock, writer: str, *, partition: int = 0, partitions: int = 1
    ) -> None:
        self.store = store
        self.clock = clock
        self.writer = writer
        self.key = paper_book.key(partition, partitions)
        self.version = 0
        self._last = float("-inf")

    def due(self, *, changed: bool) -> bool:
        """Whether `tick` would publish now."""
        wait = paper_book.COALESCE_S if changed else paper_book.PUBLISH_EVERY_S
        return asyncio.get_running_loop().time() - self._last >= wait

    async def tick(self, exchange: PaperExchange, *, changed: bool) -> None:
        if not self.due(changed=changed):
            return
        self._last = asyncio.get_running_loop().time()
        self.version += 1
        try:
            snapshot = snapshot_of(exchange, self.version, self.clock, self.writer)
            await paper_book.publish(self.store, snapshot, key=self.key)
        except Exception as exc:  # the store is down: reconciliation will see the snapshot age out
            log.warning("paper book publication failed", error=str(exc))
