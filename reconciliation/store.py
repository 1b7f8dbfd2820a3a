"""Reading stored reports and rendering them: JSON (dicts), CSV, and a plain HTML page for the admin view."""

from __future__ import annotations

import csv
import html
import io
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from shared.errors import NotFound
from shared.models.reconciliation import ReconciliationMismatch, ReconciliationReport

CSV_COLUMNS = (
    "id",
    "kind",
    "scope",
    "user_id",
    "asset",
    "symbol",
    "order_id",
    "trade_id",
    "tradebridge_value",
    "reference_value",
    "reference_source",
    "action",
    "repair",
    "repaired_at",
    "repaired_by",
)


def report_out(r: ReconciliationReport) -> dict[str, Any]:
    return {
        "id": r.id,
        "status": r.status,
        "trigger": r.trigger,
        "requested_by": r.requested_by,
        "started_at": r.started_at.isoformat(),
        "finished_at": r.finished_at.isoformat() if r.finished_at else None,
        "mismatch_count": r.mismatch_count,
        "error": r.error,
        "summary": r.summary,
    }


def mismatch_out(m: ReconciliationMismatch) -> dict[str, Any]:
    out: dict[str, Any] = {c: getattr(m, c) for c in CSV_COLUMNS}
    out["repaired_at"] = m.repaired_at.isoformat() if m.repaired_at else None
    out["details"] = m.details
    return out


async def list_reports(session: AsyncSession, limit: int = 50, offset: int = 0) -> list[ReconciliationReport]:
    rows = await session.execute(
        select(ReconciliationReport)
        .order_by(ReconciliationReport.started_at.desc(), ReconciliationReport.id.desc())  # type: ignore[attr-defined]
        .limit(limit)
        .offset(offset)
    )
    return list(rows.scalars())


async def get_report(session: AsyncSession, report_id: str) -> ReconciliationReport:
    report = await session.get(ReconciliationReport, report_id)
    if report is None:
        raise NotFound("No such reconciliation report.")
    return report


async def mismatches(session: AsyncSession, report_id: str) -> list[ReconciliationMismatch]:
    rows = await session.execute(
        select(ReconciliationMismatch)
        .where(col(ReconciliationMismatch.report_id) == report_id)
        .order_by(col(ReconciliationMismatch.id))
    )
    return list(rows.scalars())


def to_csv(items: list[ReconciliationMismatch]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for m in items:
        row = mismatch_out(m)
        w.writerow(["" if row[c] is None else _csv_safe(str(row[c])) for c in CSV_COLUMNS])
    return buf.getvalue()


def _csv_safe(value: str) -> str:
    """No spreadsheet formula injection from values that came from an exchange or a user."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") and not _is_number(value) else value


def _is_number(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def to_html(report: ReconciliationReport, items: list[ReconciliationMismatch]) -> str:
    e = html.escape
    s = report.summary or {}
    checks = "".join(
        f"<tr><td>{e(str(c['name']))}</td><td>{c['checked']}</td><td>{c['passed']}</td>"
        f"<td>{c['mismatches']}</td><td>{e('; '.join(c.get('notes', [])))}</td></tr>"
        for c in s.get("checks", [])
    )
    kinds = "".join(f"<li>{e(k)}: {n}</li>" for k, n in s.get("by_kind", {}).items())
    cols = (
        "id",
        "kind",
        "scope",
        "user_id",
        "order_id",
        "trade_id",
        "asset",
        "tradebridge_value",
        "reference_value",
        "reference_source",
        "action",
        "repaired_at",
    )
    rows = "".join(
        "<tr>"
        + "".join(f"<td>{e('' if (v := mismatch_out(m)[c]) is None else str(v))}</td>" for c in cols)
        + "</tr>"
        for m in items
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Reconciliation {e(report.id)}</title>"
        "<style>body{font-family:sans-serif}table{border-collapse:collapse}td,th{border:1px solid #ccc;"
        "padding:2px 6px;font-size:13px}</style></head><body>"
        f"<h1>Reconciliation report {e(report.id)}</h1>"
        f"<p>Status: <b>{e(report.status)}</b> · trigger {e(report.trigger)} · started "
        f"{e(report.started_at.isoformat())} · mismatches {report.mismatch_count}</p>"
        + (f"<p>Error: {e(report.error)}</p>" if report.error else "")
        + "<h2>Checks</h2><table><tr><th>check</th><th>checked</th><th>passed</th><th>mismatches</th>"
        f"<th>notes</th></tr>{checks}</table><h2>By kind</h2><ul>{kinds}</ul><h2>Mismatches</h2>"
        "<table><tr>" + "".join(f"<th>{c}</th>" for c in cols) + f"</tr>{rows}</table></body></html>"
    )
