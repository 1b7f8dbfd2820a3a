"""Honest states on the web page (issue #17, item 3): in testnet mode the balances panel shows the exchange's
balances and never paper's; when Binance cannot be reached it shows that, with when it was last reached, and
no numbers at all; switching to paper shows paper's again. Against a Binance double of this module's own,
stopped halfway (connections refused, its streams gone)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import expect

from tests.binance_double.server import BinanceDouble
from tests.browser.server import RunningSystem, running_system
from tests.browser.test_web import PASSWORD, login_in_ui, new_email, shot

pytestmark = pytest.mark.browser
TESTNET = {"USDT": "500", "BTC": "1"}  # paper starts every user at USDT 10000: never seen under testnet
BANNER = re.compile(r"^Binance testnet unreachable — last reached (\d\d:\d\d:\d\d)$")


@pytest.fixture(scope="module")
def binance() -> Iterator[BinanceDouble]:
    """This module's own double: the test stops it."""
    with BinanceDouble() as double:
        yield double


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, binance: BinanceDouble) -> Iterator[RunningSystem]:
    db = tmp_path_factory.mktemp("testnet-down") / "tradebridge.db"
    with running_system(db, binance.url, binance_testnet_ws_url=binance.ws_url) as running:
        yield running


def new_testnet_user(system: RunningSystem, binance: BinanceDouble) -> tuple[str, dict[str, str]]:
    """A user with testnet keys stored, switched to testnet mode before the page is opened."""
    account = binance.create_account(TESTNET)
    email = new_email()
    with httpx.Client(base_url=system.url, timeout=10) as http:
        assert http.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
        token = http.post("/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        keys = {"api_key": account.api_key, "api_secret": account.api_secret}
        assert http.put("/api/keys/binance-testnet", json=keys, headers=auth).status_code == 200
        assert http.put("/api/me/mode", json={"mode": "testnet"}, headers=auth).status_code == 200
    return email, auth


def modes(urls: list[str]) -> list[list[str] | None]:
    """The ?mode= of each balances request (None when it had none)."""
    return [parse_qs(urlsplit(u).query).get("mode") for u in urls]


def balance_row(page: Any, asset: str) -> Any:
    return page.locator(f"#balances-body tr[data-asset={asset}]")


def test_testnet_balances_then_unreachable_banner_then_paper(
    page: Any, system: RunningSystem, binance: BinanceDouble
) -> None:
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url) if urlsplit(r.url).path == "/api/balances" else None)
    email, auth = new_testnet_user(system, binance)
    started = datetime.now(UTC)
    login_in_ui(page, email)
    expect(page.locator("#mode-band")).to_have_attribute("data-mode", "testnet")
    expect(page.locator("#conn")).to_have_attribute("data-status", "live")

    # Testnet mode: the double's balances, none of paper's, no banner.
    banner = page.locator("#venue-banner")
    balances = page.locator("#balances-body")
    expect(balance_row(page, "BTC").locator("td").nth(1)).to_have_text(re.compile(r"^1(\.0*)?$"))
    expect(balance_row(page, "USDT").locator("td").nth(1)).to_have_text(re.compile(r"^500(\.0*)?$"))
    expect(balances).not_to_contain_text("10000")
    expect(banner).to_be_hidden()
    assert requested and all(m == ["testnet"] for m in modes(requested)), requested

    # Binance goes away while the page (and its socket to us) stays open: the page says so, with no numbers.
    binance.stop()
    stopped = datetime.now(UTC)
    expect(banner).to_be_visible(timeout=30_000)
    expect(banner).to_have_text(BANNER)
    expect(balances.locator("tr[data-asset]")).to_have_count(0)
    expect(balances).not_to_contain_text(re.compile(r"\d"))
    shot(page, "trade_testnet_unreachable")

    with httpx.Client(base_url=system.url, timeout=10) as http:
        status = http.get("/api/venue-status?mode=testnet", headers=auth).json()
    assert status["reachable"] is False, status
    reached = datetime.fromisoformat(status["last_reached_at"])
    assert started.replace(microsecond=0) <= reached <= stopped, (started, reached, stopped)
    shown = page.evaluate(
        "iso => { const d = new Date(iso); return [d.getHours(), d.getMinutes(), d.getSeconds()]"
        ".map((n) => String(n).padStart(2, '0')).join(':'); }",
        status["last_reached_at"],
    )
    assert BANNER.match(banner.inner_text().strip())[1] == shown  # type: ignore[index]
    assert all(m == ["testnet"] for m in modes(requested)), requested

    # Paper: its balances again, the banner gone (paper is always reachable).
    requested.clear()
    page.locator("#mode-switch").get_by_label("Paper").check()
    expect(page.locator("#mode-band")).to_have_attribute("data-mode", "paper")
    expect(balance_row(page, "USDT").locator("td").nth(1)).to_have_text(re.compile(r"^10000(\.0*)?$"))
    expect(banner).to_be_hidden()
    expect(balance_row(page, "BTC")).to_have_count(0)  # the testnet's BTC is not paper's
    asked = modes(requested)
    assert ["paper"] in asked and all(asked), requested  # (a testnet one may have left before the switch)
    shot(page, "trade_paper_after_testnet_down")
