"""Browser fixtures: one running system and one Chromium per module, a fresh context per test, and a
screenshot of every test's final page in test-output/screenshots/ (git-ignored)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.binance_double.server import BinanceDouble
from tests.browser.server import RunningSystem, running_system

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-output" / "screenshots"
WIDE = {"width": 1440, "height": 1000}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def binance() -> Iterator[BinanceDouble]:
    with BinanceDouble() as double:
        yield double


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, binance: BinanceDouble) -> Iterator[RunningSystem]:
    db = tmp_path_factory.mktemp("web") / "tradebridge.db"
    with running_system(db, binance.url) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (scripts/install --dev, or apt-get install chromium)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=15_000)  # a loaded 2-core CI box; passing runs don't wait for it

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def viewport() -> dict[str, int]:
    return WIDE


@pytest.fixture
def page(
    browser: Any, system: RunningSystem, viewport: dict[str, int], request: pytest.FixtureRequest
) -> Iterator[Any]:
    context = browser.new_context(viewport=viewport, base_url=system.url, accept_downloads=True)
    context.set_default_timeout(15_000)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    page.problems = problems
    try:
        yield page
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
        context.close()
    assert not problems, problems
