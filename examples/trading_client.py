"""A small TradeBridge API client: log in, place and cancel orders over REST, follow updates over WebSocket.

    python examples/trading_client.py --base-url http://127.0.0.1:8000 --email me@example.com --password ...

What it shows:
- `login()` -> an access token (POST /auth/login);
- `place_order()` / `cancel_order()` -> POST /api/orders (202 {order_id, ...}) and DELETE /api/orders/{id} (202);
  quantities and prices are sent as strings so no digit is lost to floats;
- `EventStream` follows the WebSocket: it remembers the id of the last private event it handled and, after a
  dropped connection, reconnects with exponential backoff (plus jitter) and resumes from that id with
  `?last_event_id=` (atomic with the connection: every missed event exactly once, in order, then live).
  `RESYNC_REQUIRED` means the server no longer retains that far back: refetch state over REST
  (`GET /api/orders?status=open`, `/api/balances`, `/api/positions`) and carry on live.
  Close code 4401 means the token expired: log in again (or refresh) and reconnect.

Every function is importable, so tests can drive this very client against an in-process system.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

PRIVATE_TYPES = frozenset({"ORDER_UPDATE", "TRADE", "POSITION_UPDATE", "BALANCE_UPDATE"})
CLOSE_UNAUTHORIZED = 4401


async def login(http: httpx.AsyncClient, email: str, password: str) -> str:
    """The access token for these credentials (raises httpx.HTTPStatusError on 401/429)."""
    r = await http.post("/auth/login", json={"email": email, "password": password})
    r.raise_for_status()
    return str(r.json()["access_token"])


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def place_order(
    http: httpx.AsyncClient,
    token: str,
    *,
    symbol: str,
    side: str,
    type: str,
    quantity: Decimal,
    price: Decimal | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Submit an order; the reply (202) has `order_id` and status PENDING, the rest arrives as events."""
    body: dict[str, Any] = {"symbol": symbol, "side": side, "type": type, "quantity": str(quantity), **extra}
    if price is not None:
        body["price"] = str(price)
    r = await http.post("/api/orders", json=body, headers=auth(token))
    r.raise_for_status()
    return dict(r.json())


async def cancel_order(http: httpx.AsyncClient, token: str, order_id: str) -> None:
    """Request a cancel (202); the CANCELED status arrives as an ORDER_UPDATE event."""
    r = await http.delete(f"/api/orders/{order_id}", headers=auth(token))
    r.raise_for_status()


def ws_url(base_url: str, token: str, last_event_id: str | None = None) -> str:
    """http(s)://host:port -> ws(s)://host:port/ws?token=...[&last_event_id=...]."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    query = {"token": token} | ({"last_event_id": last_event_id} if last_event_id else {})
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", urlencode(query), ""))


Handler = Callable[[dict[str, Any]], Awaitable[None] | None]


@dataclass
class EventStream:
    """Follow the event stream across disconnects, resuming from the last private event handled.

    `get_token` is called before every (re)connect, so it can refresh an expiring token. `on_event` receives
    every server message (private events, public channel messages, RESYNC_REQUIRED, ...).
    """

    base_url: str
    get_token: Callable[[], Awaitable[str]]
    on_event: Handler
    channels: list[str] = field(default_factory=list)
    last_event_id: str | None = None
    backoff_initial_s: float = 0.25
    backoff_max_s: float = 15.0
    connects: int = 0

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Connect, follow, reconnect with backoff until `stop` is set (or forever)."""
        stop = stop or asyncio.Event()
        delay = self.backoff_initial_s
        while not stop.is_set():
            try:
                async for message in self._session(stop):
                    delay = self.backoff_initial_s  # a working connection resets the backoff
                    result = self.on_event(message)
                    if result is not None:
                        await result
                    if message.get("type") in PRIVATE_TYPES and message.get("id"):
                        self.last_event_id = message["id"]  # only after the handler succeeded
            except (OSError, ConnectionClosed, InvalidStatus, TimeoutError):
                pass
            if stop.is_set():
                return
            sleep = min(self.backoff_max_s, delay) * (0.5 + random.random() / 2)  # full-ish jitter
            delay = min(self.backoff_max_s, delay * 2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), sleep)

    async def _session(self, stop: asyncio.Event) -> AsyncIterator[dict[str, Any]]:
        token = await self.get_token()
        url = ws_url(self.base_url, token, self.last_event_id)
        async with connect(url, open_timeout=10, ping_interval=20, ping_timeout=20) as ws:
            self.connects += 1
            if self.channels:
                await ws.send(json.dumps({"op": "subscribe", "channels": self.channels}))
            stopper = asyncio.create_task(stop.wait())
            try:
                while True:
                    receive = asyncio.create_task(ws.recv())
                    done, _ = await asyncio.wait({receive, stopper}, return_when=asyncio.FIRST_COMPLETED)
                    if receive not in done:
                        receive.cancel()
                        return
                    yield json.loads(receive.result())
            finally:
                stopper.cancel()


async def demo(base_url: str, email: str, password: str, symbol: str, seconds: float) -> None:
    """Log in, follow events, place a LIMIT order far from the market, cancel it, print what arrives."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        token = await login(http, email, password)

        async def get_token() -> str:
            return token  # a real client would refresh via POST /auth/refresh before expiry

        def show(message: dict[str, Any]) -> None:
            print(f"{message.get('type'):>16} {message.get('id')} {json.dumps(message.get('data'))}")

        stream = EventStream(base_url, get_token, show, channels=[f"ticker:{symbol}"])
        stop = asyncio.Event()
        follower = asyncio.create_task(stream.run(stop))
        order = await place_order(
            http, token, symbol=symbol, side="BUY", type="LIMIT", quantity=Decimal("0.001"), price=Decimal("1000")
        )
        print("placed", order)
        await asyncio.sleep(1)
        await cancel_order(http, token, order["order_id"])
        await asyncio.sleep(seconds)
        stop.set()
        await follower


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default="http://127.0.0.1:8000")
    ap.add_argument("--email", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--symbol", default="BTCUSDT")
    ap.add_argument("--seconds", type=float, default=5.0)
    args = ap.parse_args()
    asyncio.run(demo(args.base_url, args.email, args.password, args.symbol, args.seconds))


if __name__ == "__main__":
    main()
