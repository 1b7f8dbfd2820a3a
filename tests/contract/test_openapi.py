"""The OpenAPI document tells the truth about errors and amounts, and /docs works without internet
(issue #14, items 9 and 10). Schemathesis does the exhaustive part (test_schemathesis.py); these are the
fast, direct checks of the same promises."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from gateway.middleware import SECURITY_HEADERS
from shared.schemas.orders import DECIMAL_INPUT_PATTERN, PLAIN_DECIMAL_PATTERN
from tests.support.api import Api, make_settings, running_api, running_api_on

pytestmark = pytest.mark.asyncio

PROBLEM = "application/problem+json"
BINANCE = "/binance/"  # the Binance-compatible API: Binance's error shape, not problem+json


@pytest.fixture(params=["postgresql", "sqlite"])
async def gateway(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path, redis_url: str, redis_prefix: str
) -> AsyncIterator[Api]:
    async with running_api_on(
        request.param, pg_url=pg_url, sqlite_dir=tmp_path, redis_url=redis_url, redis_prefix=redis_prefix
    ) as api:
        yield api


@pytest.fixture
async def sqlite_gateway(tmp_path: Path) -> AsyncIterator[Api]:
    """For what does not touch the database beyond start-up (the document, /docs, routing)."""
    async with running_api(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}"), migrate=True) as api:
        yield api


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(m.upper(), p, op) for p, item in doc["paths"].items() for m, op in item.items()]


async def test_every_error_response_is_declared_as_a_problem(sqlite_gateway: Api) -> None:
    doc = (await sqlite_gateway.client.get("/openapi.json")).json()
    problem = doc["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    assert {"type", "title", "status", "detail", "errors", "instance"} <= set(problem["properties"])
    assert "HTTPValidationError" not in doc["components"]["schemas"]  # FastAPI's application/json 422
    wrong = []
    for method, path, op in _operations(doc):
        if path.startswith(BINANCE):
            continue  # Binance's own error shape: test_binance_routes_declare_binance_errors
        for status, response in op["responses"].items():
            if not status.startswith(("4", "5")) or (path, status) == ("/readyz", "503"):
                continue
            if list(response.get("content", {})) != [PROBLEM]:
                wrong.append(f"{method} {path} {status}: {list(response.get('content', {}))}")
    assert not wrong, wrong


async def test_binance_routes_declare_binance_errors(sqlite_gateway: Api) -> None:
    """The Binance-compatible API answers Binance's `{code, msg}` as application/json with Binance's statuses
    (clients written for Binance parse nothing else): its document says so, for every status it can answer."""
    doc = (await sqlite_gateway.client.get("/openapi.json")).json()
    error = doc["components"]["schemas"]["BinanceErrorOut"]
    assert set(error["required"]) == {"code", "msg"}
    ref = {"$ref": "#/components/schemas/BinanceErrorOut"}
    binance = [(m, p, op) for m, p, op in _operations(doc) if p.startswith(BINANCE)]
    assert len(binance) >= 15
    wrong = []
    for method, path, op in binance:
        errors = {s: r for s, r in op["responses"].items() if s.startswith(("4", "5"))}
        if not {"400", "401", "429", "503"} <= set(errors):
            wrong.append(f"{method} {path}: {sorted(errors)}")
        for status, response in errors.items():
            if response.get("content") != {"application/json": {"schema": ref}}:
                wrong.append(f"{method} {path} {status}: {response.get('content')}")
        if not op["responses"]["429"].get("headers", {}).get("Retry-After", {}).get("required"):
            wrong.append(f"{method} {path} 429 without Retry-After")
    assert not wrong, wrong


async def test_binance_market_data_declares_its_required_parameters(sqlite_gateway: Api) -> None:
    """Found by Schemathesis: /depth, /trades and /klines read their query themselves, so the document listed
    no parameters and a call without `symbol` (a -1102 400) looked valid."""
    doc = (await sqlite_gateway.client.get("/openapi.json")).json()
    markets = sorted(sqlite_gateway.parts.markets)
    for path, required in (("depth", {"symbol"}), ("trades", {"symbol"}), ("klines", {"symbol", "interval"})):
        params = {p["name"]: p for p in doc["paths"][f"/binance/api/v3/{path}"]["get"]["parameters"]}
        assert {n for n, p in params.items() if p["required"]} == required, path
        assert params["symbol"]["schema"]["enum"] == markets
        assert params["limit"]["schema"]["minimum"] == 1
        r = await sqlite_gateway.client.get(f"/binance/api/v3/{path}")
        assert (r.status_code, r.json()["code"]) == (400, -1102)
        query = {"symbol": markets[0], "interval": "1m", "limit": params["limit"]["schema"]["maximum"]}
        assert (await sqlite_gateway.client.get(f"/binance/api/v3/{path}", params=query)).status_code == 200


async def test_binance_times_past_what_a_datetime_holds_are_400_not_500(sqlite_gateway: Api) -> None:
    """`startTime=99999999999999999999` on /klines (and /allOrders, /myTrades) made datetime.fromtimestamp
    raise: a 500 for client input. The document bounds it and the route answers Binance's -1130."""
    doc = (await sqlite_gateway.client.get("/openapi.json")).json()
    params = {p["name"]: p for p in doc["paths"]["/binance/api/v3/klines"]["get"]["parameters"]}
    highest = params["startTime"]["schema"]["maximum"]
    query = {"symbol": "BTCUSDT", "interval": "1m"}
    for name in ("startTime", "endTime"):
        r = await sqlite_gateway.client.get("/binance/api/v3/klines", params={**query, name: "9" * 20})
        assert (r.status_code, r.json()["code"]) == (400, -1130), r.text
        r = await sqlite_gateway.client.get("/binance/api/v3/klines", params={**query, name: highest})
        assert r.status_code == 200, r.text


async def test_binance_undeclared_methods_are_405_with_allow(sqlite_gateway: Api) -> None:
    """Found by Schemathesis: DELETE /binance/api/v3/ping was the unknown-endpoint 404 and PATCH a problem+json
    405; an undeclared method of a Binance endpoint is a Binance 405 naming the endpoint's methods."""
    doc = (await sqlite_gateway.client.get("/openapi.json")).json()
    for path in ("/binance/api/v3/ping", "/binance/api/v3/order", "/binance/api/v3/order/test"):
        documented = {m.upper() for m in doc["paths"][path]}
        for method in {"GET", "POST", "PUT", "PATCH", "DELETE"} - documented:
            r = await sqlite_gateway.client.request(method, path)
            assert r.status_code == 405, (method, path, r.text)
            assert r.headers["content-type"] == "application/json", (method, path)
            assert set(r.json()) == {"code", "msg"}
            assert documented == {m.strip() for m in r.headers["allow"].split(",")}, (method, path)
    unknown = await sqlite_gateway.client.delete("/binance/api/v3/nothing")
    assert (unknown.status_code, unknown.json()["code"]) == (404, -1000)


async def test_statuses_are_declared_where_they_can_occur(sqlite_gateway: Api) -> None:
    doc = (await sqlite_gateway.client.get("/openapi.json")).json()
    ops = {f"{m} {p}": set(op["responses"]) for m, p, op in _operations(doc)}
    for name, statuses in ops.items():
        secured = any(op.get("security") for m, p, op in _operations(doc) if f"{m} {p}" == name)
        if secured:
            assert "401" in statuses, name
    assert {"202", "200", "400", "401", "409", "413", "422", "429", "503"} <= ops["POST /api/orders"]
    assert {"401", "429", "400", "413", "422"} <= ops["POST /auth/login"]
    assert {"401", "404", "409"} <= ops["DELETE /api/orders/{order_id}"]
    assert {"403"} <= ops["GET /api/admin/users"]
    assert "404" in ops["GET /api/markets/{symbol}/ticker"]
    retry = doc["paths"]["/api/orders"]["post"]["responses"]["429"]["headers"]["Retry-After"]
    assert retry["required"] is True
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]


async def test_an_optional_token_is_declared_optional_and_venues_in_the_shapes(sqlite_gateway: Api) -> None:
    """Market data and the quote answer anonymous callers (paper) and use a token only to pick the venue: the
    document says so (an empty security requirement), or clients and Schemathesis take the token as required.
    Their answers name the venue, and a candle's trade_count may be null (the testnet's)."""
    doc = (await sqlite_gateway.client.get("/openapi.json")).json()
    optional = [
        ("get", "/api/markets/{symbol}/ticker"),
        ("get", "/api/markets/{symbol}/depth"),
        ("get", "/api/markets/{symbol}/trades"),
        ("get", "/api/markets/{symbol}/candles"),
        ("post", "/api/orders/quote"),
    ]
    for method, path in optional:
        assert {} in doc["paths"][path][method]["security"], (method, path)
        venue = next(p for p in doc["paths"][path][method]["parameters"] if p["name"] == "venue")
        assert venue["required"] is False
    assert {} not in doc["paths"]["/api/orders"]["post"]["security"]
    schemas = doc["components"]["schemas"]
    assert "venue" in schemas["QuoteOut"]["properties"] and "venue" in schemas["CandleOut"]["properties"]
    assert {"type": "null"} in schemas["CandleOut"]["properties"]["trade_count"]["anyOf"]
    anonymous = await sqlite_gateway.client.post(
        "/api/orders/quote", json={"symbol": "BTCUSDT", "side": "BUY", "quantity": "0.1"}
    )
    assert (anonymous.status_code, anonymous.json()["venue"]) == (200, "paper")


async def test_symbols_are_the_deployments_markets(sqlite_gateway: Api) -> None:
    doc = (await sqlite_gateway.client.get("/openapi.json")).json()
    markets = sorted(sqlite_gateway.parts.markets)
    order_in = doc["components"]["schemas"]["OrderIn"]["properties"]["symbol"]
    assert order_in["enum"] == markets
    trades = next(p for p in doc["paths"]["/api/trades"]["get"]["parameters"] if p["name"] == "symbol")
    assert [b["enum"] for b in trades["schema"]["anyOf"] if b.get("type") == "string"] == [markets]


async def test_decimals_are_patterned_in_and_plain_out(gateway: Api) -> None:
    doc = (await gateway.client.get("/openapi.json")).json()
    schemas = doc["components"]["schemas"]
    quantity = schemas["OrderIn"]["properties"]["quantity"]["anyOf"]
    assert {"type": "number", "exclusiveMinimum": 0} in quantity
    assert {"type": "string", "pattern": DECIMAL_INPUT_PATTERN} in quantity
    free = schemas["BalanceOut"]["properties"]["free"]
    assert (free["type"], free["pattern"]) == ("string", PLAIN_DECIMAL_PATTERN)

    auth = await gateway.user("decimals@example.com")
    for quantity_in in (" 1", "1_000", "+1", "0", "\u0661"):  # what pydantic alone would take, or zero
        order: dict[str, object] = {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "quantity": quantity_in,
            "price": "100",
        }
        r = await gateway.client.post("/api/orders", json=order, headers=auth)
        assert r.status_code == 422, (quantity_in, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
    order = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "1E-3", "price": 60000}
    r = await gateway.client.post("/api/orders", json=order, headers=auth)
    assert r.status_code == 202, r.text
    placed = r.json()
    assert placed["quantity"] == "0.001" and placed["price"] == "60000"
    plain = re.compile(PLAIN_DECIMAL_PATTERN)
    balances = (await gateway.client.get("/api/balances", headers=auth)).json()
    assert balances and all(plain.match(b[k]) for b in balances for k in ("free", "locked", "total"))


async def test_a_missing_body_names_no_field(sqlite_gateway: Api) -> None:
    """Not `field: "body"`: clients (and Schemathesis) read `field` as a property of the body."""
    r = await sqlite_gateway.client.post("/auth/login")
    assert r.status_code == 422
    (error,) = r.json()["errors"]
    assert "field" not in error and error["location"] == "body"


async def test_405_allows_every_method_of_the_path(sqlite_gateway: Api) -> None:
    """PUT and DELETE of one path are two routes; Starlette's 405 named only the first one's method."""
    doc = (await sqlite_gateway.client.get("/openapi.json")).json()
    # /api/orders/quote also fits /api/orders/{order_id}: the literal path is the documented resource.
    for path in ("/api/keys/binance-testnet", "/api/orders/{order_id}", "/api/orders/quote"):
        documented = {m.upper() for m in doc["paths"][path]}
        r = await sqlite_gateway.client.request("PATCH", path.replace("{order_id}", "abc"))
        assert r.status_code == 405
        assert r.headers["content-type"].startswith(PROBLEM)
        assert documented == {m.strip() for m in r.headers["allow"].split(",")}, (path, r.headers["allow"])


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name):
                self.urls.append(str(values[name]))
        self._in_script = tag == "script" and not values.get("src")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


async def test_docs_reference_only_local_assets_under_the_strict_csp(sqlite_gateway: Api) -> None:
    r = await sqlite_gateway.client.get("/docs")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert r.headers["content-security-policy"] == SECURITY_HEADERS["Content-Security-Policy"]
    refs = _References()
    refs.feed(r.text)
    assert refs.inline_scripts == 0  # script-src 'self' would block it
    assert any(u.endswith("swagger-ui-bundle.js") for u in refs.urls), refs.urls
    assert any(u.endswith("swagger-ui.css") for u in refs.urls), refs.urls
    for url in refs.urls:
        assert url.startswith("/") and not url.startswith("//"), url  # on this server, no CDN
        asset = await sqlite_gateway.client.get(url)
        assert asset.status_code == 200, url
        assert asset.content, url
    assert (await sqlite_gateway.client.get("/docs/assets/../../pyproject.toml")).status_code == 404
    assert (await sqlite_gateway.client.get("/redoc")).status_code == 404  # it would need a CDN


async def test_exchange_keys_with_control_characters_are_422_not_500(gateway: Api) -> None:
    """Found by Schemathesis: `^\\S+$` let ESC through to the exchange client's HTTP header, which raised."""
    auth = await gateway.user("keys@example.com")
    keys = {"api_key": "abcd\x1befgh", "api_secret": "0123456789"}
    r = await gateway.client.put("/api/keys/binance-testnet", json=keys, headers=auth)
    assert r.status_code == 422, r.text
    assert [e["field"] for e in r.json()["errors"]] == ["api_key"]
    body = {
        "email": "keys2@example.com",
        "password": "correct horse battery",
        "binance_api_key": "k\x00",
        "binance_api_secret": "s",
    }
    assert (await gateway.client.post("/auth/register", json=body)).status_code == 422


async def test_an_ip_allowlist_takes_what_its_schema_says(gateway: Api) -> None:
    """Found by Schemathesis: `ip_allowlist` items were any string up to 64 characters, so a client (or a
    fuzzer) could send `"000"` by the document and get a 422. Now the items are IPv4/IPv6 addresses or CIDR
    networks by format and pattern, and exactly those are taken."""
    doc = (await gateway.client.get("/openapi.json")).json()
    items = doc["components"]["schemas"]["ApiKeyIn"]["properties"]["ip_allowlist"]["items"]["anyOf"]
    assert {"type": "string", "format": "ipv4"} in items and {"type": "string", "format": "ipv6"} in items
    patterns = [re.compile(b["pattern"]) for b in items if "pattern" in b]
    networks = ["10.0.0.0/8", "203.0.113.7/32", "2001:db8::/32", "::/0", "1:2:3:4:5:6:7:8/64"]
    assert all(any(p.match(n) for p in patterns) for n in networks)
    auth = await gateway.user("allowlist@example.com")
    body = {"scopes": ["read"], "ip_allowlist": ["203.0.113.7", "::1", *networks]}
    r = await gateway.client.post("/api/api-keys", json=body, headers=auth)
    assert r.status_code == 201, r.text
    for bad in ("000", "01.2.3.4/8", "1.2.3.4/33", ":::/5", "fe80::1%eth0", "example.com"):
        assert not any(p.match(bad) for p in patterns), bad
        r = await gateway.client.post("/api/api-keys", json={"ip_allowlist": [bad]}, headers=auth)
        assert r.status_code == 422, (bad, r.text)
        assert r.headers["content-type"].startswith(PROBLEM)
