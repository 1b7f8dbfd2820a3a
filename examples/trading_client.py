"""A small TradeBridge API client: log in, place and cancel orders over REST, follow updates over WebSocket.

    python examples/trading_client.py --email me@example.com --password ...   # --base-url, or TRADEBRIDGE_URL

What it shows:
- `login()` -> an access token (POST /auth/login);
- `place_order()` / `cancel_order()` -> POST /api/orders (202 {order_id, ...}) and DELETE /api/orders/{id} (202);
  quantities and prices are sent as strings so no digit is lost to floats;
- `resting_buy()` sizes an order from the market's rules (GET /api/markets: tick size, step size, minimum
  notional) and its current price (GET /api/markets/{symbol}/ticker), so the exchange accepts it;
- every refusal is RFC 9457 problem+json: `ApiError` carries it and `main()` prints type, title, status,
  detail and the field errors;
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
import os
import random
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit, urlunsplit

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

PRIVATE_TYPES = frozenset({"ORDER_UPDATE", "TRADE", "POSITION_UPDATE", "BALANCE_UPDATE"})
CLOSE_UNAUTHORIZED = 4401


class ApiError(httpx.HTTPStatusError):
    """A 4xx/5xx answer with its RFC 9457 problem details (`type`, `title`, `status`, `detail`, `errors`)."""

    def __init__(self, response: httpx.Response) -> None:
        try:
            body = response.json()
        except ValueError:
            body = None
        self.problem: dict[str, Any] = (
            body if isinstance(body, dict) else {"status": response.status_code, "detail": response.text}
        )
        title = self.problem.get("title") or response.reason_phrase
        super().__init__(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {title}",
            request=response.request,
            response=response,
        )

    def describe(self) -> str:
        """The problem as lines a person can read: what was refused, and why, field by field."""
        p = self.problem
        lines = [str(self), f"  type:   {p.get('type', 'about:blank')}"]
        lines += [f"  {key + ':':<7} {p[key]}" for key in ("title", "status", "detail") if key in p]
        for error in p.get("errors") or []:
            where = error.get("field") or ".".join(map(str, error.get("loc", []))) or "-"
            lines.append(f"  error:  {where}: {error.get('message') or error.get('msg')}")
        return "\n".join(lines)


def check(response: httpx.Response) -> httpx.Response:
    """The response if it succeeded; otherwise ApiError with the problem details the server sent."""
    if response.is_error:
        raise ApiError(response)
    return response


async def login(http: httpx.AsyncClient, email: str, password: str) -> str:
    """The access token for these credentials (raises ApiError on 401/429)."""
    r = check(await http.post("/auth/login", json={"email": email, "password": password}))
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
    r = check(await http.post("/api/orders", json=body, headers=auth(token)))
    return dict(r.json())


async def cancel_order(http: httpx.AsyncClient, token: str, order_id: str) -> None:
    """Request a cancel (202); the CANCELED status arrives as an ORDER_UPDATE event."""
    check(await http.delete(f"/api/orders/{order_id}", headers=auth(token)))


async def market_rules(http: httpx.AsyncClient, symbol: str) -> dict[str, Decimal]:
    """The symbol's tick size, step size, minimum quantity and minimum notional (GET /api/markets)."""
    wanted = symbol.replace("/", "").upper()
    for market in check(await http.get("/api/markets")).json():
        if market["symbol"] == wanted:
            return {k: Decimal(market[k]) for k in ("tick_size", "step_size", "min_qty", "min_notional")}
    raise LookupError(f"no market {symbol}")


async def last_price(http: httpx.AsyncClient, symbol: str, wait_s: float = 10.0) -> Decimal:
    """The ticker's price; right after start-up the feed may not have ticked yet (404), so wait a little."""
    deadline = asyncio.get_running_loop().time() + wait_s
    while True:
        r = await http.get(f"/api/markets/{symbol}/ticker")
        if r.status_code != 404 or asyncio.get_running_loop().time() > deadline:
            return Decimal(check(r).json()["price"])
        await asyncio.sleep(0.25)


def resting_buy(
    rules: dict[str, Decimal], price_now: Decimal, below: Decimal = Decimal("0.9")
) -> tuple[Decimal, Decimal]:
    """(price, quantity) of a small BUY that rests in the book: `below` x the market price on the tick grid,
    and the smallest quantity on the step grid whose notional clears the minimum with a 10% margin."""
    tick, step = rules["tick_size"], rules["step_size"]
    price = max(tick, (price_now * below / tick).to_integral_value(ROUND_FLOOR) * tick)
    lots = (rules["min_notional"] * Decimal("1.1") / price / step).to_integral_value(ROUND_CEILING)
    quantity = max(rules["min_qty"], lots * step)
    return price, quantity


def ws_url(base_url: str, token: str, last_event_id: str | None = None) -> str:
    """http(s)://host:port -> ws(s)://host:port/ws?token=...[&last_event_id=...]."""
    parts = urlsplit(base_url)
    scheme = "wss" if parts.scheme == "https" else "ws"
    query = {"token": token} | ({"last_event_id": last_event_id} if last_event_id else {})
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/") + "/ws", urlencode(query), ""))


T = TypeVar("T")
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
    connected: asyncio.Event = field(default_factory=asyncio.Event)  # set once the first connection is up

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
            self.connected.set()
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


async def within(step: Awaitable[T], seconds: float, what: str) -> T:
    """`step`, or TimeoutError naming what did not arrive in time."""
    try:
        return await asyncio.wait_for(step, seconds)
    except TimeoutError:
        raise TimeoutError(f"no {what} within {seconds}s") from None


async def demo(base_url: str, email: str, password: str, symbol: str, seconds: float) -> None:
    """Log in, follow events, place a LIMIT buy below the market (sized to the market's rules), cancel it
    once the exchange has it, and print what arrives until it is CANCELED (or `seconds` pass)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        token = await login(http, email, password)

        async def get_token() -> str:
            return token  # a real client would refresh via POST /auth/refresh before expiry

        statuses: dict[str, str] = {}
        changed = asyncio.Event()

        def show(message: dict[str, Any]) -> None:
            print(f"{message.get('type'):>16} {message.get('id')} {json.dumps(message.get('data'))}")
            data = message.get("data") or {}
            if message.get("type") == "ORDER_UPDATE":
                statuses[data["order_id"]] = data["status"]
                changed.set()

        async def until(order_id: str, wanted: set[str]) -> None:
            while statuses.get(order_id) not in wanted:
                changed.clear()
                await changed.wait()

        stream = EventStream(base_url, get_token, show, channels=[f"ticker:{symbol}"])
        stop = asyncio.Event()
        follower = asyncio.create_task(stream.run(stop))
        try:
            await within(stream.connected.wait(), seconds, "WebSocket connection")  # no update is missed
            price, quantity = resting_buy(await market_rules(http, symbol), await last_price(http, symbol))
            order = await place_order(
                http, token, symbol=symbol, side="BUY", type="LIMIT", quantity=quantity, price=price
            )
            print("placed", json.dumps(order))
            oid = order["order_id"]
            final = {"FILLED", "CANCELED", "REJECTED", "EXPIRED"}
            await within(until(oid, {"NEW", "PARTIALLY_FILLED", *final}), seconds, f"update of {oid}")
            if statuses[oid] not in final:
                await cancel_order(http, token, oid)
                print("cancel requested", oid)
            await within(until(oid, final), seconds, f"final status of {oid}")
            print("done", oid, statuses[oid])
        finally:
            stop.set()
            await follower


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base-url", default=os.environ.get("TRADEBRIDGE_URL", "http://127.0.0.1:8000"))
    ap.add_argument("--email", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--symbol", default="BTCUSDT")
    ap.add_argument("--seconds", type=float, default=10.0, help="how long to wait for each order update")
    args = ap.parse_args()
    try:
        asyncio.run(demo(args.base_url, args.email, args.password, args.symbol, args.seconds))
    except ApiError as exc:
        print(exc.describe(), file=sys.stderr)
        sys.exit(1)
    except LookupError as exc:  # a symbol the server does not list
        print(exc, file=sys.stderr)
        sys.exit(1)
    except TimeoutError as exc:  # before OSError, of which it is a subclass
        print(exc, file=sys.stderr)
        sys.exit(1)
    except (httpx.TransportError, OSError) as exc:
        print(f"cannot reach {args.base_url}: {exc!r} (is `tradebridge up` running?)", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
