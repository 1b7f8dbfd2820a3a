"""The double's control API over HTTP (`/__control/...`), and a small client for it.

Tests in the same process use `BinanceDouble.state` directly; tests that run the double as its own process
(`python -m tests.binance_double`) drive it through these routes with `DoubleControl`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx
from aiohttp import web

from tests.binance_double.state import Account, BinanceError, ExchangeState, Fault

if TYPE_CHECKING:
    from tests.binance_double.ws import StreamHub

Route = Callable[[web.Request], Awaitable[web.Response]]


def _jsonable(obj: Any) -> Any:
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _jsonable(v) for k, v in obj.items()}
    return obj


def _ok(data: Any = None) -> web.Response:
    return web.json_response(_jsonable({} if data is None else data))


def add_control_routes(app: web.Application, state: ExchangeState, hub: StreamHub | None = None) -> None:
    async def body(request: web.Request) -> dict[str, Any]:
        if not request.can_read_body:
            return {}
        data = await request.json()
        return data if isinstance(data, dict) else {}

    def guarded(fn: Route) -> Route:
        async def wrapper(request: web.Request) -> web.Response:
            try:
                return await fn(request)
            except (ValueError, KeyError, TypeError) as exc:
                return web.json_response({"error": str(exc)}, status=400)
            except BinanceError as exc:
                return web.json_response({"code": exc.code, "msg": exc.msg}, status=exc.http_status)

        return wrapper

    async def create_account(request: web.Request) -> web.Response:
        b = await body(request)
        acc = state.create_account(
            b.get("balances") or {}, api_key=b.get("api_key"), api_secret=b.get("api_secret")
        )
        return _ok(acc)

    async def set_balances(request: web.Request) -> web.Response:
        key = request.match_info["api_key"]
        for asset, amount in (await body(request)).items():
            state.set_balance(key, asset, Decimal(str(amount)))
        return _ok(state.balances(key))

    async def get_balances(request: web.Request) -> web.Response:
        return _ok(state.balances(request.match_info["api_key"]))

    async def set_price(request: web.Request) -> web.Response:
        b = await body(request)
        fills = state.set_price(b["symbol"], Decimal(str(b["price"])), liquidity=b.get("liquidity"))
        return _ok(fills)

    async def fill(request: web.Request) -> web.Response:
        b = await body(request)
        return _ok(state.fill_order(int(request.match_info["order_id"]), b.get("qty"), b.get("price")))

    async def expire(request: web.Request) -> web.Response:
        b = await body(request)
        return _ok(state.expire_order(int(request.match_info["order_id"]), b.get("status", "EXPIRED")))

    async def external(request: web.Request) -> web.Response:
        b = await body(request)
        order = state.place_external_order(
            b["api_key"],
            b["symbol"],
            b["side"],
            b["type"],
            str(b["quantity"]),
            None if b.get("price") is None else str(b["price"]),
            time_in_force=b.get("time_in_force", "GTC"),
            client_order_id=b.get("client_order_id"),
        )
        return _ok(order)

    async def orders(request: web.Request) -> web.Response:
        q = request.query
        return _ok(
            state.orders(q.get("api_key"), client_order_id=q.get("client_order_id"), symbol=q.get("symbol"))
        )

    async def trades(request: web.Request) -> web.Response:
        q = request.query
        order_id = int(q["order_id"]) if q.get("order_id") else None
        return _ok(state.trades(q.get("api_key"), order_id=order_id, symbol=q.get("symbol")))

    async def add_fault(request: web.Request) -> web.Response:
        b = await body(request)
        fault = Fault(
            method=str(b["method"]).upper(),
            path=b["path"],
            kind=b.get("kind", "status"),
            remaining=int(b.get("times", 1)),
            status=int(b.get("status", 503)),
            delay=float(b.get("delay", 0)),
            retry_after=int(b.get("retry_after", 1)),
            after_processing=bool(b.get("after_processing", False)),
        )
        state.inject_fault(fault)
        return _ok(state.pending_faults())

    async def clear_faults(request: web.Request) -> web.Response:
        state.clear_faults()
        return _ok()

    async def wipe(request: web.Request) -> web.Response:
        b = await body(request)
        state.wipe(keep_accounts=bool(b.get("keep_accounts", True)))
        return _ok()

    async def time_offset(request: web.Request) -> web.Response:
        state.set_time_offset_ms(int((await body(request))["offset_ms"]))
        return _ok({"serverTime": state.now_ms()})

    async def requests(request: web.Request) -> web.Response:
        return _ok(state.requests(request.query.get("method"), request.query.get("path")))

    async def ws_reset(request: web.Request) -> web.Response:
        state.reset_ws_connections((await body(request)).get("scope", "all"))
        return _ok()

    async def ws_terminate(request: web.Request) -> web.Response:
        state.terminate_user_streams((await body(request)).get("api_key"))
        return _ok()

    async def ws_shutdown(request: web.Request) -> web.Response:
        state.server_shutdown()
        return _ok()

    async def ws_delay(request: web.Request) -> web.Response:
        state.set_ws_delay_ms(int((await body(request))["delay_ms"]))
        return _ok({"delay_ms": state.ws_delay_ms()})

    async def ws_state(request: web.Request) -> web.Response:
        return _ok(hub.snapshot() if hub is not None else {"market": [], "api": []})

    routes: list[tuple[str, str, Route]] = [
        ("POST", "/__control/accounts", create_account),
        ("PUT", "/__control/accounts/{api_key}/balances", set_balances),
        ("GET", "/__control/accounts/{api_key}/balances", get_balances),
        ("POST", "/__control/price", set_price),
        ("POST", "/__control/orders/external", external),
        ("POST", "/__control/orders/{order_id}/fill", fill),
        ("POST", "/__control/orders/{order_id}/expire", expire),
        ("GET", "/__control/orders", orders),
        ("GET", "/__control/trades", trades),
        ("POST", "/__control/faults", add_fault),
        ("DELETE", "/__control/faults", clear_faults),
        ("POST", "/__control/wipe", wipe),
        ("POST", "/__control/time", time_offset),
        ("GET", "/__control/requests", requests),
        ("POST", "/__control/ws/reset", ws_reset),
        ("POST", "/__control/ws/terminate", ws_terminate),
        ("POST", "/__control/ws/shutdown", ws_shutdown),
        ("POST", "/__control/ws/delay", ws_delay),
        ("GET", "/__control/ws", ws_state),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, guarded(handler))


class DoubleControl:
    """Synchronous client of `/__control` for a double running in another process. Returns plain JSON."""

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self._http = httpx.Client(base_url=url.rstrip("/") + "/__control", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> DoubleControl:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, verb: str, route: str, payload: dict[str, Any] | None = None, /, **query: Any) -> Any:
        params = {k: v for k, v in query.items() if v is not None}
        content = None if payload is None else json.dumps(payload)
        response = self._http.request(
            verb, route, content=content, params=params, headers={"Content-Type": "application/json"}
        )
        if response.status_code >= 400:
            raise RuntimeError(f"control {verb} {route} -> {response.status_code}: {response.text}")
        return response.json()

    def create_account(
        self,
        balances: dict[str, str] | None = None,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
    ) -> Account:
        data = self._call(
            "POST", "/accounts", {"balances": balances or {}, "api_key": api_key, "api_secret": api_secret}
        )
        return Account(data["api_key"], data["api_secret"])

    def set_balances(self, api_key: str, balances: dict[str, str]) -> Any:
        return self._call("PUT", f"/accounts/{api_key}/balances", balances)

    def balances(self, api_key: str) -> Any:
        return self._call("GET", f"/accounts/{api_key}/balances")

    def set_price(self, symbol: str, price: str, *, liquidity: str | None = None) -> Any:
        return self._call("POST", "/price", {"symbol": symbol, "price": price, "liquidity": liquidity})

    def fill_order(self, order_id: int, qty: str | None = None, price: str | None = None) -> Any:
        return self._call("POST", f"/orders/{order_id}/fill", {"qty": qty, "price": price})

    def expire_order(self, order_id: int, status: str = "EXPIRED") -> Any:
        return self._call("POST", f"/orders/{order_id}/expire", {"status": status})

    def place_external_order(
        self,
        api_key: str,
        symbol: str,
        side: str,
        type: str,
        quantity: str,
        price: str | None = None,
        **kw: Any,
    ) -> Any:
        payload = {
            "api_key": api_key,
            "symbol": symbol,
            "side": side,
            "type": type,
            "quantity": quantity,
            "price": price,
            **kw,
        }
        return self._call("POST", "/orders/external", payload)

    def orders(
        self, api_key: str | None = None, *, client_order_id: str | None = None, symbol: str | None = None
    ) -> Any:
        return self._call("GET", "/orders", api_key=api_key, client_order_id=client_order_id, symbol=symbol)

    def trades(self, api_key: str | None = None, *, order_id: int | None = None) -> Any:
        return self._call("GET", "/trades", api_key=api_key, order_id=order_id)

    def inject_fault(
        self,
        method: str,
        path: str,
        kind: str = "status",
        *,
        times: int = 1,
        status: int = 503,
        delay: float = 0.0,
        retry_after: int = 1,
        after_processing: bool = False,
    ) -> Any:
        return self._call(
            "POST",
            "/faults",
            {
                "method": method,
                "path": path,
                "kind": kind,
                "times": times,
                "status": status,
                "delay": delay,
                "retry_after": retry_after,
                "after_processing": after_processing,
            },
        )

    def clear_faults(self) -> Any:
        return self._call("DELETE", "/faults")

    def wipe(self, *, keep_accounts: bool = True) -> Any:
        return self._call("POST", "/wipe", {"keep_accounts": keep_accounts})

    def set_time_offset_ms(self, offset_ms: int) -> Any:
        return self._call("POST", "/time", {"offset_ms": offset_ms})

    def requests(self, method: str | None = None, path: str | None = None) -> Any:
        return self._call("GET", "/requests", method=method, path=path)

    def reset_ws(self, scope: str = "all") -> Any:
        return self._call("POST", "/ws/reset", {"scope": scope})

    def terminate_user_streams(self, api_key: str | None = None) -> Any:
        return self._call("POST", "/ws/terminate", {"api_key": api_key})

    def server_shutdown(self) -> Any:
        return self._call("POST", "/ws/shutdown", {})

    def delay_ws(self, delay_ms: int) -> Any:
        return self._call("POST", "/ws/delay", {"delay_ms": delay_ms})

    def ws_subscriptions(self) -> Any:
        return self._call("GET", "/ws")
