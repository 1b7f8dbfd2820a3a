"""`tradebridge reconcile`: one report from the command line, with a progress bar and a readable table."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from reconciliation.runner import Reconciler
from reconciliation.store import get_report, mismatches
from shared.db import unit_of_work


async def reconcile(reconciler: Reconciler, console: Console, *, limit: int = 200) -> int:
    """Run a report (the paper book is the one the execution process publishes, if it runs); print it.
    Returns the number of mismatches (the command's exit status is 1 when there are any)."""
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("reconciling", total=1)

        def progress(step: str, done: int, total: int) -> None:
            bar.update(task, description=step, completed=done, total=total)

        report_id = await reconciler.run("cli", None, progress)
    async with unit_of_work(reconciler.rt.sessions) as session:
        report = await get_report(session, report_id)
        items = await mismatches(session, report_id)
    render(console, report.id, report.status, report.summary, [_row(m) for m in items[:limit]], report.error)
    if len(items) > limit:
        console.print(f"... {len(items) - limit} more: GET /api/admin/reconciliation/{report_id}?format=csv")
    return len(items)


def _row(m: Any) -> list[str]:
    return [
        str(m.id),
        m.kind,
        m.user_id or "",
        m.order_id or m.trade_id or m.asset or "",
        m.tradebridge_value or "",
        m.reference_value or "",
        m.action,
    ]


def render(
    console: Console,
    report_id: str,
    status: str,
    summary: dict[str, Any],
    rows: list[list[str]],
    error: str | None = None,
) -> None:
    checks = Table(title=f"Reconciliation {report_id}: {status}")
    for col in ("check", "checked", "passed", "mismatches", "notes"):
        checks.add_column(col)
    for c in summary.get("checks", []):
        checks.add_row(
            c["name"], str(c["checked"]), str(c["passed"]), str(c["mismatches"]), "; ".join(c["notes"])
        )
    console.print(checks)
    if error:
        console.print(f"[red]{error}[/red]")
    if rows:
        table = Table(title="Mismatches")
        for col in (
            "id",
            "kind",
            "user",
            "order/trade/asset",
            "TradeBridge",
            "reference",
            "suggested action",
        ):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(*r)
        console.print(table)
    else:
        console.print("[green]no mismatches[/green]")
