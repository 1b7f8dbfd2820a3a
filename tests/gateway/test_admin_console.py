"""The admin console's API through create_app on PostgreSQL and SQLite: the user list (search, filters, paging,
last login), lock and unlock (and what a lock refuses: login, refresh, bearer tokens, Binance-compatible API
keys), the rule that keeps one admin able to act, the audit log's filters, and 403 for everyone else."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from shared.db import unit_of_work
from shared.models import User
from tests.support.api import Api, running_api_on

ADMIN = ("admin@example.com", "admin password 123")
PW = "correct horse battery"


@pytest.fixture(params=["postgresql", "sqlite"])
async def api(
    request: pytest.FixtureRequest, pg_url: str, tmp_path: Path, redis_url: str, redis_prefix: str
) -> AsyncIterator[Api]:
    async with running_api_on(
        request.param,
        pg_url=pg_url,
        sqlite_dir=tmp_path,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        admin_email=ADMIN[0],
        admin_password=ADMIN[1],
    ) as api:
        yield api


def _problem(r: httpx.Response, status: int) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = r.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


async def _bearer(api: Api, email: str, password: str = PW) -> dict[str, str]:
    return {"Authorization": f"Bearer {(await api.login(email, password))['access_token']}"}


async def _signed_account(api: Api, key: dict[str, Any]) -> httpx.Response:
    query = f"timestamp={int(api.parts.clock.now().timestamp() * 1000)}"
    sig = hmac.new(key["secret"].encode(), query.encode(), hashlib.sha256).hexdigest()
    return await api.client.get(
        f"/binance/api/v3/account?{query}&signature={sig}", headers={"X-MBX-APIKEY": key["api_key"]}
    )


async def _audit(api: Api, admin: dict[str, str], **params: Any) -> tuple[list[dict[str, Any]], int]:
    r = await api.client.get("/api/admin/audit", params=params, headers=admin)
    assert r.status_code == 200, r.text
    return r.json(), int(r.headers["x-total-count"])


async def test_a_locked_user_cannot_log_in_refresh_or_use_tokens_and_api_keys(api: Api) -> None:
    admin = await _bearer(api, *ADMIN)
    user_id = (await api.register("lockme@example.com"))["id"]
    tokens = await api.login("lockme@example.com")
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    r = await api.client.post("/api/api-keys", json={"label": "bot"}, headers=bearer)
    assert r.status_code == 201, r.text
    key = r.json()
    assert (await _signed_account(api, key)).status_code == 200

    r = await api.client.post(f"/api/admin/users/{user_id}/lock", headers=admin)
    assert r.status_code == 200, r.text
    locked = r.json()
    assert (locked["status"], locked["is_active"]) == ("locked", False) and locked["locked_at"]

    _problem(await api.client.post("/auth/login", json={"email": "lockme@example.com", "password": PW}), 401)
    _problem(await api.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)
    _problem(await api.client.get("/api/me", headers=bearer), 401)
    _problem(await api.client.get("/api/orders", headers=bearer), 401)
    refused = await _signed_account(api, key)
    assert refused.status_code == 401 and refused.json()["code"] == -2015, refused.text

    r = await api.client.post(f"/api/admin/users/{user_id}/unlock", headers=admin)
    assert r.status_code == 200 and r.json()["status"] == "active" and r.json()["locked_at"] is None
    # The lock revoked the sessions it found: the old refresh token stays dead; a new login works.
    _problem(await api.client.post("/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)
    again = await _bearer(api, "lockme@example.com")
    assert (await api.client.get("/api/me", headers=again)).status_code == 200
    assert (await _signed_account(api, key)).status_code == 200

    entries, total = await _audit(api, admin, action="admin")
    mine = [(e["action"], e["target"], e["actor_email"]) for e in entries if e["target"] == user_id]
    assert mine == [("admin.user_unlock", user_id, ADMIN[0]), ("admin.user_lock", user_id, ADMIN[0])]
    lock_entry = next(e for e in entries if e["action"] == "admin.user_lock")
    assert lock_entry["details"]["refresh_tokens_revoked"] == 1 and total >= 2


async def test_locking_again_changes_nothing_and_unknown_users_are_404(api: Api) -> None:
    admin = await _bearer(api, *ADMIN)
    user_id = (await api.register("twice@example.com"))["id"]
    first = (await api.client.post(f"/api/admin/users/{user_id}/lock", headers=admin)).json()
    second = await api.client.post(f"/api/admin/users/{user_id}/lock", headers=admin)
    assert second.status_code == 200 and second.json()["locked_at"] == first["locked_at"]
    _, locks = await _audit(api, admin, action="admin.user_lock")
    assert locks == 1
    _problem(await api.client.post("/api/admin/users/nosuchuser/lock", headers=admin), 404)
    _problem(await api.client.post("/api/admin/users/nosuchuser/unlock", headers=admin), 404)
    _problem(await api.client.post("/api/admin/users/bad%20id/lock", headers=admin), 422)


async def _make_admin(api: Api, email: str) -> str:
    user_id: str = (await api.register(email))["id"]
    async with unit_of_work(api.parts.sessions) as s:
        await s.execute(update(User).where(User.id == user_id).values(role="admin"))  # type: ignore[arg-type]
    return user_id


async def test_admins_cannot_lock_themselves_or_each_other_out(api: Api) -> None:
    admin = await _bearer(api, *ADMIN)
    me = (await api.client.get("/api/me", headers=admin)).json()["id"]
    body = _problem(await api.client.post(f"/api/admin/users/{me}/lock", headers=admin), 409)
    assert "your own account" in body["detail"]

    # Two admins lock each other at the same moment: one wins, the other is refused; one admin stays.
    other_id = await _make_admin(api, "second-admin@example.com")
    other = await _bearer(api, "second-admin@example.com")
    answers = await asyncio.gather(
        api.client.post(f"/api/admin/users/{other_id}/lock", headers=admin),
        api.client.post(f"/api/admin/users/{me}/lock", headers=other),
    )
    statuses = sorted(r.status_code for r in answers)
    assert statuses[0] == 200 and statuses[1] in (401, 409), [r.text for r in answers]
    async with api.parts.read_sessions() as s:
        active = (
            await s.execute(
                User.__table__.select().where(User.role == "admin", User.is_active.is_(True))  # type: ignore[attr-defined]
            )
        ).all()
    assert len(active) == 1


async def test_user_list_searches_filters_pages_and_shows_last_login(api: Api) -> None:
    admin = await _bearer(api, *ADMIN)
    ids = [(await api.register(f"list-{i}@corp.example"))["id"] for i in range(3)]
    await api.register("other%_@example.com")
    await api.login("list-1@corp.example")
    await api.client.post(f"/api/admin/users/{ids[2]}/lock", headers=admin)

    async def users(**params: Any) -> tuple[list[dict[str, Any]], int]:
        r = await api.client.get("/api/admin/users", params=params, headers=admin)
        assert r.status_code == 200, r.text
        return r.json(), int(r.headers["x-total-count"])

    found, total = await users(q="CORP.example")
    assert [u["id"] for u in found] == ids and total == 3
    by_id = {u["id"]: u for u in found}
    assert by_id[ids[1]]["last_login_at"] and by_id[ids[0]]["last_login_at"] is None
    assert by_id[ids[2]]["status"] == "locked" and by_id[ids[2]]["locked_at"]
    assert (await users(q="%_"))[1] == 1  # LIKE wildcards are searched for, not matched as wildcards
    assert [u["id"] for u in (await users(q=ids[1]))[0]] == [ids[1]]
    assert [u["id"] for u in (await users(q="corp", status="locked"))[0]] == [ids[2]]
    assert [u["email"] for u in (await users(role="admin"))[0]] == [ADMIN[0]]
    assert (await users(q="corp", mode="testnet"))[1] == 0
    page, total = await users(q="corp", limit=2, offset=2)
    assert [u["id"] for u in page] == ids[2:] and total == 3
    _problem(await api.client.get("/api/admin/users", params={"status": "frozen"}, headers=admin), 422)


async def test_audit_log_filters_by_actor_action_and_time_and_pages(api: Api) -> None:
    admin = await _bearer(api, *ADMIN)
    eve = (await api.register("eve@example.com"))["id"]
    await api.login("eve@example.com")
    _problem(
        await api.client.post("/auth/login", json={"email": "eve@example.com", "password": "wrong!!"}), 401
    )
    await api.login("eve@example.com")

    by_email, total = await _audit(api, admin, actor="EVE@example.com")
    assert [e["action"] for e in by_email] == [
        "auth.login",
        "auth.login_failed",
        "auth.login",
        "user.register",
    ]
    assert total == 4 and {e["actor_id"] for e in by_email} == {eve}
    assert (await _audit(api, admin, actor=eve))[1] == 4
    logins, total = await _audit(api, admin, actor=eve, action="auth")
    assert total == 3 and all(e["action"].startswith("auth.") for e in logins)
    assert (await _audit(api, admin, actor=eve, action="auth.login"))[1] == 2
    assert (await _audit(api, admin, actor=eve, action="aut"))[1] == 0  # a dotted prefix, not any prefix

    newest, total = await _audit(api, admin, actor=eve, limit=1)
    second, _ = await _audit(api, admin, actor=eve, limit=1, offset=1)
    assert total == 4 and newest[0]["id"] != second[0]["id"] and newest[0]["ts"] >= second[0]["ts"]

    middle = by_email[1]["ts"]  # the failed login
    before, _ = await _audit(api, admin, actor=eve, until=middle)
    since, _ = await _audit(api, admin, actor=eve, since=middle)
    assert {e["id"] for e in before} | {e["id"] for e in since} == {e["id"] for e in by_email}
    assert not {e["id"] for e in before} & {e["id"] for e in since}
    future = (api.parts.clock.now() + timedelta(days=1)).isoformat()
    assert (await _audit(api, admin, since=future))[1] == 0

    bad = _problem(
        await api.client.get("/api/admin/audit", params={"since": future, "until": middle}, headers=admin),
        422,
    )
    assert bad["errors"][0]["field"] == "since"
    _problem(
        await api.client.get("/api/admin/audit", params={"since": "2026-01-01T00:00:00"}, headers=admin), 422
    )


async def test_admin_console_is_for_admins_only(api: Api) -> None:
    user_id = (await api.register("mallory@example.com"))["id"]
    auth = await _bearer(api, "mallory@example.com")
    for method, path in [
        ("GET", "/api/admin/users"),
        ("GET", "/api/admin/audit"),
        ("POST", f"/api/admin/users/{user_id}/lock"),
        ("POST", f"/api/admin/users/{user_id}/unlock"),
    ]:
        _problem(await api.client.request(method, path, headers=auth), 403)
        _problem(await api.client.request(method, path), 401)
    assert (await api.client.get("/api/me", headers=auth)).json()["id"] == user_id


async def test_openapi_declares_the_admin_console(api: Api) -> None:
    doc = (await api.client.get("/openapi.json")).json()
    paths = doc["paths"]
    lock = paths["/api/admin/users/{user_id}/lock"]["post"]
    assert {"401", "403", "404", "409"} <= set(lock["responses"])
    assert lock["responses"]["409"]["content"]["application/problem+json"]
    assert lock["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("AdminUserOut")
    for path in ("/api/admin/users", "/api/admin/audit"):
        ok = paths[path]["get"]["responses"]["200"]
        assert "X-Total-Count" in ok["headers"] and "403" in paths[path]["get"]["responses"]
    params = {p["name"] for p in paths["/api/admin/audit"]["get"]["parameters"]}
    assert {"actor", "action", "since", "until", "limit", "offset"} <= params
    assert {"locked_at", "last_login_at", "status"} <= set(
        doc["components"]["schemas"]["AdminUserOut"]["properties"]
    )
    recon = "/api/admin/reconciliation"
    ok = {
        "list": paths[recon]["get"]["responses"]["200"]["content"]["application/json"]["schema"]["items"],
        "show": paths[recon + "/{report_id}"]["get"]["responses"]["200"]["content"]["application/json"][
            "schema"
        ],
        "run": paths[recon]["post"]["responses"]["202"]["content"]["application/json"]["schema"],
        "repair": paths[recon + "/{report_id}/repair"]["post"]["responses"]["200"]["content"][
            "application/json"
        ]["schema"],
    }
    assert {k: v["$ref"].rsplit("/", 1)[1] for k, v in ok.items()} == {
        "list": "ReportOut",
        "show": "ReportDetailOut",
        "run": "ReportStarted",
        "repair": "RepairOut",
    }
    csv = paths[recon + "/{report_id}"]["get"]["responses"]["200"]["content"]["text/csv"]
    assert csv["schema"]["type"] == "string"
