"""`tradebridge up` (the embedded root: every service in one process, SQLite, in-process bus, market maker on)
shut down right after a burst of orders, again and again: no shutdown hangs. As uvicorn does, no request is
in flight when the lifespan shuts down; the worker, relay, price feed and hub still are. (The hang this guards
against, the hub's reader carrying on after its cancellation, is pinned down exactly by
tests/bus/test_cancelled_reads.py; here it showed in about one shutdown in 30. One in 20 also took 5-13 s while
the paper loop rebuilt its books after its cancellation came back as a PendingRollbackError, pinned down by
tests/pipeline/test_worker_cancellation.py; after both fixes 40 shutdowns in a row took at most 0.5 s.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from asgi_lifespan import LifespanManager

from tests.support.api import make_settings
from tradebridge.embedded import create_embedded_app

ORDER = {"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "quantity": "0.001", "price": "20000"}
PW = "correct horse battery"


async def _round(db: Path, n: int) -> float:
    app = create_embedded_app(make_settings(f"sqlite+aiosqlite:///{db}", paper_market_maker="on"))
    manager = LifespanManager(app, startup_timeout=60, shutdown_timeout=60)
    await manager.__aenter__()
    try:
        transport = httpx.ASGITransport(app=manager.app, client=("203.0.113.7", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            headers = []
            for u in range(2):
                email = f"load{n}-{u}@example.com"
                assert (await client.post("/auth/register", json={"email": email, "password": PW})).is_success
                r = await client.post("/auth/login", json={"email": email, "password": PW})
                headers.append({"Authorization": f"Bearer {r.json()['access_token']}"})

            async def place(h: dict[str, str]) -> None:
                for i in range(8):
                    r = await client.post("/api/orders", json=ORDER, headers=h)
                    assert r.status_code == 202, r.text
                    if i % 3 == 2:
                        await client.delete(f"/api/orders/{r.json()['order_id']}", headers=h)

            await asyncio.gather(*(place(h) for h in headers for _ in range(3)))
    finally:
        started = time.monotonic()
        await manager.__aexit__(None, None, None)
    return time.monotonic() - started


async def test_up_shuts_down_promptly_after_load_every_time(tmp_path: Path) -> None:
    took = [await _round(tmp_path / f"tb{n}.db", n) for n in range(3)]
    assert max(took) < 10, f"shutdown took {[round(t, 2) for t in took]} s"
