"""The double's wire protocol without ccxt (signing rules, error bodies), its control API, and its own process."""

from __future__ import annotations

import hashlib
import hmac
import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlencode

import ccxt.async_support  # noqa: F401  (ensures the client stack imports in this process too)
import httpx
import pytest

from shared.exchanges.binance import make_binance_client
from tests.binance_double import Account, BinanceDouble, DoubleControl

REPO = Path(__file__).resolve().parents[2]


def _sign(secret: str, payload: str) -> str:
    return hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()


def test_signature_covers_query_and_body_as_total_params(
    binance_double: BinanceDouble, binance_account: Account
) -> None:
    now = binance_double.state.now_ms()
    query = urlencode({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC"})
    body = urlencode({"quantity": "0.01", "price": "50000", "newOrderRespType": "ACK", "timestamp": now})
    headers = {"X-MBX-APIKEY": binance_account.api_key, "Content-Type": "application/x-www-form-urlencoded"}
    with httpx.Client(base_url=binance_double.url) as http:
        bad = http.post(
            f"/api/v3/order?{query}",
            content=f"{body}&signature={_sign(binance_account.api_secret, body)}",
            headers=headers,
        )
        assert (bad.status_code, bad.json()) == (
            400,
            {"code": -1022, "msg": "Signature for this request is not valid."},
        )
        sig = _sign(binance_account.api_secret, query + body)
        ok = http.post(f"/api/v3/order?{query}", content=f"{body}&signature={sig}", headers=headers)
        assert ok.status_code == 200
        assert set(ok.json()) == {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}

        missing_key = http.get("/api/v3/account", params={"timestamp": now, "signature": "x"})
        assert (missing_key.status_code, missing_key.json()["code"]) == (401, -2014)
        unsigned = http.get("/api/v3/account", params={"timestamp": now}, headers=headers)
        assert unsigned.json() == {
            "code": -1102,
            "msg": "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.",
        }
        unknown = http.get("/api/v3/nope")
        assert unknown.status_code == 404


def test_public_market_data(binance_double: BinanceDouble, binance_account: Account) -> None:
    state = binance_double.state
    state.place_external_order(binance_account.api_key, "ETHUSDT", "BUY", "MARKET", "0.5")
    state.set_price("ETHUSDT", "3100")
    with httpx.Client(base_url=binance_double.url) as http:
        assert http.get("/api/v3/ping").json() == {}
        assert abs(http.get("/api/v3/time").json()["serverTime"] - state.now_ms()) < 5000
        assert http.get("/api/v3/ticker/price", params={"symbol": "ETHUSDT"}).json() == {
            "symbol": "ETHUSDT",
            "price": "3100.00000000",
        }
        assert len(http.get("/api/v3/ticker/price").json()) == 3
        book = http.get("/api/v3/ticker/bookTicker", params={"symbol": "ETHUSDT"}).json()
        assert book["bidPrice"] < "3100" < book["askPrice"]
        day = http.get("/api/v3/ticker/24hr", params={"symbol": "ETHUSDT"}).json()
        assert (day["openPrice"], day["lastPrice"], day["volume"], day["count"]) == (
            "3000.00000000",
            "3100.00000000",
            "0.50000000",
            1,
        )
        trades = http.get("/api/v3/trades", params={"symbol": "ETHUSDT"}).json()
        assert [(t["price"], t["qty"]) for t in trades] == [("3000.00000000", "0.50000000")]
        klines = http.get("/api/v3/klines", params={"symbol": "ETHUSDT", "interval": "1m"}).json()
        assert klines[-1][4] == "3100.00000000" and len(klines[-1]) == 12
        bad = http.get("/api/v3/klines", params={"symbol": "ETHUSDT", "interval": "7m"})
        assert bad.json() == {"code": -1120, "msg": "Invalid interval."}
        depth = http.get("/api/v3/depth", params={"symbol": "ETHUSDT", "limit": 5}).json()
        assert len(depth["bids"]) == 5 and len(depth["asks"]) == 5
        assert http.get("/api/v3/depth", params={"symbol": "XRPUSDT"}).json()["code"] == -1121


def test_control_api_over_http(binance_double: BinanceDouble) -> None:
    with DoubleControl(binance_double.url) as control:
        acc = control.create_account({"USDT": "1000"}, api_key="k1", api_secret="s1")
        assert acc == Account("k1", "s1")
        external = control.place_external_order(
            "k1", "BTCUSDT", "BUY", "LIMIT", "0.01", "50000", client_order_id="ext-1"
        )
        assert external["status"] == "NEW" and external["external"] is True
        control.fill_order(external["order_id"], qty="0.004")
        assert control.orders(client_order_id="ext-1")[0]["executed_qty"] == "0.004"
        assert Decimal(control.balances("k1")["BTC"]["free"]) == Decimal("0.003996")
        control.set_price("BTCUSDT", "49000")
        assert control.orders("k1")[0]["status"] == "FILLED"
        assert len(control.trades("k1")) == 2
        control.inject_fault("GET", "/api/v3/ping", status=503, times=2)
        with httpx.Client(base_url=binance_double.url) as http:
            assert [http.get("/api/v3/ping").status_code for _ in range(3)] == [503, 503, 200]
        assert [r["status"] for r in control.requests(path="/api/v3/ping")] == [503, 503, 200]
        control.wipe(keep_accounts=False)
        assert binance_double.state.accounts() == [] and control.orders() == []


@pytest.mark.timeout(60)
async def test_standalone_process() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.binance_double", "--port", "0"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server prints READY (or exits)
        assert line.startswith("READY http://127.0.0.1:"), line
        url = line.split()[1]
        with DoubleControl(url) as control:
            acc = control.create_account({"USDT": "500"})
            client = make_binance_client(acc.api_key, acc.api_secret, base_url=url, timeout_ms=2000)
            try:
                balance = await client.fetch_balance()
                assert balance["free"]["USDT"] == 500.0
                await client.create_order("BNB/USDT", "market", "buy", 0.1)
            finally:
                await client.close()
            [order] = control.orders(acc.api_key)
            assert order["status"] == "FILLED" and order["symbol"] == "BNBUSDT"
    finally:
        proc.terminate()
        deadline = time.monotonic() + 10
        while proc.poll() is None and time.monotonic() < deadline:
            proc.wait(timeout=0.5)
    assert proc.returncode == 0


def test_factory_rejects_bad_urls_and_keeps_keys_out_of_logs(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ValueError):
        make_binance_client("k", "s", base_url="127.0.0.1:9000")
    client = make_binance_client("visible-key", "s", base_url="http://127.0.0.1:1/")
    assert client.urls["api"]["private"] == "http://127.0.0.1:1/api/v3"
    assert client.options["defaultType"] == "spot" and client.isSandboxModeEnabled
    import logging

    with caplog.at_level(logging.DEBUG, logger="shared.exchanges.ccxt"):
        client.logger.debug("%s %s, Request: %s %s", "GET", "u", {"X-MBX-APIKEY": "visible-key"}, None)
    assert "visible-key" not in caplog.text and "***" in caplog.text


def test_a_double_stopped_right_after_it_started_is_gone_at_once() -> None:
    """A test that wants the exchange unreachable from the outset stops the double as soon as it starts: the stop
    must not be lost in the double's start-up (it was, now and then: the double answered on, and the stop waited
    its 10 s)."""
    import socket

    for _ in range(30):
        double = BinanceDouble().start()
        port = int(double.url.rsplit(":", 1)[1])
        started = time.monotonic()
        double.stop()
        assert time.monotonic() - started < 5
        with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
            pass
