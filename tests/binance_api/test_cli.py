"""`tradebridge apikeys create|list|revoke --email`, run as a process on the same database as the app: the key
it prints signs requests to the Binance-compatible API until it is revoked; SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.security.crypto import generate_key
from tests.support.api import make_settings, running_api

CLI = [sys.executable, "-m", "tradebridge.cli", "apikeys"]


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path, pg_url: str) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}" if request.param == "sqlite" else pg_url


async def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(
        subprocess.run, [*CLI, *args], env=env, capture_output=True, text=True, timeout=60
    )


async def test_cli_creates_lists_and_revokes_keys(database_url: str, tmp_path: Path) -> None:
    kek = generate_key()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "KEY_", "JWT_"))}
    env.update(DATABASE_URL=database_url, KEY_ENCRYPTION_KEYS=kek, JWT_SECRET="j" * 48)
    env.update(SECRETS_FILE=str(tmp_path / "secrets.json"))
    settings = make_settings(database_url, key_encryption_keys=kek)
    async with running_api(settings, migrate=True) as api:
        await api.register("cli@example.com")
        made = await _cli(env, "create", "--email", "cli@example.com", "--label", "bot", "--scope", "read")
        assert made.returncode == 0, made.stderr
        lines = dict(line.split(":", 1) for line in made.stdout.splitlines())
        key_id, api_key, secret = (lines[k].strip() for k in ("id", "api key", "secret"))

        listed = await _cli(env, "list", "--email", "cli@example.com")
        assert key_id in listed.stdout and secret not in listed.stdout + listed.stderr

        async def account() -> int:
            query = f"timestamp={int(time.time() * 1000)}"
            sig = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
            r = await api.client.get(
                f"/binance/api/v3/account?{query}&signature={sig}", headers={"X-MBX-APIKEY": api_key}
            )
            return r.status_code

        assert await account() == 200
        revoked = await _cli(env, "revoke", "--email", "cli@example.com", key_id)
        assert revoked.returncode == 0, revoked.stderr
        assert await account() == 401
        missing = await _cli(env, "list", "--email", "nobody@example.com")
        assert missing.returncode == 1 and "no account" in missing.stderr
