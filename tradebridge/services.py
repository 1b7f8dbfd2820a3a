"""The standalone service processes (`tradebridge execution`, `pricefeed`, `reconcile`), each given only
the parts it uses."""

from __future__ import annotations

from contextlib import AsyncExitStack

from rich.console import Console

from execution.service import start_execution
from pricefeed.equity import start_equity_snapshots
from pricefeed.runner import start_pricefeed
from reconciliation.cli import reconcile
from reconciliation.runner import ReconOptions
from shared.settings import Settings
from tradebridge import bootstrap as b


async def _execution(shared: b.SharedParts, stack: AsyncExitStack) -> None:
    await start_execution(b.execution_parts(shared), stack)


async def _pricefeed(shared: b.SharedParts, stack: AsyncExitStack) -> None:
    await start_pricefeed(b.pricefeed_parts(shared), stack)


async def _equity(shared: b.SharedParts, stack: AsyncExitStack) -> None:
    await start_equity_snapshots(b.equity_parts(shared), stack)


async def run_execution(settings: Settings) -> None:
    """One execution worker (with its outbox relay) until SIGTERM/SIGINT."""
    await b.run_service(settings, _execution)


async def run_pricefeed(settings: Settings) -> None:
    """The price feed (with the equity snapshots) until SIGTERM/SIGINT."""
    await b.run_service(settings, _pricefeed, _equity)


async def run_reconcile(
    settings: Settings, console: Console, *, stuck_after_s: float, include_testnet: bool
) -> int:
    """One report from the command line."""
    async with AsyncExitStack() as stack:
        shared = b.SharedParts(settings, stack)
        rec = b.reconciler(
            shared,
            b.paper_book(shared),  # as the workers holding the paper leases publish it
            options=ReconOptions(stuck_after_s=stuck_after_s, include_testnet=include_testnet),
        )
        return await reconcile(rec, console)
