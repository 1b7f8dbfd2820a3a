"""The compose file validates; the command line works as a new user would use it."""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import httpx
import pytest

from shared.secrets import resolve_secrets
from shared.security.crypto import KeyRing
from shared.security.tokens import MIN_SECRET_BYTES
from shared.settings import Settings
from tests.support.eventually import eventually_sync

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "tradebridge.cli"]


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "JWT_", "KEY_", "ADMIN_"))
    }
    env.update(extra)
    return env


def _readme_compose_steps(readme: str) -> str:
    """The first bash block of the README's "Running with Docker Compose" section."""
    section = readme.split("\n## Running with Docker Compose\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S)
    assert block, "the compose section has no bash block"
    return block.group(1)


def test_readme_compose_steps_make_config_pass_on_a_fresh_clone(tmp_path: Path) -> None:
    """HEAD as a new user gets it (no .env): the compose file does not validate until the README's steps
    run, then it does, with secrets that production accepts."""
    exe = shutil.which("docker-compose")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is not installed (scripts/install --dev installs it)")
        pytest.skip("docker-compose is not installed")
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    clone = tmp_path / "clone"
    clone.mkdir()
    archive = subprocess.run(
        ["git", "archive", "--format=tar", "HEAD"], cwd=ROOT, capture_output=True, check=True
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(clone, filter="data")
    # No Docker engine or compose plugin here: the README's `docker compose` runs Debian's docker-compose.
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "docker").write_text(f'#!/bin/sh\n[ "$1" = compose ] || exit 127\nshift\nexec {exe} "$@"\n')
    (shim / "docker").chmod(0o755)
    env = _clean_env(PATH=f"{shim}{os.pathsep}{os.environ['PATH']}")

    def compose(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([exe, *args], cwd=clone, env=env, capture_output=True, text=True, timeout=60)

    assert not (clone / ".env").exists()
    assert compose("config", "-q").returncode != 0, "a fresh clone validated without the README's steps"

    steps = _readme_compose_steps((clone / "README.md").read_text(encoding="utf-8"))
    assert "docker compose config" in steps
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", steps],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr

    assert compose("config", "-q").returncode == 0
    services = compose("config", "--services")
    assert set(services.stdout.split()) >= {
        "postgres",
        "redis",
        "migrate",
        "gateway",
        "execution",
        "events",
        "pricefeed",
    }
    values = dict(
        line.split("=", 1)
        for line in (clone / ".env").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    settings = Settings(
        _env_file=None,
        tradebridge_env="production",
        jwt_secret=values["JWT_SECRET"],
        key_encryption_keys=values["KEY_ENCRYPTION_KEYS"],
    )
    secrets = resolve_secrets(settings)
    assert len(secrets.jwt_secret.encode()) >= MIN_SECRET_BYTES
    KeyRing.from_setting(secrets.key_encryption_keys)


def test_help_lists_every_command() -> None:
    out = subprocess.run(
        [*CLI, "--help"], capture_output=True, text=True, timeout=60, env=_clean_env(), cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    for cmd in ("up", "gateway", "execution", "events", "pricefeed", "migrate", "admin", "keys"):
        assert cmd in out.stdout


def test_production_without_secrets_stops_with_one_clear_line(tmp_path: Path) -> None:
    env = _clean_env(TRADEBRIDGE_ENV="production", DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path}/x.db")
    out = subprocess.run([*CLI, "gateway"], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path)
    assert out.returncode == 2
    assert "JWT_SECRET and KEY_ENCRYPTION_KEYS must be set" in out.stderr
    assert "Traceback" not in out.stderr


@pytest.fixture(params=["sqlite", "postgresql"])
async def fresh_db_url(request: pytest.FixtureRequest, tmp_path: Path, pg_empty_url: str) -> str:
    """An empty database of either kind, for the command line to migrate."""
    return pg_empty_url if request.param == "postgresql" else f"sqlite+aiosqlite:///{tmp_path / 'fresh.db'}"


async def test_migrate_says_what_changed_in_one_line_and_errors_still_show(
    fresh_db_url: str, tmp_path: Path
) -> None:
    """Alembic narrates at INFO (seven `setup plugin ...` lines on import, then the dialect and each step):
    none of it reaches the first screen; one line of ours does, and a mistake is still reported."""
    from alembic.script import ScriptDirectory

    from shared.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    env = _clean_env(DATABASE_URL=fresh_db_url, LOG_LEVEL="INFO")
    out = subprocess.run(
        [*CLI, "migrate"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    screen = out.stdout + out.stderr
    assert "setup plugin" not in screen
    assert "[alembic" not in screen, screen
    assert "database migrated" in screen and f"from_revision=base to_revision={head}" in screen
    assert "database at head" in screen

    again = subprocess.run(
        [*CLI, "migrate"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    assert again.returncode == 0 and "database migrated" not in again.stderr  # nothing changed, nothing said

    bad = subprocess.run(
        [*CLI, "migrate", "--revision", "no-such-revision"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert "Can't locate revision identified by 'no-such-revision'" in bad.stderr
    assert "Traceback" not in bad.stderr


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
    env = _clean_env(
        PAPER_MARKET_MAKER="on", ADMIN_EMAIL="admin@example.com", ADMIN_PASSWORD="admin-password-1"
    )
    proc = subprocess.Popen(
        [*CLI, "up", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        eventually_sync(lambda: _ready(f"{base}/readyz"), timeout=60)
        assert (tmp_path / "tradebridge.db").exists() and (tmp_path / ".tradebridge-secrets.json").exists()
        with httpx.Client(base_url=base, timeout=10) as c:
            assert (
                c.post(
                    "/auth/register", json={"email": "u@example.com", "password": "password-123"}
                ).status_code
                == 201
            )
            token = c.post("/auth/login", json={"email": "u@example.com", "password": "password-123"}).json()[
                "access_token"
            ]
            h = {"Authorization": f"Bearer {token}"}
            eventually_sync(lambda: c.get("/api/markets/BTCUSDT/depth").json()["asks"], timeout=30)
            r = c.post(
                "/api/orders",
                json={"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"},
                headers=h,
            )
            assert r.status_code == 202, r.text
            oid = r.json()["order_id"]
            eventually_sync(
                lambda: c.get(f"/api/orders/{oid}", headers=h).json()["status"] == "FILLED", timeout=30
            )
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
    assert "setup plugin" not in output and "[alembic" not in output, output[:3000]


def test_services_serve_websockets_with_the_sans_io_protocol(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every served process (`up`, `gateway`, `events`) goes through `_serve`: WebSockets on uvicorn's sans-I/O
    protocol (cheaper per frame than the legacy one, which websockets deprecated), with the contract's limits."""
    import uvicorn
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    from tradebridge import cli

    served: list[uvicorn.Config] = []
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets=None: served.append(self.config))
    settings = Settings(_env_file=None, ws_max_message_bytes=4096)
    cli._serve(object(), settings, "127.0.0.1", 0)
    (config,) = served
    config.load()
    assert config.ws_protocol_class is WebSocketsSansIOProtocol
    assert (config.ws_max_size, config.ws_per_message_deflate, config.ws_ping_interval) == (4096, False, 20)
