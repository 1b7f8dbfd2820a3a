"""The web frontend in a real Chromium against the real system (gateway + worker + market maker + events)."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from shared.db import unit_of_work
from shared.models import Balance
from tests.browser.conftest import PHONE, SCREENSHOTS
from tests.browser.server import ADMIN_EMAIL, ADMIN_PASSWORD, RunningSystem

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"


def shot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def new_email() -> str:
    return f"trader-{uuid.uuid4().hex[:10]}@example.com"


def register_in_ui(page: Any, email: str) -> None:
    page.goto("/register")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/trade/BTCUSDT$"))
    expect(page.locator("#session")).to_contain_text(email)


def login_in_ui(page: Any, email: str, password: str = PASSWORD) -> None:
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_label("Password").press("Enter")
    expect(page).to_have_url(re.compile(r"/trade/"))


def wait_for_liquidity(page: Any) -> None:
    """The market maker quotes once the ticker reaches it: asks and bids appear on the ladder."""
    expect(page.locator("#order-book .level-ask").first).to_be_visible(timeout=20_000)
    expect(page.locator("#order-book .level-bid").first).to_be_visible()


def test_register_market_order_fills_and_position_shows_pnl(page: Any, system: RunningSystem) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/login$"))
    email = new_email()
    register_in_ui(page, email)

    band = page.locator("#mode-band")
    expect(band).to_have_attribute("data-mode", "paper")
    expect(band).to_contain_text("PAPER")
    expect(page.locator("#last-price")).to_have_text(re.compile(r"^\d+\.\d{2}$"))  # tick 0.01 -> 2 decimals
    wait_for_liquidity(page)
    expect(page.locator("#balances-body tr[data-asset=USDT]")).to_contain_text("10000")
    expect(page.locator("#conn")).to_have_attribute("data-status", "live")

    page.get_by_label("Order type").select_option("MARKET")
    page.get_by_label("Quantity (BTC)").fill("0.01")
    expect(page.locator("#ticket-quote")).to_contain_text("avg")
    page.get_by_role("button", name="Buy BTC").click()

    filled = page.locator("#order-history-body tr[data-status=FILLED]")
    expect(filled).to_have_count(1, timeout=20_000)
    expect(filled).to_contain_text("0.01000")  # step 0.00001 -> 5 decimals
    position = page.locator("#positions-body tr[data-symbol=BTCUSDT]")
    expect(position).to_be_visible()
    expect(position.locator("td").nth(1)).to_have_text("0.01000")
    expect(position.locator(".upnl")).to_have_text(re.compile(r"^-?\d+\.\d{2}$"))
    expect(page.locator("#balances-body tr[data-asset=BTC]")).to_be_visible()

    filled.get_by_role("button", name="Fills").click()
    expect(page.locator("#order-history-body .fills-row")).to_contain_text("TAKER", ignore_case=True)

    shot(page, "trade_wide_after_market_fill")

    # A reload keeps the session (refresh token in this tab's sessionStorage; access token only in memory).
    page.reload()
    expect(page.locator("#session")).to_contain_text(email)
    stored = page.evaluate("() => ({local: {...localStorage}, session: Object.keys(sessionStorage)})")
    assert stored["local"] == {}
    assert stored["session"] == ["tradebridge.refresh_token"]

    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    assert page.evaluate("() => sessionStorage.length") == 0
    page.goto("/trade/BTCUSDT")
    expect(page).to_have_url(re.compile(r"/login$"))


@pytest.mark.parametrize("viewport", [PHONE])
def test_limit_order_validation_then_cancel_on_a_phone(page: Any, system: RunningSystem) -> None:
    register_in_ui(page, new_email())
    wait_for_liquidity(page)
    ticket = page.locator("#ticket")
    expect(ticket).to_be_in_viewport()  # the ticket comes first on a narrow screen

    # The API's problem+json lands next to the field it names.
    page.get_by_label("Order type").select_option("LIMIT")
    page.get_by_label("Quantity (BTC)").fill("0.000011")
    page.get_by_label("Limit price (USDT)").fill("50000.00")
    page.get_by_label("Limit price (USDT)").press("Enter")  # keyboard submit
    expect(page.locator("#ticket-quantity-error")).not_to_be_empty()
    expect(page.get_by_label("Quantity (BTC)")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("Quantity (BTC)")).to_be_focused()

    page.get_by_label("Quantity (BTC)").fill("0.001")
    page.get_by_label("Limit price (USDT)").fill("50000.001")
    page.get_by_label("Limit price (USDT)").press("Enter")
    expect(page.locator("#ticket-price-error")).not_to_be_empty()

    page.get_by_label("Limit price (USDT)").fill("50000.00")
    page.get_by_label("Limit price (USDT)").press("Enter")
    expect(page.locator("#ticket-price-error")).to_be_empty()
    resting = page.locator("#open-orders-body tr[data-status=NEW]")
    expect(resting).to_have_count(1, timeout=20_000)
    expect(resting).to_contain_text("50000.00")
    expect(page.locator("#balances-body tr[data-asset=USDT] td").nth(2)).to_have_text(
        re.compile(r"^50\.0\d*$")
    )  # locked: notional + fee

    shot(page, "trade_phone_resting_limit")
    resting.get_by_role("button", name=re.compile("^Cancel BUY LIMIT order")).click()
    expect(page.locator("#open-orders-body tr[data-order-id]")).to_have_count(0, timeout=20_000)
    expect(page.locator("#order-history-body tr[data-status=CANCELED]")).to_have_count(1)
    expect(page.locator("#balances-body tr[data-asset=USDT] td").nth(2)).to_have_text("0")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"page overflows the phone screen horizontally ({width}px)"


def test_live_socket_keeps_the_token_out_of_its_url_and_the_ticket_shows_the_exact_notional(
    page: Any, system: RunningSystem
) -> None:
    sockets: list[Any] = []
    page.on("websocket", lambda ws: sockets.append(ws))
    register_in_ui(page, new_email())
    expect(page.locator("#conn")).to_have_attribute("data-status", "live")  # the embedded app serves /ws
    assert sockets and all("token" not in ws.url for ws in sockets), [ws.url for ws in sockets]

    page.get_by_label("Order type").select_option("LIMIT")
    page.get_by_label("Quantity (BTC)").fill("0.00001")
    page.get_by_label("Limit price (USDT)").fill("100500.00")
    # 0.00001 x 100500.00 = 1.005, rounded half up on the decimal string; the fee (0.1%) and the total with it
    expect(page.locator("#ticket-cost")).to_have_text("1.01 USDT")
    expect(page.locator("#ticket-fee")).to_have_text("0.001005 USDT (0.1%)")
    expect(page.locator("#ticket-total")).to_have_text("1.01 USDT")


def seed_unjournaled_balance(system: RunningSystem) -> str:
    """A trader whose USDT balance row has no journal postings behind it: a drift the report must show."""
    r = httpx.post(f"{system.url}/auth/register", json={"email": new_email(), "password": PASSWORD})
    assert r.status_code == 201, r.text
    user_id = str(r.json()["id"])

    async def seed(rt: Any) -> None:
        async with unit_of_work(rt.sessions) as s:
            s.add(
                Balance(
                    account_id=user_id,
                    asset="USDT",
                    free=Decimal("5"),
                    locked=Decimal(0),
                    updated_at=rt.clock.now(),
                )
            )

    system.call(seed)
    return user_id


def test_admin_runs_a_reconciliation_and_opens_its_report(page: Any, system: RunningSystem) -> None:
    trader_id = seed_unjournaled_balance(system)
    login_in_ui(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.get_by_role("link", name="Admin").click()
    expect(page).to_have_url(re.compile(r"/admin$"))

    page.get_by_role("button", name="Run reconciliation now").click()
    heading = page.locator("#report-detail h2")
    expect(heading).to_have_text(re.compile(r"^Report \S+$"))
    report_id = heading.inner_text().removeprefix("Report ")
    listed = page.locator(f'#reports-body tr[data-report-id="{report_id}"]')
    expect(listed).to_be_visible()
    expect(listed).to_have_attribute("data-status", "done", timeout=30_000)  # the list follows the run
    drift = page.locator("#mismatches tr.mismatch", has_text="balance_journal_mismatch")
    expect(drift).to_have_count(1)
    expect(drift).to_contain_text(trader_id)
    expect(drift).to_contain_text("5/0")

    # Opened again from the list, on a fresh page.
    page.reload()
    expect(page.locator("#report-detail")).to_contain_text("Select a report.")
    listed.get_by_role("button", name=f"Open report {report_id}").click()
    expect(heading).to_have_text(f"Report {report_id}")
    expect(page.locator("#report-detail dd").first).to_have_text(report_id)
    expect(drift).to_contain_text(trader_id)
    shot(page, "admin_reconciliation_report")

    with page.expect_download() as info:
        page.get_by_role("button", name="Download CSV").click()
    download = info.value
    assert download.suggested_filename == f"reconciliation-{report_id}.csv"
    lines = Path(download.path()).read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("id,kind,scope,user_id,asset")
    assert any(",balance_journal_mismatch,paper," in line and trader_id in line for line in lines[1:])


def test_non_admin_sees_no_admin_page(page: Any, system: RunningSystem) -> None:
    register_in_ui(page, new_email())
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    page.goto("/admin")
    expect(page.get_by_role("heading", name="Admins only")).to_be_visible()


# Last in the module: once a user is in testnet mode the embedded app on SQLite starts failing writes with
# "database is locked" (testnet venue vs. other writers; reported), which would slow the tests after it.
def test_testnet_switch_needs_keys_and_shows_a_different_band(
    page: Any, system: RunningSystem, binance: Any
) -> None:
    register_in_ui(page, new_email())
    page.locator("#mode-switch").get_by_label("Testnet").check()
    expect(page.locator("#toasts")).to_contain_text("Save your Binance testnet keys")
    expect(page.locator("#mode-band")).to_have_attribute("data-mode", "paper")
    expect(page.locator("#mode-switch").get_by_label("Paper")).to_be_checked()

    account = binance.state.create_account({"USDT": "10000", "BTC": "1"})
    page.get_by_role("link", name="Account").click()
    keys_form = page.locator("#keys-form")  # the page also lists TradeBridge's own API keys
    keys_form.get_by_label("API key", exact=True).fill(account.api_key)
    keys_form.get_by_label("API secret", exact=True).fill(account.api_secret)
    page.get_by_role("button", name="Save testnet keys").click()
    hint = page.locator("#keys-list .key-hint")
    expect(hint).to_be_visible(timeout=15_000)
    assert account.api_key not in hint.inner_text()
    assert account.api_secret not in page.content()
    expect(keys_form.get_by_label("API secret", exact=True)).to_have_value("")

    page.locator("#mode-switch").get_by_label("Testnet").check()
    band = page.locator("#mode-band")
    expect(band).to_have_attribute("data-mode", "testnet")
    expect(band).to_contain_text("TESTNET")
    expect(page.locator("body")).to_have_class(re.compile(r"\bmode-testnet\b"))
    expect(page.locator("#profile-mode")).to_contain_text("Testnet")
    paper_blue = "rgb(31, 111, 235)"
    assert band.evaluate("n => getComputedStyle(n).backgroundColor") != paper_blue
    page.get_by_role("link", name="Trade", exact=True).click()
    expect(page.locator("#mode-band")).to_have_attribute("data-mode", "testnet")  # visible on every page
