"""No access token, refresh token or key reaches a log line: `tradebridge up` as a real process, as chatty as
it gets (DEBUG, uvicorn's access log on), every way of authenticating a socket, login, refresh and logout over
REST; then every byte the process wrote is searched for the secrets it was handed."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from shared.clock import SystemClock
from shared.security.tokens import TokenService
from tests.support.procs import Service, free_port, service_env

PIECE = 16  # characters of a secret that count as a leak


async def _pong(url: str, *, first: dict[str, str] | None = None, **kw: object) -> None:
    """Open a socket, optionally authenticate by message, and wait for the answer to a ping."""
    async with connect(url, open_timeout=10, **kw) as ws:  # type: ignore[arg-type]
        if first is not None:
            await ws.send(json.dumps(first))
            assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "AUTHENTICATED"
        await ws.send(json.dumps({"op": "ping"}))
        while json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] != "PONG":
            pass


@pytest.mark.parametrize("env_name", ["development", "production"])  # readable lines and JSON lines
async def test_up_logs_no_tokens(tmp_path: Path, env_name: str) -> None:
    env = service_env(f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}", "", "", LOG_LEVEL="DEBUG", ACCESS_LOG="on")
    for name in ("REDIS_URL", "REDIS_PREFIX"):  # the embedded default: SQLite and the in-process bus
        env.pop(name)
    env.update(TRADEBRIDGE_ENV=env_name, SECRETS_FILE=str(tmp_path / "secrets.json"))
    log = tmp_path / "up.log"
    up = Service("up", env, log, port=free_port())
    up.start()
    secrets: list[str] = []
    try:
        up.wait_http("/readyz")
        base, ws_url = f"http://127.0.0.1:{up.port}", f"ws://127.0.0.1:{up.port}/ws"
        async with httpx.AsyncClient(base_url=base, timeout=30) as http:
            creds = {"email": "logs@example.com", "password": "password-123"}
            assert (await http.post("/auth/register", json=creds)).status_code == 201
            login = (await http.post("/auth/login", json=creds)).json()
            access, refresh = login["access_token"], login["refresh_token"]
            secrets += [access, refresh]

            await _pong(f"{ws_url}?token={access}")
            await _pong(f"{ws_url}?last_event_id=0-0&token={access}")
            await _pong(ws_url, additional_headers={"Authorization": f"Bearer {access}"})
            await _pong(ws_url, subprotocols=[Subprotocol("bearer"), Subprotocol(access)])
            await _pong(ws_url, first={"op": "auth", "token": access})
            async with connect(f"{ws_url}?token={access}x", open_timeout=10) as bad:  # a refused token too
                await bad.wait_closed()
                assert bad.close_code == 4401

            pair = (await http.post("/auth/refresh", json={"refresh_token": refresh})).json()
            secrets += [pair["access_token"], pair["refresh_token"]]
            # Tokens where no client should put them still stay out of the access log.
            me = await http.get(
                f"/api/me?token={pair['access_token']}&refresh_token={pair['refresh_token']}",
                headers={"Authorization": f"Bearer {pair['access_token']}"},
            )
            assert me.status_code == 200
            assert (
                await http.post("/auth/logout", json={"refresh_token": pair["refresh_token"]})
            ).status_code == 204
    finally:
        up.stop()
    text = log.read_text(errors="replace")
    # Not one secret, whole or as a piece (a token cut by a line break, an encoder, or websockets' frame dump,
    # which shows a payload's first 50 and last 25 characters: 21 of a token's signature in a JSON line)...
    for secret in secrets:
        pieces = {secret[i : i + PIECE] for i in range(len(secret) - PIECE + 1)}
        leaked = sorted(p for p in pieces if p in text)
        assert not leaked, f"{len(leaked)} pieces of a token in the log, e.g. {leaked[0]!r}"
    # ...though the process did log the requests and frames that carried them (so the search looked at them).
    assert "WebSocket /ws?token=***" in text and "authorization: Bearer ***" in text
    assert re.search(r"< TEXT \[\d+ bytes\]", text), "no frame was logged"
    assert "sec-websocket-protocol: bearer, ***" in text
    assert "POST /auth/refresh" in text and "/api/me?token=***&refresh_token=***" in text
    if env_name == "production":  # redaction keeps every JSON line JSON
        for line in text.splitlines():
            if line.startswith("{"):
                json.loads(line)


async def test_standalone_events_logs_no_tokens(tmp_path: Path, redis_url: str, redis_prefix: str) -> None:
    """`tradebridge events` on its own (Redis): the same logging, so the same redaction."""
    env = service_env(f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}", redis_url, redis_prefix, LOG_LEVEL="DEBUG")
    env.update(ACCESS_LOG="on", TRADEBRIDGE_ENV="production")
    log = tmp_path / "events.log"
    events = Service("events", env, log, port=free_port())
    events.start()
    tokens = TokenService(env["JWT_SECRET"], clock=SystemClock())
    token = tokens.issue_access("alice", "user").token
    try:
        events.wait_http("/healthz")
        ws_url = f"ws://127.0.0.1:{events.port}/ws"
        await _pong(f"{ws_url}?token={token}")
        await _pong(ws_url, additional_headers={"Authorization": f"Bearer {token}"})
    finally:
        events.stop()
    text = log.read_text(errors="replace")
    assert token not in text and token.split(".")[1] not in text
    assert "WebSocket /ws?token=***" in text and "authorization: Bearer ***" in text
