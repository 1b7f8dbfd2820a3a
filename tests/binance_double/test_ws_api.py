"""The double's WebSocket API on the wire (raw `websockets`): framing, signatures, user data stream, faults."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection

from tests.binance_double import Account, BinanceDouble, DoubleControl
from tests.support.eventually import eventually

EXECUTION_REPORT_FIELDS = frozenset("eEscSofqpPFgCxXrilzLnNTtIwmMOZYQV")  # one letter each


def signed(account: Account, *, secret: str | None = None, **extra: Any) -> dict[str, Any]:
    """Params signed as the WebSocket API documents: sorted `name=value` joined by `&`, no percent-encoding."""
    params: dict[str, Any] = {"apiKey": account.api_key, "timestamp": int(time.time() * 1000), **extra}
    payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    key = (secret or account.api_secret).encode()
    return {**params, "signature": hmac.new(key, payload.encode(), hashlib.sha256).hexdigest()}


async def call(
    ws: ClientConnection, method: str, params: dict[str, Any] | None = None, req_id: Any = 1
) -> Any:
    request: dict[str, Any] = {"id": req_id, "method": method}
    if params is not None:
        request["params"] = params
    await ws.send(json.dumps(request))
    return await recv(ws)


async def recv(ws: ClientConnection) -> Any:
    return json.loads(await ws.recv())


async def take(ws: ClientConnection, n: int) -> list[Any]:
    return [json.loads(await ws.recv()) for _ in range(n)]


async def events_until(ws: ClientConnection, predicate: Any, limit: int = 20) -> list[dict[str, Any]]:
    """Events received up to and including the first one `predicate` accepts."""
    seen = []
    for _ in range(limit):
        msg = json.loads(await ws.recv())
        seen.append(msg)
        if predicate(msg):
            return seen
    raise AssertionError(f"no matching event in {seen}")


@pytest.fixture
async def api(binance_double: BinanceDouble) -> AsyncIterator[ClientConnection]:
    async with websockets.connect(binance_double.ws_url + "/ws-api/v3") as ws:
        yield ws


async def test_requests_are_framed_with_id_status_result_and_rate_limits(api: ClientConnection) -> None:
    pong = await call(api, "ping", {}, req_id="a-1")
    assert pong["id"] == "a-1" and pong["status"] == 200 and pong["result"] == {}
    assert pong["rateLimits"][0] | {"count": 0} == {
        "rateLimitType": "REQUEST_WEIGHT",
        "interval": "MINUTE",
        "intervalNum": 1,
        "limit": 6000,
        "count": 0,
    }
    clock = await call(api, "v3/time", req_id=7)
    assert clock["id"] == 7 and abs(clock["result"]["serverTime"] - time.time() * 1000) < 5000
    assert clock["rateLimits"][0]["count"] == 2
    unknown = await call(api, "order.nope", {}, req_id=8)
    assert (unknown["id"], unknown["status"], unknown["error"]) == (
        8,
        400,
        {"code": -1020, "msg": "This operation is not supported."},
    )
    await api.send("{not json")
    assert (await recv(api))["error"] == {"code": -1135, "msg": "Invalid JSON Request"}


async def test_user_stream_pushes_every_change_of_the_account(
    binance_double: BinanceDouble, binance_account: Account, api: ClientConnection
) -> None:
    answer = await call(api, "userDataStream.subscribe.signature", signed(binance_account, recvWindow=5000))
    assert (answer["status"], answer["result"]) == (200, {"subscriptionId": 0})
    other = binance_double.create_account({"USDT": "1000"})
    state = binance_double.state

    # An order placed outside any request (the control API's way), then filled by a price move.
    order = state.place_external_order(binance_account.api_key, "BTCUSDT", "BUY", "LIMIT", "0.01", "59000")
    state.place_external_order(other.api_key, "BTCUSDT", "BUY", "LIMIT", "0.01", "58000")  # not ours
    state.set_price("BTCUSDT", "58500")
    seen = await events_until(api, lambda m: m["event"].get("X") == "FILLED")
    assert {m["subscriptionId"] for m in seen} == {0}
    kinds = [(m["event"]["e"], m["event"].get("x")) for m in seen]
    assert kinds == [
        ("executionReport", "NEW"),
        ("outboundAccountPosition", None),
        ("executionReport", "TRADE"),
    ]
    new, position, fill = (m["event"] for m in seen)
    assert set(new) == EXECUTION_REPORT_FIELDS | {"W"} and set(fill) == EXECUTION_REPORT_FIELDS | {"W"}
    assert (new["i"], new["X"], new["w"], new["p"], new["q"]) == (
        order.order_id,
        "NEW",
        True,
        "59000.00000000",
        "0.01000000",
    )
    assert position["B"] == [{"a": "USDT", "f": "9410.00000000", "l": "590.00000000"}]
    assert (fill["l"], fill["L"], fill["z"], fill["Z"], fill["n"], fill["N"], fill["m"], fill["w"]) == (
        "0.01000000",
        "59000.00000000",
        "0.01000000",
        "590.00000000",
        "0.00001000",
        "BTC",
        True,
        False,
    )
    after = json.loads(await api.recv())["event"]
    assert after["e"] == "outboundAccountPosition"
    assert {b["a"]: b["f"] for b in after["B"]} == {"BTC": "1.00999000", "USDT": "9410.00000000"}

    # A deposit made by the test: balanceUpdate, then the position.
    state.set_balance(binance_account.api_key, "ETH", "12.5")
    deposit, position = [m["event"] for m in await take(api, 2)]
    assert (deposit["e"], deposit["a"], deposit["d"]) == ("balanceUpdate", "ETH", "2.50000000")
    assert position["B"] == [{"a": "ETH", "f": "12.50000000", "l": "0.00000000"}]


async def test_a_cancel_names_the_cancel_and_the_original_order(
    binance_double: BinanceDouble, binance_account: Account, api: ClientConnection
) -> None:
    await call(api, "userDataStream.subscribe.signature", signed(binance_account))
    state = binance_double.state
    order = state.place_external_order(
        binance_account.api_key, "BTCUSDT", "SELL", "LIMIT", "0.01", "61000", client_order_id="mine-1"
    )
    state.cancel_order(
        binance_account.api_key, "BTCUSDT", order_id=order.order_id, new_client_order_id="cxl-1"
    )
    seen = await events_until(api, lambda m: m["event"].get("x") == "CANCELED")
    cancel = seen[-1]["event"]
    assert (cancel["c"], cancel["C"], cancel["X"], cancel["w"]) == ("cxl-1", "mine-1", "CANCELED", False)


BAD_REQUESTS: dict[str, tuple[Any, int, int]] = {
    "wrong secret": (lambda acc: signed(acc, secret="0" * 64), 400, -1022),
    "param added after signing": (lambda acc: {**signed(acc), "recvWindow": 5001}, 400, -1022),
    "stale timestamp": (lambda acc: signed(acc, timestamp=1), 400, -1021),
    "unknown key": (lambda acc: {**signed(acc), "apiKey": "unknown"}, 401, -2015),
    "recvWindow over 60000": (lambda acc: signed(acc, recvWindow=70000), 400, -1131),
    "no timestamp": (lambda acc: {"apiKey": acc.api_key, "signature": "00"}, 400, -1102),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS))
async def test_wrong_signatures_are_rejected_with_binance_codes(
    binance_account: Account, api: ClientConnection, case: str
) -> None:
    build, status, code = BAD_REQUESTS[case]
    answer = await call(api, "userDataStream.subscribe.signature", build(binance_account))
    assert (answer["status"], answer["error"]["code"]) == (status, code), answer
    assert (await call(api, "session.subscriptions"))["result"] == []


async def test_one_subscription_per_account_and_unsubscribe_ends_it(
    binance_double: BinanceDouble, binance_account: Account, api: ClientConnection
) -> None:
    assert (await call(api, "userDataStream.subscribe.signature", signed(binance_account)))["result"] == {
        "subscriptionId": 0
    }
    again = await call(api, "userDataStream.subscribe.signature", signed(binance_account))
    assert again["error"] == {"code": -2035, "msg": "User Data Stream subscription already active."}
    listed = await call(api, "session.subscriptions")
    assert listed["result"] == [{"subscriptionId": 0}]
    bye = await call(api, "userDataStream.unsubscribe", {"subscriptionId": 0})
    assert (bye["status"], bye["result"]) == (200, {})
    ended = await recv(api)
    assert ended["subscriptionId"] == 0 and ended["event"]["e"] == "eventStreamTerminated"
    binance_double.state.set_balance(binance_account.api_key, "USDT", "1")
    assert (await call(api, "ping"))["result"] == {}  # nothing was pushed before the answer


async def test_event_stream_terminated_on_control_request(
    binance_double: BinanceDouble, binance_account: Account, api: ClientConnection
) -> None:
    other = binance_double.create_account({"USDT": "10"})
    await call(api, "userDataStream.subscribe.signature", signed(binance_account), req_id=1)
    await call(api, "userDataStream.subscribe.signature", signed(other), req_id=2)
    with DoubleControl(binance_double.url) as control:
        assert control.ws_subscriptions()["api"] == [sorted([binance_account.api_key, other.api_key])]
        control.terminate_user_streams(binance_account.api_key)
    ended = await recv(api)
    assert ended["subscriptionId"] == 0 and ended["event"]["e"] == "eventStreamTerminated"
    binance_double.state.set_balance(binance_account.api_key, "USDT", "1")
    binance_double.state.set_balance(other.api_key, "USDT", "1")
    still = await recv(api)
    assert (still["subscriptionId"], still["event"]["e"]) == (1, "balanceUpdate")


async def test_connection_reset_cuts_without_a_close_frame(
    binance_double: BinanceDouble, api: ClientConnection
) -> None:
    await call(api, "ping")
    binance_double.reset_ws("api")
    with pytest.raises(websockets.ConnectionClosedError) as info:
        await api.recv()
    assert info.value.rcvd is None  # no close frame: a network failure, not a goodbye
    async with websockets.connect(binance_double.ws_url + "/ws-api/v3") as again:
        assert (await call(again, "ping"))["status"] == 200


async def test_server_shutdown_warns_then_closes(
    binance_double: BinanceDouble, api: ClientConnection
) -> None:
    async with websockets.connect(binance_double.ws_url + "/stream?streams=btcusdt@trade") as market:
        await eventually(lambda: binance_double.ws_subscriptions()["market"] == [["btcusdt@trade"]])
        with DoubleControl(binance_double.url) as control:
            control.server_shutdown()
        assert json.loads(await api.recv())["event"]["e"] == "serverShutdown"
        assert json.loads(await market.recv()) | {"data": None} == {"stream": "!serverShutdown", "data": None}
        for ws in (api, market):
            with pytest.raises(websockets.ConnectionClosedOK) as info:
                await ws.recv()
            assert info.value.rcvd is not None and info.value.rcvd.code == 1001


async def test_delayed_messages_keep_their_order(
    binance_double: BinanceDouble, binance_account: Account, api: ClientConnection
) -> None:
    await call(api, "userDataStream.subscribe.signature", signed(binance_account))
    binance_double.delay_ws(300)
    started = time.monotonic()
    # The change is queued on the double's loop (call_soon_threadsafe) before the ping is even sent, so its
    # two events come first and the ping's answer last; sending the ping first raced with the change.
    binance_double.state.set_balance(binance_account.api_key, "USDT", "5")
    await api.send(json.dumps({"id": 1, "method": "ping"}))
    first, second, third = await take(api, 3)
    assert time.monotonic() - started >= 0.3
    assert (first["event"]["e"], second["event"]["e"], third["id"]) == (
        "balanceUpdate",
        "outboundAccountPosition",
        1,
    )
    binance_double.delay_ws(0)
