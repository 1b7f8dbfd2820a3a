"""Exchange keys: checked against the exchange (the Binance double), encrypted at rest, bound to their owner."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
from sqlalchemy import select, update
from sqlmodel import col

from shared.credentials import load_plain_keys, rotate_all
from shared.models import AuditLog, ExchangeCredential, User
from shared.security.crypto import DecryptionError, KeyRing, generate_key
from tests.support.api import Api, make_settings, running_api


@pytest.fixture
async def api(pg_url: str, redis_url: str, redis_prefix: str, binance_double) -> AsyncIterator[Api]:
    settings = make_settings(
        pg_url, redis_url=redis_url, redis_prefix=redis_prefix, binance_testnet_url=binance_double.url
    )
    async with running_api(settings) as api:
        yield api


async def test_keys_are_checked_encrypted_and_hinted(api: Api, binance_account, pg_url: str) -> None:
    auth = await api.user("keys@example.com")
    r = await api.client.put(
        "/api/keys/binance-testnet",
        json={"api_key": binance_account.api_key, "api_secret": binance_account.api_secret},
        headers=auth,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (
        body["exchange"] == "binance-testnet"
        and body["api_key_hint"] == "****" + binance_account.api_key[-4:]
    )
    assert binance_account.api_key not in r.text and binance_account.api_secret not in r.text
    listed = (await api.client.get("/api/keys", headers=auth)).json()
    assert [k["api_key_hint"] for k in listed] == [body["api_key_hint"]]
    assert (await api.client.get("/api/me", headers=auth)).json()["has_testnet_keys"] is True
    assert (await api.client.put("/api/me/mode", json={"mode": "testnet"}, headers=auth)).json()[
        "mode"
    ] == "testnet"

    # Search the database's raw bytes: no plaintext key or secret anywhere.
    conn = await asyncpg.connect(pg_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        for table in ("exchange_credentials", "audit_log", "users", "outbox"):
            dump = str(await conn.fetch(f"SELECT * FROM {table}"))
            assert binance_account.api_key not in dump and binance_account.api_secret not in dump, table
    finally:
        await conn.close()

    r = await api.client.delete("/api/keys/binance-testnet", headers=auth)
    assert r.status_code == 204
    me = (await api.client.get("/api/me", headers=auth)).json()
    assert me["has_testnet_keys"] is False and me["mode"] == "paper"
    assert (await api.client.delete("/api/keys/binance-testnet", headers=auth)).status_code == 404
    async with api.parts.sessions() as s:
        actions = [a.action for a in (await s.execute(select(AuditLog))).scalars()]
    assert "keys.set" in actions and "keys.delete" in actions


async def test_wrong_keys_are_refused_clearly(api: Api, binance_account) -> None:
    auth = await api.user("wrong@example.com")
    r = await api.client.put(
        "/api/keys/binance-testnet",
        json={"api_key": binance_account.api_key, "api_secret": "x" * 64},
        headers=auth,
    )
    assert r.status_code == 422 and "rejected" in r.json()["detail"]
    r = await api.client.put(
        "/api/keys/binance-testnet", json={"api_key": "k" * 64, "api_secret": "s" * 64}, headers=auth
    )
    assert r.status_code == 422
    assert (await api.client.get("/api/keys", headers=auth)).json() == []


async def test_register_with_keys(api: Api, binance_account) -> None:
    r = await api.client.post(
        "/auth/register",
        json={
            "email": "withkeys@example.com",
            "password": "correct horse battery",
            "binance_api_key": binance_account.api_key,
            "binance_api_secret": binance_account.api_secret,
        },
    )
    assert r.status_code == 201, r.text
    tokens = (
        await api.client.post(
            "/auth/login", json={"email": "withkeys@example.com", "password": "correct horse battery"}
        )
    ).json()
    me = (
        await api.client.get("/api/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    ).json()
    assert me["has_testnet_keys"] is True


async def test_ciphertext_copied_to_another_user_fails(api: Api, binance_account) -> None:
    alice = await api.user("alice-k@example.com")
    await api.user("mallory-k@example.com")
    await api.client.put(
        "/api/keys/binance-testnet",
        json={"api_key": binance_account.api_key, "api_secret": binance_account.api_secret},
        headers=alice,
    )
    rt = api.parts
    async with rt.sessions() as s, s.begin():
        row = (await s.execute(select(ExchangeCredential))).scalar_one()
        mallory = (
            await s.execute(select(User).where(col(User.email) == "mallory-k@example.com"))
        ).scalar_one()
        await s.execute(
            update(ExchangeCredential).where(ExchangeCredential.id == row.id).values(user_id=mallory.id)
        )
    async with rt.sessions() as s:
        with pytest.raises(DecryptionError):
            await load_plain_keys(s, rt.keyring, mallory.id)


async def test_users_cannot_touch_each_others_keys(api: Api, binance_account) -> None:
    alice = await api.user("alice-o@example.com")
    bob = await api.user("bob-o@example.com")
    await api.client.put(
        "/api/keys/binance-testnet",
        json={"api_key": binance_account.api_key, "api_secret": binance_account.api_secret},
        headers=alice,
    )
    assert (await api.client.get("/api/keys", headers=bob)).json() == []
    assert (await api.client.delete("/api/keys/binance-testnet", headers=bob)).status_code == 404
    assert len((await api.client.get("/api/keys", headers=alice)).json()) == 1
    assert (await api.client.get("/api/me", headers=bob)).json()["email"] == "bob-o@example.com"


async def test_rotation_reencrypts_every_row(api: Api, binance_account) -> None:
    auth = await api.user("rot@example.com")
    await api.client.put(
        "/api/keys/binance-testnet",
        json={"api_key": binance_account.api_key, "api_secret": binance_account.api_secret},
        headers=auth,
    )
    rt = api.parts
    old_setting = rt.settings.key_encryption_keys.get_secret_value()  # make_settings sets it
    new_key = generate_key()
    async with rt.sessions() as s, s.begin():
        rotated, total = await rotate_all(s, KeyRing.from_setting(f"{new_key},{old_setting}"))
    assert (rotated, total) == (1, 1)
    async with rt.sessions() as s:
        row = (await s.execute(select(ExchangeCredential))).scalar_one()
        keys = await load_plain_keys(s, KeyRing.from_setting(new_key), row.user_id)
        assert keys is not None and keys.api_key == binance_account.api_key
        assert binance_account.api_key not in repr(keys) and binance_account.api_secret not in repr(keys)
        with pytest.raises(DecryptionError):
            await load_plain_keys(s, KeyRing.from_setting(old_setting), row.user_id)
