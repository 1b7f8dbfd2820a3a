"""The documented example client against the real system: the README's command against a `tradebridge up`
process, and the client's functions against gateway + worker + events on PostgreSQL and Redis (served by
uvicorn): orders over REST, their updates over the WebSocket, across a reconnect."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.events.helpers import serve
from tests.support.api import make_settings
from tests.support.eventually import eventually, eventually_sync
from tests.support.procs import free_port
from tradebridge.app import create_app

ROOT = Path(__file__).resolve().parents[2]


def _example() -> Any:
    spec = importlib.util.spec_from_file_location("trading_client", ROOT / "examples" / "trading_client.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["trading_client"] = module
    spec.loader.exec_module(module)
    return module


def _readme_client_command() -> str:
    """The README's command for the example client (the one line of a bash block that runs it)."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    lines = [line for block in blocks for line in block.splitlines() if "examples/trading_client.py" in line]
    assert len(lines) == 1, lines
    return lines[0]


def _option(command: str, name: str) -> str:
    words = shlex.split(command)
    return words[words.index(name) + 1]


@pytest.fixture
def embedded(tmp_path: Path) -> Iterator[str]:
    """A real `tradebridge up` in an empty folder (SQLite, in-process bus, market maker on): its base URL."""
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "JWT_", "KEY_", "ADMIN_"))
    }
    log = tmp_path / "up.log"  # a file, not a pipe nobody reads: a full pipe would stall the server's logging
    with log.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tradebridge.cli", "up", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        try:
            return httpx.get(f"{base}/readyz", timeout=2).status_code == 200
        except httpx.HTTPError:
            assert proc.poll() is None, f"tradebridge up exited: {log.read_text()[-3000:]}"
            return False

    try:
        eventually_sync(ready, timeout=60)
        yield base
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_readme_command_runs_against_tradebridge_up(embedded: str) -> None:
    """The README's exact command, for the account its curl lines register: the demo order is valid for the
    market's rules (it was 0.001 at 1000, under the minimum notional: 422), rests, is canceled, and every
    update arrives; a refusal prints the server's problem details."""
    command = _readme_client_command()
    email, password = _option(command, "--email"), _option(command, "--password")
    env = {**os.environ, "TRADEBRIDGE_URL": embedded}
    async with httpx.AsyncClient(base_url=embedded, timeout=10) as http:
        r = await http.post("/auth/register", json={"email": email, "password": password})
        assert r.status_code == 201, r.text

        run = subprocess.run(
            ["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        done = re.search(r"^done (\S+) (\S+)$", run.stdout, re.M)
        assert done and done.group(2) == "CANCELED", run.stdout[-3000:]
        order_id = done.group(1)
        updates = [
            line
            for line in run.stdout.splitlines()
            if line.strip().startswith("ORDER_UPDATE") and order_id in line
        ]
        assert any('"status": "NEW"' in u for u in updates) and any(
            '"status": "CANCELED"' in u for u in updates
        )

        tc = _example()
        token = await tc.login(http, email, password)
        order = (await http.get(f"/api/orders/{order_id}", headers=tc.auth(token))).json()
        market = next(m for m in (await http.get("/api/markets")).json() if m["symbol"] == order["symbol"])
        assert order["status"] == "CANCELED" and order["type"] == "LIMIT" and order["side"] == "BUY"
        assert Decimal(order["price"]) * Decimal(order["quantity"]) >= Decimal(market["min_notional"])

        # The old demo order, refused: the client raises the problem and describes it field by field.
        with pytest.raises(tc.ApiError) as refused:
            await tc.place_order(
                http,
                token,
                symbol="BTCUSDT",
                side="BUY",
                type="LIMIT",
                quantity=Decimal("0.001"),
                price=Decimal("1000"),
            )
        problem = refused.value.problem
        assert problem["status"] == 422 and problem["errors"]
        text = refused.value.describe()
        for part in (
            problem["type"],
            problem["title"],
            "422",
            problem["detail"],
            problem["errors"][0]["field"],
        ):
            assert str(part) in text

    # Any refusal ends the command with the problem details, not a traceback: here a base URL under which
    # there is no API (404).
    lost = subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        env={**env, "TRADEBRIDGE_URL": f"{embedded}/not-tradebridge"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert lost.returncode == 1, lost.stdout + lost.stderr
    for part in ("404", "type:", "title:", "status:", "detail:"):
        assert part in lost.stderr, lost.stderr
    assert "Traceback" not in lost.stderr


@pytest.mark.slow
async def test_example_client_trades_and_follows_updates(
    pg_url: str, redis_url: str, redis_prefix: str
) -> None:
    tc = _example()
    settings = make_settings(
        pg_url, redis_url=redis_url, redis_prefix=redis_prefix, paper_starting_balances_csv="USDT=10000,BTC=1"
    )
    app = create_app(settings, services=("events", "execution"))
    async with serve(app) as served:
        base = served.url.replace("ws://", "http://").rsplit("/ws", 1)[0]
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            for email in ("maker@example.com", "taker@example.com"):
                r = await http.post("/auth/register", json={"email": email, "password": "password-123"})
                assert r.status_code == 201
            maker = await tc.login(http, "maker@example.com", "password-123")
            taker = await tc.login(http, "taker@example.com", "password-123")

            seen: list[dict[str, Any]] = []

            async def get_token() -> str:
                return taker

            stream = tc.EventStream(base, get_token, seen.append)
            stop = asyncio.Event()
            follower = asyncio.create_task(stream.run(stop))
            try:
                await eventually(lambda: stream.connects >= 1)
                await tc.place_order(
                    http,
                    maker,
                    symbol="BTCUSDT",
                    side="SELL",
                    type="LIMIT",
                    quantity=Decimal("0.01"),
                    price=Decimal("60000"),
                )
                resting = await tc.place_order(
                    http,
                    taker,
                    symbol="BTCUSDT",
                    side="BUY",
                    type="LIMIT",
                    quantity=Decimal("0.01"),
                    price=Decimal("50000"),
                )
                await tc.cancel_order(http, taker, resting["order_id"])

                async def ask_resting() -> bool:
                    return bool((await http.get("/api/markets/BTCUSDT/depth")).json()["asks"])

                await eventually(ask_resting)
                bought = await tc.place_order(
                    http, taker, symbol="BTCUSDT", side="BUY", type="MARKET", quantity=Decimal("0.004")
                )

                def statuses(order_id: str) -> list[str]:
                    return [
                        m["data"]["status"]
                        for m in seen
                        if m.get("type") == "ORDER_UPDATE" and m["data"]["order_id"] == order_id
                    ]

                await eventually(lambda: "FILLED" in statuses(bought["order_id"]), timeout=20)
                await eventually(lambda: "CANCELED" in statuses(resting["order_id"]), timeout=20)
                assert {m["type"] for m in seen} >= {
                    "ORDER_UPDATE",
                    "TRADE",
                    "BALANCE_UPDATE",
                    "POSITION_UPDATE",
                }
                assert all(m["data"].get("order_id") != "maker" for m in seen)

            finally:
                stop.set()
                await asyncio.wait_for(follower, 10)

            # Away: the client is gone while an order fills; it comes back from its last event id.
            last = stream.last_event_id
            assert last is not None
            away = await tc.place_order(
                http, taker, symbol="BTCUSDT", side="BUY", type="MARKET", quantity=Decimal("0.002")
            )
            await eventually(lambda: _status(http, taker, away["order_id"], "FILLED"), timeout=20)
            resumed: list[dict[str, Any]] = []
            stream2 = tc.EventStream(base, get_token, resumed.append, last_event_id=last)
            stop2 = asyncio.Event()
            follower2 = asyncio.create_task(stream2.run(stop2))
            try:
                await eventually(
                    lambda: any(
                        m.get("type") == "ORDER_UPDATE"
                        and m["data"]["order_id"] == away["order_id"]
                        and m["data"]["status"] == "FILLED"
                        for m in resumed
                    ),
                    timeout=20,
                )
            finally:
                stop2.set()
                await asyncio.wait_for(follower2, 10)
            replayed = [m["id"] for m in resumed if m.get("id")]
            assert len(replayed) == len(set(replayed)), "an event was delivered twice"
            assert all(_key(i) > _key(last) for i in replayed), "an already handled event came back"
            assert replayed == sorted(replayed, key=_key)
            assert not ({m["id"] for m in seen if m.get("id")} & set(replayed))


def _key(event_id: str) -> tuple[int, int]:
    ms, _, seq = event_id.partition("-")
    return int(ms), int(seq or 0)


async def _status(http: httpx.AsyncClient, token: str, order_id: str, status: str) -> bool:
    r = await http.get(f"/api/orders/{order_id}", headers={"Authorization": f"Bearer {token}"})
    return r.json()["status"] == status
