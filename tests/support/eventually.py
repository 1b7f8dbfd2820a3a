"""Wait for a condition instead of sleeping a guessed amount."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]] | Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition not met",
) -> T:
    """Call `probe` until it returns a truthy value without raising AssertionError; return that value."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
            if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
                result = await result  # type: ignore[misc]
            if result:
                return result  # type: ignore[return-value]
            last_error = None
        except AssertionError as exc:
            last_error = exc
        if time.monotonic() > deadline:
            if last_error is not None:
                raise AssertionError(f"{message}: {last_error}") from last_error
            raise AssertionError(f"{message} within {timeout}s")
        await asyncio.sleep(interval)


def eventually_sync(
    probe: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.02,
    message: str = "condition not met",
) -> T:
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = probe()
            if result:
                return result
            last_error = None
        except AssertionError as exc:
            last_error = exc
        if time.monotonic() > deadline:
            if last_error is not None:
                raise AssertionError(f"{message}: {last_error}") from last_error
            raise AssertionError(f"{message} within {timeout}s")
        time.sleep(interval)
