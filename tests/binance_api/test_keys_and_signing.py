"""TradeBridge API keys (issue, list, revoke; hashed/encrypted at rest; audited) and Binance's request signing
on the Binance-compatible API (key, HMAC-SHA256 signature, timestamp and recvWindow, scopes, IP allow-list),
through the app create_app builds, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from sqlalchemy import select
from sqlmodel import col

from shared.apikeys import KeyRefused, check_timestamp, signed_payload, verify_signature
from shared.clock import ManualClock
from shared.models import ApiKey, AuditLog
from tests.binance_api.conftest import parts
from tests.support.api import Api, make_settings, running_api

PREFIX = "/binance/api/v3"


@pytest.fixture(params=["sqlite", "postgresql"])
async def api(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> AsyncIterator[Api]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}" if request.param == "sqlite" else pg_url
    clock = ManualClock(datetime.now(UTC))
    async with running_api(make_settings(url), clock=clock, migrate=True) as api:
        api.app.state.test_clock = clock
        yield api


def _now_ms(api: Api) -> int:
    return int(api.app.state.test_clock.now().timestamp() * 1000)


async def _key(api: Api, email: str, **body: Any) -> tuple[dict[str, str], dict[str, Any]]:
    bearer = await api.user(email)
    r = await api.client.post("/api/api-keys", json=body, headers=bearer)
    assert r.status_code == 201, r.text
    return bearer, r.json()


def _signed(
    key: dict[str, Any], params: dict[str, Any], *, secret: str | None = None
) -> tuple[str, dict[str, str]]:
    """A query string signed as ccxt signs it (percent-encoded payload), and the key header."""
    query = urlencode(params)
    signature = hmac.new((secret or key["secret"]).encode(), query.encode(), hashlib.sha256).hexdigest()
    return f"{query}&signature={signature}", {"X-MBX-APIKEY": key["api_key"]}


async def _get(api: Api, path: str, key: dict[str, Any], params: dict[str, Any], **kw: Any) -> httpx.Response:
    query, headers = _signed(key, params, **kw)
    return await api.client.get(f"{PREFIX}{path}?{query}", headers=headers)


async def test_keys_issue_list_revoke_stored_hashed_and_encrypted_and_audited(api: Api) -> None:
    bearer, key = await _key(api, "keys@example.com", label="bot", scopes=["read"], ip_allowlist=["10.1.2.3"])
    assert len(key["api_key"]) == 64 and len(key["secret"]) == 64
    assert key["scopes"] == ["read"] and key["ip_allowlist"] == ["10.1.2.3/32"]

    listed = (await api.client.get("/api/api-keys", headers=bearer)).json()
    assert [k["id"] for k in listed] == [key["id"]]
    assert "secret" not in listed[0] and "api_key" not in listed[0]
    assert listed[0]["api_key_hint"] == "****" + key["api_key"][-4:]

    async with parts(api.app).read_sessions() as s:
        row = (await s.execute(select(ApiKey).where(ApiKey.id == key["id"]))).scalar_one()
        audit = [a.action for a in (await s.execute(select(AuditLog).order_by(col(AuditLog.id)))).scalars()]
    assert row.key_hash == hashlib.sha256(key["api_key"].encode()).hexdigest()
    assert key["secret"] not in row.secret_ciphertext and key["api_key"] not in row.secret_ciphertext
    assert row.secret_ciphertext.startswith("v1.")
    assert "apikeys.create" in audit

    # another user cannot revoke it
    other = await api.user("other@example.com")
    assert (await api.client.delete(f"/api/api-keys/{key['id']}", headers=other)).status_code == 404

    assert (await api.client.delete(f"/api/api-keys/{key['id']}", headers=bearer)).status_code == 204
    assert (await api.client.get("/api/api-keys", headers=bearer)).json() == []
    async with parts(api.app).read_sessions() as s:
        audit = [a.action for a in (await s.execute(select(AuditLog))).scalars()]
    assert "apikeys.revoke" in audit


async def test_bad_key_requests_are_problems(api: Api) -> None:
    bearer = await api.user("bad@example.com")
    body: dict[str, Any]
    for body in ({"scopes": ["admin"]}, {"scopes": []}, {"ip_allowlist": ["not-an-ip"]}):
        r = await api.client.post("/api/api-keys", json=body, headers=bearer)
        assert r.status_code == 422, (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert (await api.client.get("/api/api-keys")).status_code == 401


async def test_api_key_authenticates_only_the_binance_api(api: Api) -> None:
    _, key = await _key(api, "only@example.com")
    r = await api.client.get("/api/me", headers={"Authorization": f"Bearer {key['api_key']}"})
    assert r.status_code == 401
    r = await _get(api, "/account", key, {"timestamp": _now_ms(api)})
    assert r.status_code == 200, r.text
    assert r.json()["balances"] == [{"asset": "USDT", "free": "10000.00000000", "locked": "0.00000000"}]
    assert "X-MBX-USED-WEIGHT-1M" in r.headers


async def test_signature_timestamp_and_key_matrix(api: Api) -> None:
    bearer, key = await _key(api, "matrix@example.com")
    _, read_only = await _key(api, "reader@example.com", scopes=["read"])
    ts = _now_ms(api)
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001"}
    order["price"] = "20000"

    async def code(r: httpx.Response) -> tuple[int, int]:
        assert r.headers["content-type"].startswith("application/json"), r.text  # never problem+json here
        return r.status_code, r.json()["code"]

    # wrong secret
    assert await code(await _get(api, "/account", key, {"timestamp": ts}, secret="x" * 64)) == (400, -1022)
    # stale timestamp (outside the default 5 s window) and one too far ahead
    assert await code(await _get(api, "/account", key, {"timestamp": ts - 5001})) == (400, -1021)
    assert await code(await _get(api, "/account", key, {"timestamp": ts + 1000})) == (400, -1021)
    assert await code(await _get(api, "/account", key, {"timestamp": ts, "recvWindow": 60001})) == (
        400,
        -1131,
    )
    # no signature, no timestamp, no key, an unknown key
    r = await api.client.get(f"{PREFIX}/account?timestamp={ts}", headers={"X-MBX-APIKEY": key["api_key"]})
    assert await code(r) == (400, -1102)
    assert await code(await _get(api, "/account", key, {})) == (400, -1102)
    query, _ = _signed(key, {"timestamp": ts})
    assert await code(await api.client.get(f"{PREFIX}/account?{query}")) == (401, -2014)
    assert await code(
        await api.client.get(f"{PREFIX}/account?{query}", headers={"X-MBX-APIKEY": "A" * 64})
    ) == (
        401,
        -2015,
    )

    # a request signed correctly is accepted inside its window, and refused once replayed after it
    query, headers = _signed(key, {"timestamp": ts, "recvWindow": 2000})
    assert (await api.client.get(f"{PREFIX}/account?{query}", headers=headers)).status_code == 200
    api.app.state.test_clock.advance(2.5)
    assert await code(await api.client.get(f"{PREFIX}/account?{query}", headers=headers)) == (400, -1021)
    ts = _now_ms(api)

    # a read-only key may read but not place an order; nothing was placed
    assert (await _get(api, "/account", read_only, {"timestamp": ts})).status_code == 200
    body, headers = _signed(read_only, {**order, "timestamp": ts})
    r = await api.client.post(
        f"{PREFIX}/order",
        content=body,
        headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert await code(r) == (401, -2015)

    # a revoked key stops at once
    assert (await api.client.delete(f"/api/api-keys/{key['id']}", headers=bearer)).status_code == 204
    assert await code(await _get(api, "/account", key, {"timestamp": ts})) == (401, -2015)


async def test_ip_allow_list(api: Api) -> None:
    # the test client connects from 203.0.113.7
    _, elsewhere = await _key(api, "ip1@example.com", ip_allowlist=["10.0.0.0/8"])
    _, here = await _key(api, "ip2@example.com", ip_allowlist=["203.0.113.0/24"])
    ts = _now_ms(api)
    r = await _get(api, "/account", elsewhere, {"timestamp": ts})
    assert (r.status_code, r.json()["code"]) == (401, -2015)
    assert (await _get(api, "/account", here, {"timestamp": ts})).status_code == 200


async def test_unknown_endpoint_and_bad_parameters_answer_binance_errors(api: Api) -> None:
    r = await api.client.get(f"{PREFIX}/nope")
    assert (r.status_code, r.json()["code"]) == (404, -1000)
    r = await api.client.get(f"{PREFIX}/depth")
    assert (r.status_code, r.json()) == (400, {"code": -1102, "msg": r.json()["msg"]})
    assert "'symbol'" in r.json()["msg"]
    r = await api.client.get(f"{PREFIX}/depth?symbol=NOPEUSDT")
    assert (r.status_code, r.json()["code"]) == (400, -1121)
    r = await api.client.get(f"{PREFIX}/klines?symbol=BTCUSDT&interval=7m")
    assert (r.status_code, r.json()["code"]) == (400, -1120)
    r = await api.client.get(f"{PREFIX}/depth?symbol=BTCUSDT&symbol=ETHUSDT")
    assert (r.status_code, r.json()["code"]) == (400, -1101)


async def test_stop_order_parameters_answer_binance_errors(api: Api) -> None:
    """What clients check before sending, checked here too: a stop type needs its stopPrice on the tick, no
    other type takes one, a stop market order takes no price, trailing stops are not offered."""
    _, key = await _key(api, "stops@example.com")
    base = {"symbol": "BTCUSDT", "side": "SELL", "quantity": "0.001", "timestamp": _now_ms(api)}
    limit = {"price": "30000", "timeInForce": "GTC"}
    cases: list[tuple[dict[str, str], int]] = [
        ({"type": "STOP_LOSS", "stopPrice": "30000"}, 200),
        ({"type": "STOP_LOSS_LIMIT", "stopPrice": "30000", **limit}, 200),
        ({"type": "TAKE_PROFIT", "stopPrice": "90000"}, 200),
        ({"type": "TAKE_PROFIT_LIMIT", "stopPrice": "90000", **limit}, 200),
        ({"type": "STOP_LOSS"}, -1102),
        ({"type": "STOP_LOSS_LIMIT", **limit}, -1102),
        ({"type": "STOP_LOSS", "stopPrice": "30000.001"}, -1013),
        ({"type": "STOP_LOSS", "stopPrice": "30000", "price": "30000"}, -1106),
        ({"type": "STOP_LOSS", "stopPrice": "30000", "quoteOrderQty": "30"}, -1106),
        ({"type": "LIMIT", "stopPrice": "30000", **limit}, -1106),
        ({"type": "STOP_LOSS", "trailingDelta": "100"}, -2010),
        ({"type": "OCO", "stopPrice": "30000"}, -1116),
    ]
    for params, expected in cases:
        body, headers = _signed(key, {**base, **params})
        r = await api.client.post(
            f"{PREFIX}/order/test",
            content=body,
            headers={**headers, "Content-Type": "application/x-www-form-urlencoded"},
        )
        got = r.status_code if r.status_code == 200 else r.json()["code"]
        assert got == expected, (params, r.text)


def test_signature_rule_accepts_encoded_and_decoded_payloads() -> None:
    """ccxt signs the percent-encoded payload (Binance's rule since 2026-01-15); python-binance signs its values
    unencoded and lets its HTTP library encode the body: both verify, anything else is -1022."""
    secret = "s" * 64
    encoded = "symbol=BTCUSDT&newClientOrderId=a%3Ab%2Fc&timestamp=1"
    for signed in (encoded, "symbol=BTCUSDT&newClientOrderId=a:b/c&timestamp=1"):
        sig = hmac.new(secret.encode(), signed.encode(), hashlib.sha256).hexdigest()
        payload, got = signed_payload("", f"{encoded}&signature={sig}")
        verify_signature(secret, payload, got)
    with pytest.raises(KeyRefused) as exc:
        verify_signature(secret, encoded, "0" * 64)
    assert exc.value.code == -1022
    with pytest.raises(KeyRefused) as exc:
        check_timestamp("1", "abc", 10)
    assert exc.value.code == -1100
