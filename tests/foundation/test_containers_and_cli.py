"""The compose file validates; the command line works as a new user would use it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.eventually import eventually_sync

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "tradebridge.cli"]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "JWT_", "KEY_", "ADMIN_"))}
    env.update(extra)
    return env


def test_compose_file_validates(tmp_path: Path) -> None:
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed (scripts/install --dev installs it)")
        pytest.skip("docker-compose is not installed")
    shutil.copy(ROOT / "docker-compose.yml", tmp_path / "docker-compose.yml")
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    result = subprocess.run([exe, "config", "-q"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    services = subprocess.run([exe, "config", "--services"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert set(services.stdout.split()) >= {"postgres", "redis", "gateway", "execution", "events", "pricefeed"}


def test_help_lists_every_command() -> None:
    out = subprocess.run([*CLI, "--help"], capture_output=True, text=True, timeout=60, env=_clean_env(), cwd=ROOT)
    assert out.returncode == 0, out.stderr
    for cmd in ("up", "gateway", "execution", "events", "pricefeed", "migrate", "admin", "keys"):
        assert cmd in out.stdout


def test_production_without_secrets_stops_with_one_clear_line(tmp_path: Path) -> None:
    env = _clean_env(TRADEBRIDGE_ENV="production", DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/x.db")
    out = subprocess.run([*CLI, "gateway"], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert out.returncode == 2
    assert "JWT_SECRET and KEY_ENCRYPTION_KEYS must be set" in out.stderr
    assert "Traceback" not in out.stderr


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_up_starts_the_embedded_system(tmp_path: Path) -> None:
    """`tradebridge up` in an empty folder: SQLite, generated secrets, migrations, trading works."""
    port = _free_port()
    env = _clean_env(PAPER_MARKET_MAKER="on", ADMIN_EMAIL="admin@example.com", ADMIN_PASSWORD="admin-password-1")
    proc = subprocess.Popen([*CLI, "up", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        eventually_sync(lambda: _ready(f"{base}/readyz"), timeout=60)
        assert (tmp_path / "tradebridge.db").exists() and (tmp_path / ".tradebridge-secrets.json").exists()
        with httpx.Client(base_url=base, timeout=10) as c:
            assert c.post("/auth/register", json={"email": "u@example.com", "password": "password-123"}).status_code == 201
            token = c.post("/auth/login", json={"email": "u@example.com", "password": "password-123"}).json()["access_token"]
            h = {"Authorization": f"Bearer {token}"}
            eventually_sync(lambda: c.get("/api/markets/BTCUSDT/depth").json()["asks"], timeout=30)
            r = c.post("/api/orders", json={"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"}, headers=h)
            assert r.status_code == 202, r.text
            oid = r.json()["order_id"]
            eventually_sync(lambda: c.get(f"/api/orders/{oid}", headers=h).json()["status"] == "FILLED", timeout=30)
            positions = c.get("/api/positions", headers=h).json()
            assert positions[0]["symbol"] == "BTCUSDT" and positions[0]["quantity"] == "0.001"
            admin = c.post("/auth/login", json={"email": "admin@example.com", "password": "admin-password-1"})
            assert admin.status_code == 200
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            output, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            output, _ = proc.communicate()
    assert "Traceback" not in output, output[-3000:]
