"""Accounts and auth on both databases: PostgreSQL with Redis, and the embedded SQLite with in-memory limits.

On SQLite a request's first statement takes the single write lock (BEGIN IMMEDIATE): anything a request
records must go into that one transaction, or it waits for the request's own lock (30 s, then 500)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import jwt
import pytest
from sqlalchemy import select
from sqlmodel import col

from shared.models import AuditLog, RefreshToken
from shared.settings import Settings
from tests.support.api import Api, make_settings, running_api

pytestmark = pytest.mark.asyncio

PW = "correct horse battery"


@pytest.fixture(params=["postgresql", "sqlite"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """PostgreSQL and Redis, or the embedded default's SQLite file and in-memory limits (the Redis and
    PostgreSQL fixtures are only set up for the first)."""
    if request.param == "postgresql":
        return make_settings(
            request.getfixturevalue("pg_url"),
            redis_url=request.getfixturevalue("redis_url"),
            redis_prefix=request.getfixturevalue("redis_prefix"),
        )
    return make_settings(f"sqlite+aiosqlite:///{tmp_path / 'auth.db'}")


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(settings, migrate=settings.is_sqlite) as api:
        yield api


def client_at(api: Api, address: str) -> httpx.AsyncClient:
    """Another client of the same app, connecting from ``address``."""
    transport = httpx.ASGITransport(app=api.app, client=(address, 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


async def audit_actions(api: Api) -> list[AuditLog]:
    async with api.parts.sessions() as s:
        return list((await s.execute(select(AuditLog).order_by(col(AuditLog.id)))).scalars())


def _problem(r, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["title"] and body["type"] and "detail" in body
    return body


async def test_register_login_me_refresh_logout(api: Api) -> None:
    created = await api.register("Alice@Example.COM ")
    assert created["email"] == "alice@example.com"
    assert created["role"] == "user" and created["mode"] == "paper" and created["id"]

    tokens = await api.login("ALICE@example.com")
    assert tokens["token_type"] == "bearer" and tokens["expires_in"] > 0
    auth = {"Authorization": f"Bearer {tokens['access_token']}"}
    me = (await api.client.get("/api/me", headers=auth)).json()
    assert me == {**created, "has_testnet_keys": False}

    r = await api.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    assert r.status_code == 200, r.text
    pair = r.json()
    assert pair["refresh_token"] != tokens["refresh_token"]
    assert (
        await api.client.get("/api/me", headers={"Authorization": f"Bearer {pair['access_token']}"})
    ).status_code == 200

    r = await api.client.post("/auth/logout", json={"refresh_token": pair["refresh_token"]})
    assert r.status_code == 204
    _problem(await api.client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}), 401)


async def test_duplicate_email_is_409_case_insensitively(api: Api) -> None:
    await api.register("bob@example.com")
    r = await api.client.post("/auth/register", json={"email": "BOB@example.com", "password": PW})
    _problem(r, 409)


async def test_same_401_for_unknown_email_and_wrong_password(api: Api) -> None:
    await api.register("carol@example.com")
    a = _problem(
        await api.client.post("/auth/login", json={"email": "nobody@example.com", "password": PW}), 401
    )
    b = _problem(
        await api.client.post("/auth/login", json={"email": "carol@example.com", "password": "wrong-pass"}),
        401,
    )
    assert a["detail"] == b["detail"] and a["title"] == b["title"]


async def test_password_policy_and_validation_errors(api: Api) -> None:
    body = _problem(
        await api.client.post("/auth/register", json={"email": "d@example.com", "password": "short"}), 422
    )
    assert any(e["field"] == "password" for e in body["errors"])
    body = _problem(
        await api.client.post("/auth/register", json={"email": "not-an-email", "password": PW}), 422
    )
    assert any(e["field"] == "email" for e in body["errors"])
    _problem(
        await api.client.post(
            "/auth/register", content=b"{not json", headers={"content-type": "application/json"}
        ),
        400,
    )
    body = _problem(await api.client.post("/auth/register", json={"email": 5, "password": ["x"]}), 422)
    assert {e["field"] for e in body["errors"]} >= {"email", "password"}
    _problem(
        await api.client.post("/auth/register", json={"email": "e@example.com", "password": "x" * 2000}), 422
    )
    _problem(
        await api.client.post(
            "/auth/register", content=b"x" * 200_000, headers={"content-type": "application/json"}
        ),
        413,
    )
    _problem(await api.client.post("/auth/login", json=[1, 2, 3]), 422)
    _problem(await api.client.get("/no/such/route"), 404)
    _problem(await api.client.delete("/auth/login"), 405)


async def test_refresh_reuse_revokes_the_whole_family(api: Api) -> None:
    await api.register("eve@example.com")
    first = await api.login("eve@example.com")
    second = (await api.client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]})).json()
    # The rotated token comes back: someone stole it. The family dies, including the newest token.
    _problem(await api.client.post("/auth/refresh", json={"refresh_token": first["refresh_token"]}), 401)
    _problem(await api.client.post("/auth/refresh", json={"refresh_token": second["refresh_token"]}), 401)
    # Another login (another family) is unaffected.
    other = await api.login("eve@example.com")
    assert (
        await api.client.post("/auth/refresh", json={"refresh_token": other["refresh_token"]})
    ).status_code == 200
    async with api.parts.sessions() as s:
        actions = [a.action for a in (await s.execute(select(AuditLog))).scalars()]
        revoked = (
            (await s.execute(select(RefreshToken).where(col(RefreshToken.revoked_at).is_not(None))))
            .scalars()
            .all()
        )
    assert "auth.refresh_reuse" in actions
    assert len(revoked) == 2


def _b64(obj: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


async def test_token_attacks_are_401(api: Api) -> None:
    created = await api.register("mallory@example.com")
    good = (await api.login("mallory@example.com"))["access_token"]
    claims = jwt.decode(good, options={"verify_signature": False})
    secret = api.parts.settings.jwt_secret.get_secret_value()
    now = datetime.now(UTC)

    header, payload, sig = good.split(".")
    tampered_payload = _b64({**claims, "role": "admin"})
    attacks = {
        "tampered signature": f"{header}.{payload}.{sig[:-4]}AAAA",
        "tampered payload": f"{header}.{tampered_payload}.{sig}",
        "alg none": f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}.",
        "wrong key": jwt.encode(claims, "another-secret-" + "y" * 32, algorithm="HS256"),
        "other algorithm": jwt.encode(claims, secret, algorithm="HS512"),
        "expired": jwt.encode(
            {
                **claims,
                "iat": int((now - timedelta(hours=2)).timestamp()),
                "exp": int((now - timedelta(hours=1)).timestamp()),
            },
            secret,
            algorithm="HS256",
        ),
        "wrong audience": jwt.encode({**claims, "aud": "someone-else"}, secret, algorithm="HS256"),
        "wrong issuer": jwt.encode({**claims, "iss": "evil"}, secret, algorithm="HS256"),
        "no sub": jwt.encode({k: v for k, v in claims.items() if k != "sub"}, secret, algorithm="HS256"),
        "garbage": "not.a.jwt",
    }
    for name, token in attacks.items():
        r = await api.client.get("/api/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, f"{name}: {r.status_code} {r.text}"
        assert token not in r.text
    _problem(await api.client.get("/api/me"), 401)
    _problem(await api.client.get("/api/me", headers={"Authorization": "Basic abc"}), 401)
    assert created["id"] == claims["sub"]


async def test_login_throttling_with_retry_after(api: Api) -> None:
    await api.register("frank@example.com")
    for _ in range(5):
        _problem(
            await api.client.post(
                "/auth/login", json={"email": "frank@example.com", "password": "wrong-pass"}
            ),
            401,
        )
    r = await api.client.post("/auth/login", json={"email": "frank@example.com", "password": PW})
    body = _problem(r, 429)
    assert int(r.headers["Retry-After"]) >= 1
    assert "detail" in body
    # Another account from the same address is still allowed (the per-address limit is higher).
    await api.register("grace@example.com")
    assert (
        await api.client.post("/auth/login", json={"email": "grace@example.com", "password": PW})
    ).status_code == 200


async def test_failed_logins_and_mode_switches_are_audited(api: Api) -> None:
    auth = await api.user("heidi@example.com")
    await api.client.post("/auth/login", json={"email": "heidi@example.com", "password": "wrong-pass"})
    _problem(await api.client.put("/api/me/mode", json={"mode": "testnet"}, headers=auth), 409)
    r = await api.client.put("/api/me/mode", json={"mode": "PAPER"}, headers=auth)
    assert r.status_code == 200 and r.json()["mode"] == "paper"
    _problem(await api.client.put("/api/me/mode", json={"mode": "live"}, headers=auth), 422)
    async with api.parts.sessions() as s:
        rows = (await s.execute(select(AuditLog).order_by(col(AuditLog.id)))).scalars().all()
    actions = [r.action for r in rows]
    assert "auth.login" in actions and "auth.login_failed" in actions
    failed = next(r for r in rows if r.action == "auth.login_failed")
    assert failed.ip == "203.0.113.7" and failed.ts is not None


async def test_admin_endpoints_forbid_users(api: Api) -> None:
    auth = await api.user("ivan@example.com")
    _problem(await api.client.get("/api/admin/users", headers=auth), 403)


async def test_ops_endpoints(api: Api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    r = await api.client.get("/readyz")
    assert r.status_code == 200 and r.json()["checks"] == {"database": "ok", "bus": "ok"}
    r = await api.client.get("/metrics")
    assert r.status_code == 200 and "tradebridge_http_requests_total" in r.text
    r = await api.client.get("/healthz")
    assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-request-id"]


async def test_failed_logins_answer_401_and_are_audited(api: Api) -> None:
    """Known and unknown email alike: a prompt 401, and the audit row committed with the refusal (on SQLite it
    used to be written in a second transaction that waited for the request's own lock: 30 s, then 500)."""
    user = await api.register("judy@example.com")
    for email in ("judy@example.com", "nobody@example.com"):
        _problem(await api.client.post("/auth/login", json={"email": email, "password": "wrong-pass"}), 401)
    failed = [
        (a.actor_id, a.details["email"], a.ip)
        for a in await audit_actions(api)
        if a.action == "auth.login_failed"
    ]
    assert failed == [
        (user["id"], "judy@example.com", "203.0.113.7"),
        (None, "nobody@example.com", "203.0.113.7"),
    ]
    # The refusals left nothing else behind: no tokens, and the right password still works.
    async with api.parts.sessions() as s:
        assert (await s.execute(select(RefreshToken))).scalars().all() == []
    await api.login("judy@example.com")


async def test_logout_then_refresh_is_401_and_logout_is_idempotent(api: Api) -> None:
    await api.register("ken@example.com")
    tokens = await api.login("ken@example.com")
    assert (
        await api.client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    ).status_code == 204
    _problem(await api.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)
    assert (
        await api.client.post("/auth/logout", json={"refresh_token": tokens["refresh_token"]})
    ).status_code == 204
    assert (await api.client.post("/auth/logout", json={"refresh_token": "never-issued"})).status_code == 204
    actions = [a.action for a in await audit_actions(api)]
    assert (
        actions.count("auth.logout") == 2 and "auth.refresh_reuse" not in actions
    )  # logged out is not reuse
    await api.login("ken@example.com")


async def test_concurrent_use_of_one_refresh_token_revokes_the_family(api: Api) -> None:
    """Two uses of one token at once: exactly one rotates it; the other is reuse, and its revocation (committed
    with its 401) takes the winner's new token too."""
    await api.register("leo@example.com")
    tokens = await api.login("leo@example.com")
    answers = await asyncio.gather(
        *(api.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}) for _ in range(2))
    )
    assert sorted(r.status_code for r in answers) == [200, 401], [r.text for r in answers]
    winner = next(r.json() for r in answers if r.status_code == 200)
    _problem(await api.client.post("/auth/refresh", json={"refresh_token": winner["refresh_token"]}), 401)
    assert [a.action for a in await audit_actions(api)].count("auth.refresh_reuse") == 1


async def test_a_guesser_elsewhere_cannot_lock_the_owner_out(api: Api) -> None:
    """Failures count per account *and* address: the guessing address gets 429 with Retry-After, even with the
    right password; the owner, from another address, still logs in."""
    await api.register("mia@example.com")
    limit = int(api.parts.settings.login_limit_per_account_address.split("/")[0])
    async with client_at(api, "198.51.100.66") as attacker, client_at(api, "192.0.2.10") as owner:
        for _ in range(limit):
            _problem(
                await attacker.post(
                    "/auth/login", json={"email": "mia@example.com", "password": "wrong-pass"}
                ),
                401,
            )
        for password in ("wrong-pass", PW):
            r = await attacker.post("/auth/login", json={"email": "mia@example.com", "password": password})
            _problem(r, 429)
            assert 1 <= int(r.headers["Retry-After"]) <= 60
        r = await owner.post("/auth/login", json={"email": "mia@example.com", "password": PW})
        assert r.status_code == 200, r.text
        # The attacker's address may still log in to other accounts (its own limit is not spent).
        await api.register("nick@example.com")
        assert (
            await attacker.post("/auth/login", json={"email": "nick@example.com", "password": PW})
        ).status_code == 200
