"""The execution worker's idempotency marks (`processed_commands`) are pruned on a schedule, so the table does not
grow by a row per command for ever (found by the soak run, issue #20); an old command arriving after its mark was
pruned still executes nothing twice. On PostgreSQL with Redis and on SQLite with the in-process bus."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import func, select

from shared.bus.base import BusMessage
from shared.clock import ManualClock
from shared.models import ProcessedCommand
from shared.streams import PAPER_COMMANDS, order_command
from tests.support.api import Api, make_settings, running_api
from tests.support.eventually import eventually

RETENTION_S = 4.0  # the schedule runs every eighth of it: 0.5 s


@pytest.fixture(params=["postgresql", "sqlite"])
async def system(
    request: pytest.FixtureRequest, pg_url: str, redis_url: str, redis_prefix: str, tmp_path: Path
) -> AsyncIterator[tuple[Api, ManualClock]]:
    clock = ManualClock()
    extra = {
        "paper_starting_balances_csv": "USDT=10000,BTC=1",
        "processed_commands_retention_s": RETENTION_S,
    }
    if request.param == "postgresql":
        settings = make_settings(pg_url, redis_url=redis_url, redis_prefix=redis_prefix, **extra)
        migrate = False
    else:
        settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}", **extra)
        migrate = True
    async with running_api(settings, clock=clock, services=("execution",), migrate=migrate) as api:
        await api.system.worker.ready.wait()
        yield api, clock


async def _marks(api: Api) -> int:
    async with api.parts.sessions() as s:
        return int((await s.execute(select(func.count()).select_from(ProcessedCommand))).scalar_one())


async def _order(api: Api, auth: dict[str, str], order_id: str) -> dict:
    r = await api.client.get(f"/api/orders/{order_id}", headers=auth)
    assert r.status_code == 200, r.text
    return r.json()


async def test_processed_marks_are_pruned_after_the_retention_and_a_late_command_changes_nothing(
    system: tuple[Api, ManualClock],
) -> None:
    api, clock = system
    worker = api.system.worker
    auth = await api.user("resting@example.com")
    r = await api.client.post(
        "/api/orders",
        json={"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT", "quantity": "0.01", "price": "90000"},
        headers=auth,
    )
    assert r.status_code == 202, r.text
    oid = r.json()["order_id"]
    await eventually(lambda: _order_is(api, auth, oid, "NEW"))
    assert await _marks(api) == 1

    # Younger than the retention: the schedule runs and keeps it.
    runs = worker.pruned_runs
    await eventually(lambda: worker.pruned_runs >= runs + 2, timeout=10)
    assert await _marks(api) == 1

    clock.advance(RETENTION_S + 1)
    await eventually(lambda: _marks_are(api, 0), timeout=10, message="the old mark was not pruned")

    # The command again, long after: its order is past PENDING, so nothing is placed or locked twice.
    before = await _order(api, auth, oid)
    balances = (await api.client.get("/api/balances", headers=auth)).json()
    await worker.handle_paper([BusMessage(PAPER_COMMANDS, "0-0", order_command("place", oid, "paper"))])
    after = await _order(api, auth, oid)
    assert after["status"] == "NEW" and after["history"] == before["history"]
    assert (await api.client.get("/api/balances", headers=auth)).json() == balances


async def _order_is(api: Api, auth: dict[str, str], oid: str, status: str) -> bool:
    return (await _order(api, auth, oid))["status"] == status


async def _marks_are(api: Api, n: int) -> bool:
    return await _marks(api) == n
