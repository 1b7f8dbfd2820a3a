"""Waiting for a served app to stop, and saying what held it up when it does not."""

from __future__ import annotations

import asyncio
import io


async def ended(task: asyncio.Future[None], timeout: float) -> None:
    """Wait for ``task`` (a uvicorn server told to exit, an app's lifespan shutdown) to end; past ``timeout``,
    fail with the stack of every task still running, so a shutdown that hangs once in CI names the loop that
    did not stop."""
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if done:
        task.result()
        return
    raise TimeoutError(f"the server did not stop within {timeout}s; tasks still running:\n{running_stacks()}")


def running_stacks() -> str:
    """The stack of every task of the loop but the caller's."""
    stacks = io.StringIO()
    for t in asyncio.all_tasks():
        if t is not asyncio.current_task():
            t.print_stack(limit=8, file=stacks)
    return stacks.getvalue()
