"""The chart and the depth view in Chromium against the running system (synthetic price feed with its backfill,
the worker's market maker, events): a fresh database shows a full chart of history, the interval picker changes
the candles and the live channel, the user's fills and open orders are drawn on it, the depth chart is drawn from
the real book, and at 360 px nothing overlaps or overflows."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.conftest import SCREENSHOTS
from tests.browser.server import RunningSystem
from tests.browser.test_web import PASSWORD, new_email, register_in_ui, wait_for_liquidity

pytestmark = pytest.mark.browser

# Which tenths of the chart's main canvas hold candle pixels (the up or down colour), from left to right.
CANDLE_COLUMNS = """
(chart) => {
  const canvases = [...chart.querySelectorAll('canvas')];
  const main = canvases.reduce((a, b) => (b.width * b.height > a.width * a.height ? b : a));
  const { width, height } = main;
  const data = main.getContext('2d').getImageData(0, 0, width, height).data;
  const bins = new Array(10).fill(false);
  for (let x = 0; x < width; x += 1) {
    for (let y = 0; y < height; y += 2) {
      const i = (y * width + x) * 4;
      const [r, g, b] = [data[i], data[i + 1], data[i + 2]];
      if ((r === 46 && g === 160 && b === 67) || (r === 218 && g === 54 && b === 51)) {
        bins[Math.min(9, Math.floor((x / width) * 10))] = true;
        break;
      }
    }
  }
  return bins;
}
"""

DEPTH_COLOURS = """
(canvas) => {
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let bid = 0, ask = 0;
  for (let i = 0; i < data.length; i += 4) {
    if (data[i] === 46 && data[i + 1] === 160 && data[i + 2] === 67) bid += 1;
    if (data[i] === 218 && data[i + 1] === 54 && data[i + 2] === 51) ask += 1;
  }
  return { bid, ask };
}
"""


def token(system: RunningSystem, email: str) -> str:
    r = httpx.post(f"{system.url}/auth/login", json={"email": email, "password": PASSWORD})
    r.raise_for_status()
    return str(r.json()["access_token"])


def channels_sent(frames: list[str], op: str) -> set[str]:
    return {c for f in frames for m in [json.loads(f)] if m.get("op") == op for c in m.get("channels", [])}


def chart_ready(page: Any, interval: str) -> Any:
    chart = page.locator(f"#chart[data-ready=true][data-interval='{interval}']")
    expect(chart).to_be_visible(timeout=20_000)
    return chart


def test_fresh_system_chart_is_full_of_backfilled_history_and_the_picker_changes_interval(
    page: Any, system: RunningSystem
) -> None:
    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(payload)))
    register_in_ui(page, new_email())
    chart = chart_ready(page, "1m")
    # The feed started with this fresh database minutes ago at most, yet the chart has hours of minutes.
    assert int(chart.get_attribute("data-candles")) >= 500
    history = httpx.get(
        f"{system.url}/api/markets/BTCUSDT/candles", params={"interval": "1m", "limit": 1000}
    ).json()
    assert len(history) >= 500
    # Fit to the data: candles across the whole width, not a few squeezed at the right.
    assert all(chart.evaluate(CANDLE_COLUMNS)), chart.evaluate(CANDLE_COLUMNS)
    minute_picture = chart.screenshot()

    page.get_by_role("button", name="1 hour candles").click()
    expect(page.get_by_role("button", name="1 hour candles")).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_role("button", name="1 minute candles")).to_have_attribute("aria-pressed", "false")
    chart = chart_ready(page, "1h")
    hours = httpx.get(
        f"{system.url}/api/markets/BTCUSDT/candles", params={"interval": "1h", "limit": 500}
    ).json()
    assert int(chart.get_attribute("data-candles")) == len(hours) >= 500
    assert all(chart.evaluate(CANDLE_COLUMNS))
    assert chart.screenshot() != minute_picture
    expect(chart).to_have_attribute("aria-label", re.compile("1 hour candle chart"))
    assert "candles:BTCUSDT:1h" in channels_sent(sent, "subscribe"), sent
    assert "candles:BTCUSDT:1m" in channels_sent(sent, "unsubscribe"), sent

    # Scrolling back to the oldest candle fetches the page before it (end_time paging).
    before = int(chart.get_attribute("data-candles"))
    box = chart.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for _ in range(60):
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] - 5, box["y"] + box["height"] / 2, steps=4)
        page.mouse.up()
        page.mouse.move(box["x"] + 5, box["y"] + box["height"] / 2)
        if int(chart.get_attribute("data-candles")) > before:
            break
    expect(chart).not_to_have_attribute("data-candles", str(before))


def test_own_fills_and_open_orders_are_drawn_on_the_chart(page: Any, system: RunningSystem) -> None:
    email = new_email()
    register_in_ui(page, email)
    wait_for_liquidity(page)
    chart = chart_ready(page, "1m")
    expect(chart).to_have_attribute("data-order-lines", "0")
    expect(chart).to_have_attribute("data-fill-markers", "0")
    headers = {"Authorization": f"Bearer {token(system, email)}"}
    r = httpx.post(
        f"{system.url}/api/orders",
        headers=headers,
        json={"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.01", "price": "50000"},
    )
    assert r.status_code == 202, r.text
    expect(chart).to_have_attribute("data-order-lines", "1")
    r = httpx.post(
        f"{system.url}/api/orders",
        headers=headers,
        json={"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.01"},
    )
    assert r.status_code == 202, r.text
    expect(chart).to_have_attribute("data-fill-markers", "1", timeout=20_000)
    # The open order's line is on the price axis: its label shows the order's price.
    page.get_by_role("button", name=re.compile("^Cancel BUY LIMIT")).click()
    expect(chart).to_have_attribute("data-order-lines", "0", timeout=20_000)


def test_depth_chart_is_drawn_from_the_real_book(page: Any, system: RunningSystem) -> None:
    register_in_ui(page, new_email())
    wait_for_liquidity(page)
    depth = page.locator(".depth[data-ready=true]")
    expect(depth).to_be_visible(timeout=20_000)
    book = httpx.get(f"{system.url}/api/markets/BTCUSDT/depth", params={"limit": 100}).json()
    canvas = page.locator("#depth-chart")
    expect(canvas).to_have_attribute(
        "aria-label", re.compile(r"BTCUSDT cumulative depth: \d+ bid and \d+ ask levels, up to [\d.]+ BTC")
    )
    label = canvas.get_attribute("aria-label")
    found = re.search(r"(\d+) bid and (\d+) ask levels", label)
    assert found, label
    bids, asks = int(found[1]), int(found[2])
    assert abs(bids - len(book["bids"])) <= 2 and abs(asks - len(book["asks"])) <= 2, (label, book)
    colours = canvas.evaluate(DEPTH_COLOURS)
    assert colours["bid"] > 50 and colours["ask"] > 50, colours


def _overlap(a: dict[str, float], b: dict[str, float]) -> bool:
    return (
        a["x"] < b["x"] + b["width"] - 0.5
        and b["x"] < a["x"] + a["width"] - 0.5
        and a["y"] < b["y"] + b["height"] - 0.5
        and b["y"] < a["y"] + a["height"] - 0.5
    )


@pytest.mark.parametrize("viewport", [{"width": 360, "height": 800}])
def test_chart_and_depth_at_360_px_have_no_overlap(page: Any, system: RunningSystem, viewport: dict) -> None:
    register_in_ui(page, new_email())
    wait_for_liquidity(page)
    chart = chart_ready(page, "1m")
    expect(page.locator(".depth[data-ready=true]")).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    buttons = [b.bounding_box() for b in page.locator(".interval-picker button").all()]
    assert len(buttons) == 6
    key = [
        *buttons,
        page.locator("#chart-venue").bounding_box(),
        chart.bounding_box(),
    ]
    for i, a in enumerate(key):
        assert a["x"] >= 0 and a["x"] + a["width"] <= 360, a
        for b in key[i + 1 :]:
            assert not _overlap(a, b), (a, b)
    # The chart's own parts: the plot, the price axis and the time axis side by side, none over another, all
    # inside the chart's box.
    frame = chart.bounding_box()
    boxes = [c.bounding_box() for c in chart.locator("canvas").all()]
    # Each part draws on two canvases laid exactly over each other (its picture and its crosshair layer): one
    # box per part.
    unique = {tuple(round(b[k], 1) for k in ("x", "y", "width", "height")): b for b in boxes if b}
    cells = [c for c in unique.values() if c["width"] > 4 and c["height"] > 4]
    assert len(cells) >= 3
    for i, c in enumerate(cells):
        assert c["x"] >= frame["x"] - 0.5 and c["x"] + c["width"] <= frame["x"] + frame["width"] + 0.5, (
            c,
            frame,
        )
        assert c["y"] >= frame["y"] - 0.5 and c["y"] + c["height"] <= frame["y"] + frame["height"] + 0.5, (
            c,
            frame,
        )
        for other in cells[i + 1 :]:
            assert not _overlap(c, other), (c, other)
    depth = page.locator("#depth-chart").bounding_box()
    ladder = page.locator("#order-book").bounding_box()
    assert not _overlap(depth, ladder) and depth["x"] + depth["width"] <= 360
    assert all(chart.evaluate(CANDLE_COLUMNS))
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)  # the chart and the book at phone width, for a look
    page.locator(".area-chart").screenshot(path=str(SCREENSHOTS / "chart-360.png"))
    page.locator(".area-book").screenshot(path=str(SCREENSHOTS / "book-depth-360.png"))
