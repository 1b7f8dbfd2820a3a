"""shared.retry: the one backoff schedule and retry helper (tenacity underneath)."""

from __future__ import annotations

import asyncio
import random

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from shared.bus import BusUnavailable
from shared.retry import Attempts, Backoff, retry


class Sleeps:
    """An injected sleep that records the delays and returns at once."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


class Flaky:
    """Fails `failures` times with `error`, then returns "ok"."""

    def __init__(self, failures: int, error: BaseException | None = None) -> None:
        self.failures = failures
        self.error = error or BusUnavailable()
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


@given(
    base=st.floats(0.001, 10),
    factor=st.floats(1, 4),
    extra=st.floats(0, 100),
    jitter=st.floats(0, 1),
    attempt=st.integers(1, 10_000),
    seed=st.integers(0, 2**32),
)
def test_delays_stay_within_the_schedule(
    base: float, factor: float, extra: float, jitter: float, attempt: int, seed: int
) -> None:
    b = Backoff(base=base, factor=factor, cap=base + extra, jitter=jitter)
    ceiling = b.ceiling(attempt)
    assert base <= ceiling <= b.cap
    assert ceiling <= b.ceiling(attempt + 1)  # never shrinks
    delay = b.delay(attempt, random.Random(seed))
    assert ceiling * (1 - jitter) - 1e-9 <= delay <= ceiling + 1e-9


def test_schedule_validation() -> None:
    for bad in ({"base": 0}, {"factor": 0.5}, {"base": 2, "cap": 1}, {"jitter": 1.5}):
        with pytest.raises(ValueError):
            Backoff(**bad)
    with pytest.raises(ValueError):
        Backoff().ceiling(0)
    assert Backoff(base=1, cap=8).ceiling(10_000) == 8


async def test_retries_with_the_schedule_until_it_succeeds_and_logs_each_retry() -> None:
    sleeps, call = Sleeps(), Flaky(5)
    with structlog.testing.capture_logs() as logs:
        result = await retry(
            call, what="reading", backoff=Backoff(base=0.1, cap=1.0), on=BusUnavailable, sleep=sleeps
        )
    assert result == "ok" and call.calls == 6
    assert sleeps.calls == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0])
    retries = [e for e in logs if e["event"] == "reading failed; retrying"]
    assert [e["attempt"] for e in retries] == [1, 2, 3, 4, 5]
    assert [e["log_level"] for e in retries] == ["warning"] * 5


async def test_only_the_errors_asked_for_are_retried_and_attempts_run_out() -> None:
    sleeps = Sleeps()
    other = Flaky(1, ValueError("bad input"))
    with pytest.raises(ValueError):
        await retry(other, what="x", backoff=Backoff(), on=BusUnavailable, sleep=sleeps)
    assert other.calls == 1 and sleeps.calls == []

    always = Flaky(100)
    with pytest.raises(BusUnavailable):
        await retry(always, what="x", backoff=Backoff(), attempts=3, sleep=sleeps)
    assert always.calls == 3 and len(sleeps.calls) == 2


async def test_until_stops_retrying() -> None:
    sleeps, call = Sleeps(), Flaky(100)
    with pytest.raises(BusUnavailable):
        await retry(call, what="x", backoff=Backoff(), until=lambda: call.calls >= 4, sleep=sleeps)
    assert call.calls == 4


async def test_on_retry_replaces_the_log_line() -> None:
    seen: list[tuple[str, int, float]] = []
    await retry(
        Flaky(2),
        what="x",
        backoff=Backoff(base=1, cap=1),
        sleep=Sleeps(),
        on_retry=lambda exc, n, delay: seen.append((type(exc).__name__, n, delay)),
    )
    assert seen == [("BusUnavailable", 1, 1.0), ("BusUnavailable", 2, 1.0)]


async def test_a_cancelled_error_from_the_call_is_never_retried() -> None:
    sleeps, call = Sleeps(), Flaky(1, asyncio.CancelledError())
    with pytest.raises(asyncio.CancelledError):
        await retry(call, what="x", backoff=Backoff(), on=BaseException, sleep=sleeps)
    assert call.calls == 1 and sleeps.calls == []


async def test_cancelling_the_task_while_it_backs_off_stops_it() -> None:
    call = Flaky(100)
    task = asyncio.create_task(retry(call, what="x", backoff=Backoff(base=60, cap=60)))
    while call.calls == 0:
        await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert call.calls == 1


async def test_an_error_made_of_a_cancellation_in_flight_is_not_retried() -> None:
    """redis-py turns a cancelled call into its own error on shutdown: still the task's cancellation."""
    started = asyncio.Event()
    calls = 0

    async def call() -> None:
        nonlocal calls
        calls += 1
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            raise BusUnavailable("connection closed") from None

    sleeps = Sleeps()
    task = asyncio.create_task(retry(call, what="x", backoff=Backoff(), sleep=sleeps))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1 and sleeps.calls == []


async def test_attempts_count_failures_and_sleep_the_schedule() -> None:
    sleeps = Sleeps()
    attempts = Attempts(Backoff(base=0.2, cap=1.0), sleep=sleeps)
    for _ in range(4):
        await attempts.wait()
    assert attempts.next_delay() == 1.0 and attempts.count == 5
    assert sleeps.calls == pytest.approx([0.2, 0.4, 0.8, 1.0])
    attempts.reset()
    assert attempts.next_delay() == 0.2
