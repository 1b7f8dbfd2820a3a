"""A stop order as the Binance-compatible API shows it, REST and user stream alike: its ``stopPrice``, and not
working (``isWorking`` false, ``workingTime`` -1, no ``W``) until its trigger fired, then working from that
moment. Pure rendering: the ccxt tests place real stop orders; the paper book's trigger has its own tests."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from events.binance_ws import execution_report
from gateway.binance_api import render
from shared.contracts import order_event_payload
from shared.models import Order

CREATED = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
TRIGGERED = datetime(2026, 12, 3, 12, 5, tzinfo=UTC)


def _stop(triggered_at: datetime | None) -> Order:
    return Order(
        id="o-1",
        user_id="u-1",
        client_order_id="c-1",
        request_hash="",
        mode="paper",
        symbol="BTCUSDT",
        side="SELL",
        type="STOP_LOSS_LIMIT",
        time_in_force="GTC",
        quantity=Decimal("0.001"),
        price=Decimal("29900"),
        stop_price=Decimal("30000"),
        triggered_at=triggered_at,
        status="NEW",
        created_at=CREATED,
        updated_at=triggered_at or CREATED,
    )


def test_rest_shows_the_stop_price_and_works_only_once_triggered() -> None:
    waiting = render.order_query(_stop(None), 7)
    assert (waiting["type"], waiting["stopPrice"], waiting["status"]) == (
        "STOP_LOSS_LIMIT",
        "30000.00000000",
        "NEW",
    )
    assert waiting["isWorking"] is False and waiting["workingTime"] == -1
    assert render.order_result(_stop(None), 7)["stopPrice"] == "30000.00000000"

    working = render.order_query(_stop(TRIGGERED), 7)
    assert working["isWorking"] is True and working["workingTime"] == int(TRIGGERED.timestamp() * 1000)
    assert "stopPrice" not in render.order_result(_stop(None).model_copy(update={"type": "LIMIT"}), 7)


def test_execution_report_carries_the_stop_price_and_working_time() -> None:
    def report(order: Order) -> dict[str, object]:
        return execution_report(  # from the ORDER_UPDATE data the worker publishes
            order_event_payload(order),
            7,
            event_ms=0,
            execution="NEW",
            status="NEW",
            executed=Decimal(0),
            quote=Decimal(0),
        )

    waiting = report(_stop(None))
    assert (waiting["o"], waiting["P"], waiting["w"]) == ("STOP_LOSS_LIMIT", "30000.00000000", False)
    assert "W" not in waiting
    working = report(_stop(TRIGGERED))
    assert working["w"] is True and working["W"] == int(TRIGGERED.timestamp() * 1000)
