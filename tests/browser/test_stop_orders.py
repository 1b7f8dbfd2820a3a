"""Stop orders and cancel-replace from the web app (issue #17, item 4) in a real Chromium against the real system,
paper mode: the ticket places a stop limit sell, the open orders show it waiting with its stop price, and Amend
replaces it so that exactly one live order remains, with the new price."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.server import RunningSystem
from tests.browser.test_web import PASSWORD, new_email, register_in_ui, shot, wait_for_liquidity
from tests.support.eventually import eventually_sync

pytestmark = pytest.mark.browser


def open_orders(system: RunningSystem, email: str) -> list[dict[str, Any]]:
    """The user's open orders from the API (the source of truth the page must agree with)."""
    login = httpx.post(f"{system.url}/auth/login", json={"email": email, "password": PASSWORD})
    assert login.status_code == 200, login.text
    headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
    r = httpx.get(f"{system.url}/api/orders?status=open", headers=headers)
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_stop_limit_sell_from_the_ticket_then_amend_its_price(page: Any, system: RunningSystem) -> None:
    email = new_email()
    register_in_ui(page, email)
    wait_for_liquidity(page)

    # Something to sell: a market buy first.
    page.get_by_label("Order type").select_option("MARKET")
    page.get_by_label("Quantity (BTC)").fill("0.01")
    page.get_by_role("button", name="Buy BTC").click()
    expect(page.locator("#order-history-body tr[data-status=FILLED]")).to_have_count(1, timeout=20_000)

    # The stop price field is only there for stop types.
    expect(page.get_by_label("Stop price (USDT)")).to_be_hidden()
    page.get_by_label("Sell", exact=True).check()
    page.get_by_label("Order type").select_option("STOP_LOSS_LIMIT")
    expect(page.get_by_label("Stop price (USDT)")).to_be_visible()
    expect(page.get_by_label("Time in force")).to_have_value("GTC")
    page.get_by_label("Quantity (BTC)").fill("0.005")
    page.get_by_label("Stop price (USDT)").fill("50000.00")
    page.get_by_label("Limit price (USDT)").fill("49900.00")
    page.get_by_label("Limit price (USDT)").press("Enter")  # keyboard submit

    waiting = page.locator("#open-orders-body tr[data-order-id][data-trigger=waiting]")
    expect(waiting).to_have_count(1, timeout=20_000)
    expect(waiting).to_contain_text("STOP_LOSS_LIMIT")
    expect(waiting.locator("td.stop-price")).to_have_text("50000.00")
    expect(waiting).to_contain_text("waiting for trigger")
    old_id = waiting.get_attribute("data-order-id")
    assert old_id

    # Amend by keyboard: the button opens a labelled form with the focus on its first field.
    amend = waiting.get_by_role("button", name=re.compile("^Amend SELL STOP_LOSS_LIMIT order"))
    amend.focus()
    page.keyboard.press("Enter")
    expect(amend).to_have_attribute("aria-expanded", "true")
    price = page.get_by_label("New limit price")
    expect(price).to_be_focused()
    page.keyboard.press("Escape")  # closes the form, the focus back on its button
    expect(price).to_have_count(0)
    expect(amend).to_be_focused()
    expect(amend).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("Enter")
    expect(price).to_be_focused()
    expect(price).to_have_value("49900.00")
    expect(page.get_by_label("New stop price")).to_have_value("50000.00")
    price.fill("49800.00")
    shot(page, "trade_amend_stop_limit")
    price.press("Enter")

    # The old order leaves the open orders (canceled by the replace) and its replacement is the only one there.
    expect(page.locator(f'#open-orders-body tr[data-order-id="{old_id}"]')).to_have_count(0, timeout=20_000)
    rows = page.locator("#open-orders-body tr[data-order-id]")
    expect(rows).to_have_count(1)
    expect(rows).to_have_attribute("data-trigger", "waiting")
    expect(rows).to_contain_text("49800.00")
    expect(rows.locator("td.stop-price")).to_have_text("50000.00")
    expect(rows.get_by_role("button", name=re.compile("^Amend SELL"))).to_be_focused()  # on the replacement

    def one_live_replacement() -> dict[str, Any]:
        live = open_orders(system, email)
        assert len(live) == 1, live
        return live[0]

    live = eventually_sync(one_live_replacement, timeout=20, message="exactly one live order after the amend")
    assert live["order_id"] != old_id
    assert live["replaces"] == old_id
    assert (live["type"], live["side"]) == ("STOP_LOSS_LIMIT", "SELL")
    assert Decimal(live["price"]) == Decimal("49800") and Decimal(live["stop_price"]) == Decimal("50000")
    assert Decimal(live["quantity"]) == Decimal("0.005") and live["triggered_at"] is None
    expect(
        page.locator(f'#order-history-body tr[data-order-id="{old_id}"][data-status=CANCELED]')
    ).to_have_count(1)
