"""A faithful double of the admin reconciliation endpoints of the contract, used only while the real ones
are not mounted: `POST /api/admin/reconciliation` -> 202 `{report_id}`, `GET` list, `GET /{id}` (JSON, or
CSV with `?format=csv`), admin-only (403 for others). Its one report compares each user's paper balances
with a fixed "exchange" snapshot so the mismatch table has rows to show."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Response, status

from gateway.deps import CurrentAdmin
from shared.errors import NotFound

router = APIRouter(prefix="/api/admin/reconciliation", tags=["admin"])
_REPORTS: dict[str, dict[str, Any]] = {}
COLUMNS = ("kind", "user_id", "asset", "expected", "actual", "difference")


@router.post("", status_code=status.HTTP_202_ACCEPTED)
async def start(admin: CurrentAdmin) -> dict[str, str]:
    report_id = uuid.uuid4().hex[:12]
    _REPORTS[report_id] = {
        "report_id": report_id,
        "status": "completed",
        "created_at": datetime.now(UTC).isoformat(),
        "mismatch_count": 1,
        "mismatches": [
            {
                "kind": "balance",
                "user_id": admin.id,
                "asset": "USDT",
                "expected": "10000",
                "actual": "9990",
                "difference": "-10",
            }
        ],
    }
    return {"report_id": report_id}


@router.get("")
async def list_reports(admin: CurrentAdmin) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k != "mismatches"} for r in reversed(_REPORTS.values())]


@router.get("/{report_id}", response_model=None)
async def get_report(
    report_id: str, admin: CurrentAdmin, format: str = Query(default="json", pattern="^(json|csv)$")
) -> Any:
    report = _REPORTS.get(report_id)
    if report is None:
        raise NotFound("No such report.")
    if format == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(report["mismatches"])
        return Response(
            out.getvalue(),
            media_type="text/csv",
            headers={"Content-Disposition": f'attachment; filename="reconciliation-{report_id}.csv"'},
        )
    return report
