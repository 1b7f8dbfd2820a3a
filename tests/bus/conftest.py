"""The contract suite runs every test against both adapters: in-memory, and Redis Streams on the real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from shared.bus import Bus
from shared.bus.memory import MemoryBus
from shared.bus.redis_streams import RedisStreamsBus
from shared.clock import SystemClock


@dataclass(frozen=True, slots=True)
class BusTarget:
    kind: str
    redis_url: str | None = None
    prefix: str = ""


@pytest.fixture(params=["memory", "redis"])
def bus_target(request: pytest.FixtureRequest) -> BusTarget:
    if request.param == "redis":
        # Only the Redis variant needs (and skips without) the real Redis.
        return BusTarget(
            "redis", request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")
        )
    return BusTarget("memory")


MakeBus = Callable[..., Bus]


@pytest.fixture
async def make_bus(bus_target: BusTarget) -> AsyncIterator[MakeBus]:
    """Build a bus of the parametrised kind with the given options; all are closed afterwards."""
    created: list[Bus] = []

    def make(**options: Any) -> Bus:
        bus: Bus
        if bus_target.kind == "redis":
            assert bus_target.redis_url is not None
            bus = RedisStreamsBus(bus_target.redis_url, prefix=bus_target.prefix, **options)
        else:
            options.setdefault("clock", SystemClock())
            bus = MemoryBus(**options)
        created.append(bus)
        return bus

    yield make
    for bus in created:
        await bus.close()


@pytest.fixture
def bus(make_bus: MakeBus) -> Bus:
    return make_bus()
