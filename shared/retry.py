"""Retrying with backoff, in one place: the delay schedule, a retried call (tenacity) and a counter for
state machines that retry from several places.

- ``Backoff``: the pure schedule: exponential from ``base`` by ``factor``, capped at ``cap``, with a
  ``jitter`` fraction of each delay drawn at random so many clients never retry in step (0: none,
  0.5: "equal jitter", 1: "full jitter").
- ``retry(call, ...)``: call until it succeeds (or ``attempts`` run out, or ``until()`` says stop), sleeping
  the schedule between failures and logging each retry.
- ``Attempts``: the same schedule for a loop that is not one call (the testnet venue's order lifecycle).

Cancellation is never retried nor swallowed: an ``asyncio.CancelledError`` propagates at once, and so does an
error a client library made of a cancellation in flight (redis-py does, on shutdown) while the task is being
cancelled. Sleep (and the random source) are injectable so tests neither wait nor guess.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt, stop_never
from tenacity.stop import stop_base

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[Any]]
OnRetry = Callable[[BaseException, int, float], None]
"""Called before each retry's sleep with (the error, attempts failed so far, the delay about to be slept)."""

log = structlog.get_logger(__name__)

__all__ = ["Attempts", "Backoff", "OnRetry", "Sleep", "reraise_if_cancelled", "retry"]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays before retry number 1, 2, ...: ``min(cap, base * factor ** (n - 1))``, jittered."""

    base: float = 0.5
    factor: float = 2.0
    cap: float = 30.0
    jitter: float = 0.0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.factor < 1 or self.cap < self.base:
            raise ValueError("need base > 0, factor >= 1, cap >= base")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter is a fraction between 0 and 1")

    def ceiling(self, attempt: int) -> float:
        """Un-jittered delay before retry number `attempt` (1 = first retry)."""
        if attempt < 1:
            raise ValueError("attempt counts from 1")
        return min(self.cap, self.base * self.factor ** min(attempt - 1, 64))

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The ceiling less a random part of at most ``jitter`` of it: we always back off some."""
        ceiling = self.ceiling(attempt)
        if not self.jitter:
            return ceiling
        spread = ceiling * self.jitter
        return ceiling - spread + (rng or random).uniform(0, spread)


def reraise_if_cancelled(exc: BaseException | None = None) -> None:
    """A client library may turn the cancellation of a call in flight into its own error (redis-py does, on
    shutdown), or drop it for the result that came with it: a loop that retries on errors, or reads again,
    must still stop when its task is being cancelled."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError from exc


async def retry(
    call: Callable[[], Awaitable[T]],
    *,
    what: str,
    backoff: Backoff,
    on: type[BaseException] | tuple[type[BaseException], ...] = Exception,
    expected: type[BaseException] | tuple[type[BaseException], ...] = (),
    attempts: int | None = None,
    until: Callable[[], bool] | None = None,
    sleep: Sleep = asyncio.sleep,
    rng: random.Random | None = None,
    on_retry: OnRetry | None = None,
) -> T:
    """``await call()`` until it returns, retrying errors of type ``on`` after ``backoff``'s delays.

    Gives up, re-raising the last error, after ``attempts`` calls (None: never) or once ``until()`` is true.
    Each retry is logged as a warning naming ``what``, with a traceback unless the error is ``expected``;
    ``on_retry`` replaces that log line (for a caller with its own logger or metrics)."""

    async def attempt() -> T:
        try:
            return await call()
        except Exception as exc:
            reraise_if_cancelled(exc)
            raise

    def retryable(exc: BaseException) -> bool:
        return isinstance(exc, on) and not isinstance(exc, asyncio.CancelledError)

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = state.upcoming_sleep
        assert exc is not None
        if on_retry is not None:
            on_retry(exc, state.attempt_number, delay)
            return
        log.warning(
            f"{what} failed; retrying",
            attempt=state.attempt_number,
            retry_in=round(delay, 3),
            error=str(exc) or type(exc).__name__,
            exc_info=None if isinstance(exc, expected) else exc,
        )

    stop: stop_base = stop_never if attempts is None else stop_after_attempt(attempts)
    if until is not None:
        stop = stop | _StopWhen(until)
    retrying = AsyncRetrying(
        sleep=sleep,
        stop=stop,
        wait=lambda state: backoff.delay(state.attempt_number, rng),
        retry=retry_if_exception(retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    return await retrying(attempt)


class _StopWhen(stop_base):
    """Stop once a condition (a service stopping, say) holds."""

    def __init__(self, condition: Callable[[], bool]) -> None:
        self.condition = condition

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self.condition()


class Attempts:
    """Consecutive failures of a loop that retries from several places (a state machine rather than one
    call): counts them and sleeps ``backoff``'s delay for each."""

    __slots__ = ("_rng", "_sleep", "backoff", "count")

    def __init__(
        self, backoff: Backoff, *, sleep: Sleep = asyncio.sleep, rng: random.Random | None = None
    ) -> None:
        self.backoff = backoff
        self.count = 0
        self._sleep = sleep
        self._rng = rng

    def next_delay(self) -> float:
        """Count one more failure; the delay before retrying it."""
        self.count += 1
        return self.backoff.delay(self.count, self._rng)

    async def wait(self) -> None:
        """Count one more failure and sleep its delay."""
        await self._sleep(self.next_delay())

    def reset(self) -> None:
        self.count = 0
