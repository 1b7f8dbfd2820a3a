"""The published book and the database are not read atomically: an order changed after the snapshot was taken
is left for the next report, while one unchanged since is compared (on SQLite and PostgreSQL, the worker in
the app's process publishing to the memory or Redis market data store)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from sqlalchemy import update

from reconciliation.paper import SnapshotMemory, check_books, published_book
from shared.db import unit_of_work
from shared.models import Order
from tests.reconciliation.conftest import admin_auth, run_report
from tests.reconciliation.test_paper import order, status_is
from tests.support.api import Api
from tests.support.eventually import eventually


async def test_rows_changed_after_the_snapshot_wait_for_the_next_one(recon: Api) -> None:
    api = recon
    user = await api.user("trader@example.com")
    oid = await order(api, user, side="BUY", type="LIMIT", quantity="0.002", price="59000")
    await eventually(lambda: status_is(api, user, oid, "NEW"))
    book = await published_book(api.parts.market_data, api.parts.clock)
    assert isinstance(book, SnapshotMemory) and book.taken_at is not None
    assert [b.order_id for b in book.open_book_orders() if not b.account.startswith("system/")] == [oid]

    async def drift(updated_at_offset: timedelta) -> list[str]:
        """The row's remaining quantity disagrees with the book, last written at taken_at + offset."""
        assert book.taken_at is not None
        async with unit_of_work(api.parts.sessions) as s:
            await s.execute(
                update(Order)
                .where(Order.id == oid)  # type: ignore[arg-type]
                .values(quantity=Decimal("0.003"), updated_at=book.taken_at + updated_at_offset)
            )
        async with api.parts.read_sessions() as session:
            out = await check_books(session, book)
        return [f.kind for f in out.findings] + out.notes

    assert await drift(timedelta(seconds=1)) == [
        "1 order(s) changed after the book snapshot: compared next time"
    ]
    assert await drift(timedelta(seconds=-1)) == ["book_quantity_mismatch"]


async def test_a_waiting_stop_order_is_in_the_published_book(recon: Api) -> None:
    """A stop order waiting for its trigger rests in the database (NEW) and in the book's stop list, not on the
    order book: the snapshot carries it, so a clean system reports clean."""
    api = recon
    user = await api.user("stopper@example.com")
    body = {"side": "SELL", "type": "STOP_LOSS_LIMIT", "quantity": "0.001", "price": "29000"}
    oid = await order(api, user, stop_price="30000", **body)
    await eventually(lambda: status_is(api, user, oid, "NEW"))
    admin = await admin_auth(api)
    report = await run_report(api, admin)
    assert report["mismatch_count"] == 0, report["mismatches"]
    books = next(c for c in report["summary"]["checks"] if c["name"] == "books_vs_database")
    assert books["checked"] == 1, books
