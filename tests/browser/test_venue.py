"""The trading page shows the market of the user's venue (issue #17, item 2): a testnet-mode user sees the
Binance testnet's (here the double's, at 71,000) ticker, book and quote, a paper-mode user the paper
exchange's (the synthetic feed, near 65,000), each labelled with its venue, and a mode switch moves the page
from one to the other over the WebSocket (old channels left, the venue's `@testnet` ones joined)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.binance_double.server import BinanceDouble
from tests.browser.server import RunningSystem, running_system
from tests.browser.test_web import PASSWORD, login_in_ui, new_email, register_in_ui, shot

pytestmark = pytest.mark.browser
TESTNET_PRICE = "71000"  # the paper feed starts at 65,000 and wanders a little: never near this


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, binance: BinanceDouble) -> Iterator[RunningSystem]:
    """The embedded system with the testnet market fed by the double's streams (its REST as the fallback)."""
    binance.state.set_price("BTCUSDT", TESTNET_PRICE)
    db = tmp_path_factory.mktemp("venue") / "tradebridge.db"
    with running_system(db, binance.url, binance_testnet_ws_url=binance.ws_url) as running:
        yield running


def ready_testnet_user(system: RunningSystem, binance: BinanceDouble) -> str:
    """A paper-mode user with testnet keys saved, so the mode switch is allowed."""
    account = binance.state.create_account({"USDT": "10000", "BTC": "1"})
    email = new_email()
    with httpx.Client(base_url=system.url, timeout=10) as http:
        assert http.post("/auth/register", json={"email": email, "password": PASSWORD}).status_code == 201
        token = http.post("/auth/login", json={"email": email, "password": PASSWORD}).json()["access_token"]
        keys = {"api_key": account.api_key, "api_secret": account.api_secret}
        r = http.put("/api/keys/binance-testnet", json=keys, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
    return email


def channels_sent(frames: list[str], op: str) -> set[str]:
    return {c for f in frames for m in [json.loads(f)] if m.get("op") == op for c in m.get("channels", [])}


def expect_paper_market(page: Any) -> None:
    for label in ("#ticker-venue", "#book-venue", "#chart-venue"):
        expect(page.locator(label)).to_have_text("Paper exchange")
        expect(page.locator(label)).to_have_attribute("data-venue", "paper")
    expect(page.locator("#last-price")).to_have_text(re.compile(r"^6\d{4}\.\d{2}$"), timeout=20_000)
    expect(page.locator("#order-book .level-bid .px").first).to_have_text(re.compile(r"^6\d{4}\.\d{2}$"))


def expect_testnet_market(page: Any) -> None:
    for label in ("#ticker-venue", "#book-venue", "#chart-venue"):
        expect(page.locator(label)).to_have_text("Binance testnet")
        expect(page.locator(label)).to_have_attribute("data-venue", "testnet")
    expect(page.locator("#last-price")).to_have_text("71000.00", timeout=20_000)
    expect(page.locator("#order-book .level-bid .px").first).to_have_text("70999.99")
    # Asks are listed highest first: the best one is at the bottom, next to the spread.
    expect(page.locator("#order-book .level-ask .px").last).to_have_text("71000.01")


def test_paper_user_sees_the_paper_market(page: Any, system: RunningSystem) -> None:
    register_in_ui(page, new_email())
    expect(page.locator("#mode-band")).to_have_attribute("data-mode", "paper")
    expect_paper_market(page)
    page.get_by_label("Order type").select_option("MARKET")
    page.get_by_label("Quantity (BTC)").fill("0.01")
    expect(page.locator("#ticket-quote")).to_contain_text(re.compile(r"≈ 6\d{4}\.\d{2} avg"))


def test_testnet_user_sees_the_testnets_market_and_a_switch_moves_the_page(
    page: Any, system: RunningSystem, binance: BinanceDouble
) -> None:
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(payload)))
    email = ready_testnet_user(system, binance)
    login_in_ui(page, email)
    expect(page.locator("#conn")).to_have_attribute("data-status", "live")
    expect_paper_market(page)

    page.locator("#mode-switch").get_by_label("Testnet").check()
    expect(page.locator("#mode-band")).to_have_attribute("data-mode", "testnet")
    expect_testnet_market(page)
    page.get_by_label("Order type").select_option("MARKET")
    page.get_by_label("Quantity (BTC)").fill("0.01")
    quote = re.compile(r"≈ 710\d\d\.\d\d avg")  # walked on the double's asks
    expect(page.locator("#ticket-quote")).to_contain_text(quote)
    testnet = {"ticker:BTCUSDT@testnet", "depth:BTCUSDT@testnet", "trades:BTCUSDT@testnet"}
    assert testnet | {"candles:BTCUSDT:1m@testnet"} <= channels_sent(sent, "subscribe"), sent
    assert {"ticker:BTCUSDT", "depth:BTCUSDT", "trades:BTCUSDT"} <= channels_sent(sent, "unsubscribe"), sent
    shot(page, "trade_testnet_market")

    page.reload()  # a testnet-mode page starts on the testnet's channels
    expect_testnet_market(page)

    sent.clear()
    page.locator("#mode-switch").get_by_label("Paper").check()
    expect(page.locator("#mode-band")).to_have_attribute("data-mode", "paper")
    expect_paper_market(page)
    assert testnet <= channels_sent(sent, "unsubscribe"), sent
    assert "ticker:BTCUSDT" in channels_sent(sent, "subscribe"), sent
