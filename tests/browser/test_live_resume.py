"""The web app's live socket resumes by the contract after a drop (issue #20): it reconnects with
`?last_event_id=` (the highest private event id it saw), so what happened while it was away is replayed once,
atomically with the connection, and shown once.

An init script wraps the page's `WebSocket` to record the URLs the app connects to and every message it gets,
and, while a hold is set, points the app's next connection at a port that accepts TCP but never answers the
upgrade: the app sits in "reconnecting" while an order is placed and filled over REST.
"""

from __future__ import annotations

import re
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from shared.streams import user_stream
from tests.binance_double.server import BinanceDouble
from tests.browser.server import RunningSystem, running_system
from tests.support.eventually import eventually_sync

pytestmark = pytest.mark.browser
PASSWORD = "correct horse battery"

RECORDER = """
(() => {
  const Native = window.WebSocket;
  const PRIVATE = ["ORDER_UPDATE", "TRADE", "POSITION_UPDATE", "BALANCE_UPDATE"];
  const state = { urls: [], sockets: [], private: [], control: [], fetches: [], seq: 0, hold: null };
  window.__tbLive = state;
  const nativeFetch = window.fetch.bind(window);
  window.fetch = (input, init) => {
    state.fetches.push({ seq: ++state.seq, url: String(input instanceof Request ? input.url : input) });
    return nativeFetch(input, init);
  };
  window.WebSocket = class RecordedWebSocket extends Native {
    constructor(url, protocols) {
      state.urls.push(String(url));
      super(state.hold || url, protocols);
      const socket = state.sockets.push(this) - 1;
      this.addEventListener("message", (event) => {
        let m;
        try { m = JSON.parse(event.data); } catch { return; }
        const d = m.data || {};
        if (PRIVATE.includes(m.type)) {
          state.private.push({ socket, type: m.type, id: m.id, order: d.order_id, status: d.status, trade: d.trade_id });
        } else if (!["TICKER", "DEPTH", "MARKET_TRADE", "CANDLE", "PONG"].includes(m.type)) {
          state.control.push({ seq: ++state.seq, socket, type: m.type, data: d });
        }
      });
    }
  };
})();
"""

# The highest private event id the page received, by the contract's (ms, seq) order.
MAX_PRIVATE_ID = """
(state) => state.private.map((e) => e.id).reduce((best, id) => {
  if (best === null) return id;
  const [a, b] = [id, best].map((v) => v.split("-").map(BigInt));
  return a[0] > b[0] || (a[0] === b[0] && a[1] > b[1]) ? id : best;
}, null)
"""


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory, binance: BinanceDouble) -> Iterator[RunningSystem]:
    """The browser tests' system with short user streams (12 events), so a page away long enough is told
    RESYNC_REQUIRED: the last test's gap has 15 events, the first's about 5."""
    db = tmp_path_factory.mktemp("resume") / "tradebridge.db"
    with running_system(db, binance.url, stream_retention={"events.user.*": 12}) as running:
        yield running


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that completes TCP handshakes (the kernel's backlog) but never answers a WebSocket upgrade."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


def register(page: Any, email: str) -> None:
    page.goto("/register")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/trade/BTCUSDT$"))


def drop_and_hold(page: Any, silent_port: int) -> tuple[int, str]:
    """Close the page's socket and hold its reconnect at the silent port; the resume point is read in the same
    turn as the close, after which the socket delivers nothing more. Returns (sockets before, resume point)."""
    sockets_before = int(page.evaluate("() => window.__tbLive.sockets.length"))
    resume_from = page.evaluate(
        f"""(hold) => {{
          const state = window.__tbLive;
          const point = ({MAX_PRIVATE_ID})(state);
          state.hold = hold;
          state.sockets.at(-1).close(4000, "test: dropped");
          return point;
        }}""",
        f"ws://127.0.0.1:{silent_port}/ws",
    )
    assert resume_from
    page.wait_for_function(f"() => window.__tbLive.sockets.length > {sockets_before}")
    expect(page.locator("#conn")).to_have_attribute("data-status", "reconnecting")
    return sockets_before, str(resume_from)


def release(page: Any) -> None:
    """Let the page through: it gives up on the silent port and connects to the server."""
    page.evaluate("() => { window.__tbLive.hold = null; window.__tbLive.sockets.at(-1).close(); }")
    expect(page.locator("#conn")).to_have_attribute("data-status", "live")


@contextmanager
def logged_in(system: RunningSystem, email: str) -> Iterator[tuple[httpx.Client, str]]:
    with httpx.Client(base_url=system.url, timeout=15) as client:
        login = client.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        client.headers["authorization"] = f"Bearer {login.json()['access_token']}"
        yield client, str(client.get("/api/me").json()["id"])


def filled_seen(page: Any, order_id: str) -> None:
    page.wait_for_function(
        "(id) => window.__tbLive.private.some((e) => e.order === id && e.type === 'ORDER_UPDATE' "
        "&& e.status === 'FILLED')",
        arg=order_id,
    )


def place_market_buy(client: httpx.Client) -> str:
    r = client.post(
        "/api/orders", json={"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}
    )
    assert r.status_code == 202, r.text
    return str(r.json()["order_id"])


def start(page: Any) -> str:
    page.add_init_script(RECORDER)
    email = f"resume-{uuid.uuid4().hex[:10]}@example.com"
    register(page, email)
    expect(page.locator("#conn")).to_have_attribute("data-status", "live")
    expect(page.locator("#order-book .level-ask").first).to_be_visible(timeout=20_000)
    return email


def test_a_dropped_socket_resumes_with_last_event_id_and_shows_what_it_missed_once(
    page: Any, system: RunningSystem, silent_port: int
) -> None:
    with logged_in(system, start(page)) as (client, user_id):
        first = place_market_buy(client)  # its events give the page a resume point
        filled_seen(page, first)
        sockets_before, resume_from = drop_and_hold(page, silent_port)

        # Meanwhile an order is placed and filled, and its events reach the user's stream.
        second = place_market_buy(client)
        eventually_sync(lambda: client.get(f"/api/orders/{second}").json()["status"] == "FILLED", timeout=20)

        async def stream_types(parts: Any) -> list[tuple[str, str | None]]:
            entries = await parts.bus.range_after(user_stream(user_id), resume_from, count=1000)
            return [(m.data["type"], (m.data.get("data") or {}).get("order_id")) for m in entries]

        eventually_sync(
            lambda: ("ORDER_UPDATE", second) in system.call(stream_types),
            timeout=20,
            message="the second order's ORDER_UPDATE never reached the user's stream",
        )
        assert not page.evaluate("(id) => window.__tbLive.private.some((e) => e.order === id)", second), (
            "the page got the second order's events while its socket was down"
        )

        release(page)
        history = page.locator(f'#order-history-body tr[data-order-id="{second}"]')
        expect(history).to_have_count(1)
        expect(history).to_have_attribute("data-status", "FILLED")
        filled_seen(page, second)
        state = page.evaluate("() => window.__tbLive")
        trades = client.get(f"/api/orders/{second}").json()["fills"]

    # Every attempt after the drop carried the resume point on its URL (the token never).
    reconnects = state["urls"][sockets_before:]
    assert len(reconnects) >= 2, reconnects
    for url in reconnects:
        assert url.endswith(f"/ws?last_event_id={resume_from}"), reconnects
    assert all("token" not in url for url in state["urls"]), state["urls"]
    # The server replayed what the page missed on the connection it resumed with.
    last = len(state["sockets"]) - 1
    resumed = [c for c in state["control"] if c["socket"] == last and c["type"] == "RESUMED"]
    assert resumed and resumed[0]["data"]["replayed"] >= 1, state["control"]
    # Exactly once: no private event id twice across the page's sockets; the missed order's final update and
    # each of its fills once each, on the resumed socket.
    ids = [e["id"] for e in state["private"]]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)
    updates = [e for e in state["private"] if e["order"] == second and e["type"] == "ORDER_UPDATE"]
    assert [e["status"] for e in updates].count("FILLED") == 1, updates
    assert {e["socket"] for e in updates} == {last}, updates
    fills = [e["trade"] for e in state["private"] if e["type"] == "TRADE" and e["order"] == second]
    assert sorted(fills) == sorted(f["trade_id"] for f in trades), (fills, trades)


def test_resync_required_reloads_the_snapshots_and_forgets_the_resume_point(
    page: Any, system: RunningSystem, silent_port: int
) -> None:
    """Away long enough that the user's stream no longer holds the page's resume point: the server answers
    RESYNC_REQUIRED, the page reads its snapshots again (the orders it missed show, once each) and never
    resumes from that point again."""
    with logged_in(system, start(page)) as (client, user_id):
        first = place_market_buy(client)
        filled_seen(page, first)
        _, resume_from = drop_and_hold(page, silent_port)
        missed = [place_market_buy(client) for _ in range(3)]  # 15 events: more than the stream keeps
        for oid in missed:
            eventually_sync(lambda: client.get(f"/api/orders/{oid}").json()["status"] == "FILLED", timeout=20)

        async def trimmed(parts: Any) -> bool:
            oldest = await parts.bus.first_id(user_stream(user_id))
            return oldest is not None and tuple(map(int, oldest.split("-"))) > tuple(
                map(int, resume_from.split("-"))
            )

        eventually_sync(
            lambda: system.call(trimmed), timeout=20, message="the resume point was never trimmed"
        )
        release(page)
        page.wait_for_function("() => window.__tbLive.control.some((c) => c.type === 'RESYNC_REQUIRED')")
        for oid in missed:
            row = page.locator(f'#order-history-body tr[data-order-id="{oid}"]')
            expect(row).to_have_count(1)
            expect(row).to_have_attribute("data-status", "FILLED")
        state = page.evaluate("() => window.__tbLive")
        resync = next(c for c in state["control"] if c["type"] == "RESYNC_REQUIRED")
        assert resync["data"]["last_event_id"] == resume_from, resync
        reloads = [f for f in state["fetches"] if f["seq"] > resync["seq"] and "/api/orders?" in f["url"]]
        assert reloads, "the page did not read its orders again after RESYNC_REQUIRED"

        # The forgotten point is never sent again: the next connection resumes from nothing or a newer id.
        count = len(state["sockets"])
        page.evaluate('() => window.__tbLive.sockets.at(-1).close(4000, "test: dropped again")')
        page.wait_for_function(f"() => window.__tbLive.sockets.length > {count}")
        expect(page.locator("#conn")).to_have_attribute("data-status", "live")
        url = page.evaluate("() => window.__tbLive.urls.at(-1)")
        assert f"last_event_id={resume_from}" not in url, url
