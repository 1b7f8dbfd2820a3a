"""The order ticket's figures and the account's pictures in Debian's Chromium against a running system
(issue #19 items 2 and 3): the ticket shows the side's balance, the cost, fee and total, and its 25-100%
buttons make sizes the server accepts; toasts cover neither the ticket nor the book (wide and phone); the
equity curve moves after a fill without a reload; the history's CSV export is the API's page."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.binance_double.server import BinanceDouble
from tests.browser.conftest import PHONE
from tests.browser.server import RunningSystem, running_system

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, binance: BinanceDouble) -> Iterator[RunningSystem]:
    """`up` as it runs, with equity snapshots every 2 s (the default interval is minutes)."""
    db = tmp_path_factory.mktemp("pictures") / "tradebridge.db"
    with running_system(db, binance.url, equity_snapshot_interval_s=2) as running:
        yield running


def register(page: Any, system: RunningSystem) -> dict[str, str]:
    """A new user, registered in the UI; returns the API's Authorization header for the same user."""
    email = f"pictures-{uuid.uuid4().hex[:10]}@example.com"
    page.goto("/register")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/trade/BTCUSDT$"))
    r = httpx.post(f"{system.url}/auth/login", json={"email": email, "password": PASSWORD})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def wait_for_liquidity(page: Any) -> None:
    expect(page.locator("#order-book .level-ask").first).to_be_visible(timeout=30_000)


def overlaps(a: dict[str, float], b: dict[str, float]) -> bool:
    return not (
        a["x"] + a["width"] <= b["x"]
        or b["x"] + b["width"] <= a["x"]
        or a["y"] + a["height"] <= b["y"]
        or b["y"] + b["height"] <= a["y"]
    )


def assert_toast_covers_nothing(page: Any) -> None:
    toast = page.locator("#toasts .toast").last
    expect(toast).to_be_visible()
    box = toast.bounding_box()
    for target in ("section.area-ticket", "section.area-book"):
        other = page.locator(target).bounding_box()
        assert other is not None and not overlaps(box, other), (target, box, other)


def market_buy(system: RunningSystem, auth: dict[str, str], qty: str = "0.01") -> dict[str, Any]:
    body = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": qty}
    r = httpx.post(f"{system.url}/api/orders", json=body, headers=auth)
    assert r.status_code == 202, r.text
    return r.json()


@pytest.mark.parametrize("viewport", [{"width": 1440, "height": 1000}, PHONE], ids=["wide", "phone"])
def test_ticket_shows_balance_cost_and_valid_percent_sizes(page: Any, system: RunningSystem) -> None:
    auth = register(page, system)
    wait_for_liquidity(page)
    expect(page.locator("#ticket-available")).to_have_text("Available: 10000 USDT")

    # selling with no BTC (before any buy, so no fill can race the check): the percent
    # buttons say why in plain words instead of making a size
    page.locator("#ticket-side-sell").check()
    expect(page.locator("#ticket-available")).to_have_text("Available: 0 BTC")
    page.locator("#ticket-pct-50").click()
    expect(page.locator("#ticket-quantity-error")).to_contain_text("less than the smallest order")
    page.locator("#ticket-side-buy").check()
    expect(page.locator("#ticket-available")).to_have_text("Available: 10000 USDT")

    ask = page.locator(
        "#order-book .level-ask .px"
    ).last.inner_text()  # the best ask (the ladder ends with it)
    page.get_by_label("Order type").select_option("LIMIT")
    page.get_by_label(re.compile(r"^Limit price")).fill(ask)
    info = httpx.get(
        f"{system.url}/api/ticket", params={"symbol": "BTCUSDT", "side": "BUY"}, headers=auth
    ).json()
    step = Decimal(info["step_size"])
    for pct in (25, 50, 75, 100):
        page.locator(f"#ticket-pct-{pct}").click()
        qty = page.get_by_label("Quantity (BTC)").input_value()
        assert re.fullmatch(r"\d+\.\d{5}", qty), qty  # plain digits on the step's decimals
        q = Decimal(qty)
        assert q % step == 0 and q * Decimal(ask) >= Decimal(info["min_notional"])
        locked = q * Decimal(ask) * (1 + Decimal(info["reserve_fee_rate"]))
        assert locked <= Decimal(10000) * pct / 100, (pct, qty)
        cost = q * Decimal(ask)
        expect(page.locator("#ticket-cost")).to_have_text(f"{cost.quantize(Decimal('0.01'))} USDT")
        fee = cost * Decimal("0.001")
        plain_fee = format(round(fee, 8).normalize(), "f")  # up to 8 decimals, no trailing zeros, no exponent
        expect(page.locator("#ticket-fee")).to_have_text(f"{plain_fee} USDT (0.1%)")
        expect(page.locator("#ticket-total")).to_have_text(f"{(cost + fee).quantize(Decimal('0.01'))} USDT")

    # a size the balance cannot cover is said in plain words before anything is sent
    page.get_by_label("Quantity (BTC)").fill("1")
    page.get_by_role("button", name="Buy BTC").click()
    expect(page.locator("#ticket-quantity-error")).to_contain_text("Not enough USDT: this order needs up to")
    expect(page.locator("#ticket-quantity-error")).to_contain_text("you have 10000 available")

    # the 25% size is accepted as it is, and the toast saying so covers neither the ticket nor the book
    page.locator("#ticket-pct-25").click()
    page.get_by_role("button", name="Buy BTC").click()
    expect(page.locator("#toasts")).to_contain_text("Order accepted")
    assert_toast_covers_nothing(page)
    expect(page.locator("#ticket-available")).not_to_have_text("Available: 10000 USDT")


def test_equity_curve_moves_after_a_fill(page: Any, system: RunningSystem) -> None:
    auth = register(page, system)
    wait_for_liquidity(page)
    order = market_buy(system, auth)

    def filled() -> bool:
        r = httpx.get(f"{system.url}/api/orders/{order['order_id']}", headers=auth)
        return r.json()["status"] == "FILLED"

    page.goto("/account")
    chart = page.locator("#equity-chart")
    expect(chart).to_be_visible(timeout=20_000)
    assert filled()
    points_before = int(chart.get_attribute("data-points"))
    line_before = page.locator("#equity-line").get_attribute("d")
    expect(page.locator("#equity-summary")).to_contain_text("USDT")

    market_buy(system, auth, "0.02")  # a fill: its snapshot arrives and the page shows it without a reload
    expect(chart).not_to_have_attribute("data-points", str(points_before), timeout=20_000)
    api_points = httpx.get(f"{system.url}/api/equity", headers=auth).json()["points"]
    assert any(p["reason"] == "fill" for p in api_points)
    expect(page.locator("#equity-line")).not_to_have_attribute("d", line_before)
    last = page.locator("#equity-chart").get_attribute("data-last")
    assert re.fullmatch(r"\d+(\.\d+)?", last), last  # plain digits
    # realized PnL per day and the per-position PnL are on the same page
    expect(page.locator("#account-positions tr[data-symbol=BTCUSDT]")).to_be_visible()
    expect(page.locator("#pnl-body tr[data-day]")).to_have_count(1)
    expect(page.locator("#pnl-chart rect[data-day]")).to_have_count(1)  # the day's bar, beside its table row


def test_equity_curve_grows_with_the_schedules_snapshots_while_the_page_is_open(
    page: Any, system: RunningSystem
) -> None:
    """Snapshots are not pushed: the page asks for the curve again at the schedule's pace (`interval_s`, 2 s
    here), so an open page shows the interval snapshots without a fill or a reload."""
    auth = register(page, system)
    wait_for_liquidity(page)
    market_buy(system, auth)
    page.goto("/account")
    chart = page.locator("#equity-chart")
    expect(chart).to_be_visible(timeout=20_000)
    points = int(chart.get_attribute("data-points"))
    expect(chart).not_to_have_attribute("data-points", str(points), timeout=15_000)  # no fill since
    assert int(chart.get_attribute("data-points")) > points


def _as_csv(item: dict[str, Any]) -> dict[str, str]:
    def cell(v: Any) -> str:
        return "" if v is None else "true" if v is True else "false" if v is False else str(v)

    return {k: cell(v) for k, v in item.items()}


def test_history_filters_and_csv_export_match_the_api(
    page: Any, system: RunningSystem, tmp_path: Path
) -> None:
    auth = register(page, system)
    wait_for_liquidity(page)
    for qty in ("0.01", "0.02", "0.03"):
        market_buy(system, auth, qty)
    page.goto("/account")
    rows = page.locator("#history-orders tbody tr[data-order-id]")
    expect(rows).to_have_count(3, timeout=20_000)

    page.locator("#hist-side").select_option("SELL")
    page.get_by_role("button", name="Apply").click()
    expect(page.locator("#history-orders tbody")).to_contain_text("No orders match")
    page.locator("#hist-side").select_option("BUY")
    page.get_by_role("button", name="Apply").click()
    expect(rows).to_have_count(3)

    with page.expect_download() as caught:
        page.locator("#hist-export").click()
    path = tmp_path / "orders.csv"
    caught.value.save_as(path)
    exported = list(csv.DictReader(io.StringIO(path.read_text())))
    api_page = httpx.get(
        f"{system.url}/api/history/orders",
        params={"mode": "paper", "side": "BUY", "limit": 20},
        headers=auth,
    ).json()
    assert exported == [_as_csv(o) for o in api_page["items"]]
    assert len(exported) == 3

    page.locator("#hist-tab-trades").click()
    expect(page.locator("#history-trades tbody tr[data-trade-id]").first).to_be_visible()
    with page.expect_download() as caught:
        page.locator("#hist-export").click()
    caught.value.save_as(tmp_path / "trades.csv")
    trades = list(csv.DictReader(io.StringIO((tmp_path / "trades.csv").read_text())))
    api_trades = httpx.get(
        f"{system.url}/api/history/trades", params={"mode": "paper", "side": "BUY", "limit": 20}, headers=auth
    ).json()
    assert trades == [_as_csv(t) for t in api_trades["items"]] and trades


def test_history_pages_back_and_forth_as_the_api_does(page: Any, system: RunningSystem) -> None:
    """21 orders: the first page shows the newest 20, Older the one left, Newer the first page again."""
    auth = register(page, system)
    wait_for_liquidity(page)
    body = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001", "price": "30000"}
    placed = []
    for _ in range(21):  # resting far below the market: nothing fills, each stays in the history
        r = httpx.post(f"{system.url}/api/orders", json=body, headers=auth)
        assert r.status_code == 202, r.text
        placed.append(r.json()["order_id"])
    page.goto("/account")
    rows = page.locator("#history-orders tbody tr[data-order-id]")
    expect(rows).to_have_count(20, timeout=20_000)
    expect(page.locator("#hist-page")).to_have_text("Page 1")
    expect(page.locator("#hist-newer")).to_be_disabled()
    first = [r.get_attribute("data-order-id") for r in rows.all()]
    api_first = httpx.get(
        f"{system.url}/api/history/orders", params={"mode": "paper", "limit": 20}, headers=auth
    ).json()
    assert first == [o["order_id"] for o in api_first["items"]]

    page.locator("#hist-older").click()
    expect(page.locator("#hist-page")).to_have_text("Page 2")
    expect(rows).to_have_count(1)
    expect(page.locator("#hist-older")).to_be_disabled()
    assert sorted([*first, rows.first.get_attribute("data-order-id")]) == sorted(placed)

    page.locator("#hist-newer").click()
    expect(page.locator("#hist-page")).to_have_text("Page 1")
    expect(rows).to_have_count(20)


@pytest.mark.parametrize("viewport", [{"width": 360, "height": 740}], ids=["phone360"])
def test_account_pictures_fit_a_phone(page: Any, system: RunningSystem) -> None:
    auth = register(page, system)
    wait_for_liquidity(page)
    market_buy(system, auth)
    page.goto("/account")
    expect(page.locator("#equity-chart")).to_be_visible(timeout=20_000)
    expect(page.locator("#history-orders tbody tr[data-order-id]")).to_have_count(1)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 360, f"the account page overflows a 360 px screen ({width}px)"
    chart = page.locator("#equity-chart").bounding_box()
    assert chart is not None and chart["x"] >= 0 and chart["x"] + chart["width"] <= 360
