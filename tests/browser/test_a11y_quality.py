"""The web app's quality bar in a real Chromium against the running system (issue #19, item 6):

- axe-core (npm's `axe-core`, gateway/web/node_modules) finds no serious or critical violation on any page:
  login, register, trade, account (with its API keys), admin;
- an order can be placed with the keyboard alone;
- at 360 px no page scrolls sideways, and the trading page's key panels do not overlap (bounding boxes);
- a toast never covers the order ticket or the book;
- the first load (log in, trading page drawn) transfers under 300 KB of JavaScript and CSS (the figure is
  printed: run with -s to see it)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.server import ADMIN_EMAIL, ADMIN_PASSWORD, RunningSystem
from tests.browser.test_web import (
    PASSWORD,
    login_in_ui,
    register_in_ui,
    seed_unjournaled_balance,
    shot,
    wait_for_liquidity,
)
from tests.support.eventually import eventually_sync

pytestmark = pytest.mark.browser

AXE = Path(__file__).resolve().parents[2] / "gateway" / "web" / "node_modules" / "axe-core" / "axe.min.js"
NARROW = {"width": 360, "height": 740}
FIRST_LOAD_BUDGET = 300 * 1024


@pytest.fixture(scope="module")
def axe_source() -> str:
    if not AXE.exists():
        pytest.fail("axe-core is not installed: scripts/install --dev (npm install in gateway/web)")
    return AXE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def trader(system: RunningSystem) -> Iterator[str]:
    """A user with an API key and a filled order, so the account page lists the key and draws its pictures
    (equity curve, PnL bars, positions, history rows) before axe looks at it."""
    email = f"quality-{uuid.uuid4().hex[:10]}@example.com"
    with httpx.Client(base_url=system.url, timeout=30) as c:
        assert c.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
        token = c.post("/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        assert c.post("/api/api-keys", json={"label": "bot"}, headers=auth).status_code == 201
        eventually_sync(
            lambda: c.get("/api/markets/BTCUSDT/depth").json()["asks"],
            timeout=60,
            message="no asks to buy from",
        )
        body = {"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"}
        order = c.post("/api/orders", json=body, headers=auth)
        assert order.status_code == 202, order.text
        eventually_sync(
            lambda: (
                c.get(f"/api/orders/{order.json()['order_id']}", headers=auth).json()["status"] == "FILLED"
            ),
            timeout=30,
            message="the trader's market buy did not fill",
        )
    yield email


def open_account_with_its_pictures(page: Any) -> None:
    """The account page once the key, the equity curve, the PnL bars and the history rows are drawn."""
    page.get_by_role("link", name="Account").click()
    expect(page.locator("#apikeys-list .key-hint").first).to_be_visible()
    expect(page.locator("#equity-chart")).to_be_visible(timeout=20_000)
    expect(page.locator("#pnl-chart rect[data-day]").first).to_be_attached()
    expect(page.locator("#account-positions tr[data-symbol=BTCUSDT]")).to_be_visible()
    expect(page.locator("#history-orders tbody tr[data-order-id]").first).to_be_visible()


def violations(page: Any, axe_source: str) -> list[dict[str, Any]]:
    """axe's serious and critical violations on the page as it is now. Evaluated through the DevTools protocol,
    which the page's CSP (script-src 'self') does not govern, so the page itself stays as served."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.evaluate(axe_source)
    found = page.evaluate(
        """async () => (await axe.run(document, {resultTypes: ["violations"]})).violations
             .filter((v) => v.impact === "serious" || v.impact === "critical")
             .map((v) => ({id: v.id, impact: v.impact, help: v.help,
                           nodes: v.nodes.slice(0, 5).map((n) => n.target.join(" "))}))"""
    )
    return list(found)


def assert_accessible(page: Any, axe_source: str, name: str) -> None:
    found = violations(page, axe_source)
    assert not found, f"{name}: {found}"


def test_axe_finds_no_serious_or_critical_violation_on_any_page(
    page: Any, system: RunningSystem, axe_source: str, trader: str
) -> None:
    page.goto("/login")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert_accessible(page, axe_source, "login")
    page.goto("/register")
    expect(page.get_by_role("button", name="Create account")).to_be_visible()
    assert_accessible(page, axe_source, "register")

    login_in_ui(page, trader)
    wait_for_liquidity(page)
    expect(page.locator("#order-history-body tr").first).to_be_visible()
    expect(page.locator("#last-price")).to_have_text(re.compile(r"\d"))
    expect(page.locator("#chart[data-ready=true]")).to_be_visible(timeout=20_000)
    expect(page.locator(".depth[data-ready=true]")).to_be_visible(timeout=20_000)
    assert_accessible(page, axe_source, "trade")

    open_account_with_its_pictures(page)
    assert_accessible(page, axe_source, "account and API keys")

    seed_unjournaled_balance(system)  # a mismatch, so the report has a table and a detail to check
    page.get_by_role("button", name="Log out").click()
    login_in_ui(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.get_by_role("link", name="Admin").click()
    expect(page.locator("#users-body tr").first).to_have_attribute("data-user-id", re.compile(r"."))
    expect(page.locator("#audit-body tr").first).to_have_attribute("data-action", re.compile(r"."))
    page.get_by_role("button", name="Run reconciliation now").click()
    expect(page.locator("#report-detail h3").first).to_have_text(re.compile(r"^Mismatches"), timeout=30_000)
    expect(page.locator("#mismatch-chart .bar").first).to_be_attached()
    details = page.locator("#mismatches").get_by_role("button", name=re.compile(r"^Details of mismatch"))
    details.first.click()
    expect(page.locator("#mismatch-detail")).to_be_visible()
    assert_accessible(page, axe_source, "admin")


def test_an_order_is_placed_with_the_keyboard_alone(page: Any, system: RunningSystem) -> None:
    register_in_ui(page, f"keys-only-{uuid.uuid4().hex[:10]}@example.com")
    wait_for_liquidity(page)
    page.goto(page.url)  # a fresh load: focus starts at the document, as for someone arriving by keyboard
    wait_for_liquidity(page)

    def focused() -> str:
        return str(page.evaluate("() => document.activeElement?.id || document.activeElement?.tagName || ''"))

    def tab_to(element_id: str, limit: int = 120) -> None:
        for _ in range(limit):
            page.keyboard.press("Tab")
            if focused() == element_id:
                return
        raise AssertionError(f"Tab never reached #{element_id} (last: {focused()})")

    tab_to("ticket-type")
    options = page.evaluate("() => [...document.querySelector('#ticket-type').options].map((o) => o.value)")
    current = page.evaluate("() => document.querySelector('#ticket-type').selectedIndex")
    for _ in range(abs(options.index("MARKET") - current)):
        page.keyboard.press("ArrowUp" if options.index("MARKET") < current else "ArrowDown")
    expect(page.locator("#ticket-type")).to_have_value("MARKET")
    tab_to("ticket-quantity")
    page.keyboard.type("0.01")
    expect(page.locator("#ticket-quote")).to_contain_text("avg")
    tab_to("ticket-submit")
    expect(page.locator("#ticket-submit")).to_have_text("Buy BTC")
    page.keyboard.press("Enter")

    filled = page.locator("#order-history-body tr[data-status=FILLED]")
    expect(filled).to_have_count(1, timeout=20_000)
    expect(filled).to_contain_text("0.01000")
    shot(page, "keyboard_only_order")


def _horizontal_overflow(page: Any) -> int:
    return int(
        page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    )


def _boxes(page: Any, selectors: dict[str, str]) -> dict[str, dict[str, float]]:
    out = {}
    for name, selector in selectors.items():
        box = page.locator(selector).first.bounding_box()
        assert box is not None and box["width"] > 0 and box["height"] > 0, f"{name} ({selector}) is not shown"
        out[name] = box
    return out


def _overlap(a: dict[str, float], b: dict[str, float]) -> float:
    """The area two boxes share (0 when they only touch)."""
    w = min(a["x"] + a["width"], b["x"] + b["width"]) - max(a["x"], b["x"])
    h = min(a["y"] + a["height"], b["y"] + b["height"]) - max(a["y"], b["y"])
    return max(0.0, w) * max(0.0, h)


def _assert_apart(boxes: dict[str, dict[str, float]]) -> None:
    names = list(boxes)
    crossed = [
        (a, b, _overlap(boxes[a], boxes[b]))
        for i, a in enumerate(names)
        for b in names[i + 1 :]
        if _overlap(boxes[a], boxes[b]) > 1
    ]
    assert not crossed, crossed


@pytest.mark.parametrize("viewport", [NARROW])
def test_no_page_scrolls_sideways_at_360_px_and_panels_do_not_overlap(
    page: Any, system: RunningSystem, trader: str, axe_source: str
) -> None:
    """Each page at 360 px: no sideways scroll, axe as clean as on a wide screen (columns hide, panels stack)."""
    page.goto("/login")
    expect(page.get_by_role("button", name="Log in")).to_be_visible()
    assert _horizontal_overflow(page) <= 0, "login"
    page.goto("/register")
    expect(page.get_by_role("button", name="Create account")).to_be_visible()
    assert _horizontal_overflow(page) <= 0, "register"

    login_in_ui(page, trader)
    wait_for_liquidity(page)
    expect(page.locator("#order-history-body tr").first).to_be_visible()
    expect(page.locator("#chart[data-ready=true]")).to_be_visible(timeout=20_000)
    assert _horizontal_overflow(page) <= 0, "trade"
    trade = _boxes(
        page,
        {
            "header": "header.topbar",
            "ticker": ".area-ticker",
            "ticket": ".area-ticket",
            "chart": ".area-chart",
            "book": ".area-book",
            "open orders": ".area-open",
            "positions": ".area-positions",
            "balances": ".area-balances",
            "history": ".area-history",
            "market trades": ".area-trades",
        },
    )
    _assert_apart(trade)
    for name, box in trade.items():
        assert box["x"] >= 0 and box["x"] + box["width"] <= NARROW["width"] + 0.5, (name, box)
    ticket_fields = _boxes(
        page, {"type": "#ticket-type", "quantity": "#ticket-quantity", "submit": "#ticket-submit"}
    )
    _assert_apart(ticket_fields)
    assert_accessible(page, axe_source, "trade at 360 px")
    shot(page, "phone_360_trade")

    open_account_with_its_pictures(page)
    assert _horizontal_overflow(page) <= 0, "account"
    assert_accessible(page, axe_source, "account at 360 px")
    shot(page, "phone_360_account")

    page.get_by_role("button", name="Log out").click()
    login_in_ui(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.get_by_role("link", name="Admin").click()
    expect(page.locator("#users-body tr").first).to_have_attribute("data-user-id", re.compile(r"."))
    expect(page.locator("#audit-body tr").first).to_have_attribute("data-action", re.compile(r"."))
    assert _horizontal_overflow(page) <= 0, "admin"
    _assert_apart(
        _boxes(page, {"users": "#users-panel", "reconciliation": "#recon-panel", "audit": "#audit-panel"})
    )
    assert_accessible(page, axe_source, "admin at 360 px")
    shot(page, "phone_360_admin")


@pytest.mark.parametrize("viewport", [NARROW, {"width": 1440, "height": 1000}], ids=["phone", "wide"])
def test_a_toast_never_covers_the_ticket_or_the_book(page: Any, system: RunningSystem) -> None:
    register_in_ui(page, f"toasts-{uuid.uuid4().hex[:10]}@example.com")
    wait_for_liquidity(page)
    page.get_by_label("Order type").select_option("MARKET")
    page.get_by_label("Quantity (BTC)").fill("0.001")
    page.get_by_role("button", name="Buy BTC").click()
    toast = page.locator("#toasts .toast").last
    expect(toast).to_contain_text("Order accepted")
    # Wherever the user is on the page (boxes are in viewport coordinates: what is off screen can't be covered).
    for target in ("#ticket-submit", "#order-book", "header.topbar"):
        page.locator(target).scroll_into_view_if_needed()
        shown = page.locator("#toasts").bounding_box()
        covered = {
            name: _overlap(shown, page.locator(selector).bounding_box())
            for name, selector in (("ticket", ".area-ticket"), ("book", ".area-book"))
        }
        assert all(area <= 1 for area in covered.values()), (target, shown, covered)
    shot(page, f"toast_{page.viewport_size['width']}")


def test_first_load_transfers_under_300_kb_of_javascript_and_css(
    page: Any, system: RunningSystem, trader: str
) -> None:
    """A fresh browser (empty cache): the login page, the log-in, the trading page drawn with its chart. Every
    JS and CSS response is counted as transferred (headers and body as sent on the wire)."""
    login_in_ui(page, trader)
    wait_for_liquidity(page)
    expect(page.locator("#chart canvas, .area-chart canvas").first).to_be_attached()
    entries = page.evaluate(
        """() => performance.getEntriesByType("resource")
             .concat(performance.getEntriesByType("navigation"))
             .map((e) => ({name: e.name, transfer: e.transferSize, body: e.encodedBodySize}))"""
    )
    assets = [e for e in entries if re.search(r"\.(m?js|css)(\?|$)", e["name"])]
    transferred = sum(int(e["transfer"]) for e in assets)
    assert assets and all(e["transfer"] > 0 for e in assets), entries  # nothing came from a cache
    print(
        f"\nfirst load: {len(assets)} JS/CSS files, {transferred} bytes transferred ({transferred / 1024:.1f} KB)"
    )
    for e in sorted(assets, key=lambda e: -int(e["transfer"]))[:5]:
        print(f"  {int(e['transfer']):>7}  {e['name'].removeprefix(system.url)}")
    assert transferred < FIRST_LOAD_BUDGET, f"{transferred} bytes of JS and CSS on first load"
