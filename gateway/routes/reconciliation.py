"""Admin reconciliation reports (role admin; 403 for others): run, list, read (JSON, CSV, HTML), repair."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, BackgroundTasks, Query
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from gateway.deps import AuditorDep, CurrentAdmin, PartsDep, SessionDep
from gateway.problems import AUTHENTICATED, WITH_BODY, problem_responses
from reconciliation.repair import repair_report
from reconciliation.store import (
    get_report,
    list_reports,
    mismatch_out,
    mismatches,
    report_out,
    to_csv,
    to_html,
)
from shared.schemas.admin import RepairOut, ReportDetailOut, ReportOut, ReportStarted

router = APIRouter(prefix="/api/admin/reconciliation", tags=["admin"])


class RepairIn(BaseModel):
    mismatch_ids: list[int] = Field(default_factory=list, max_length=10_000)
    kinds: list[str] = Field(default_factory=list, max_length=64)


@router.post("", status_code=202, response_model=ReportStarted, responses=problem_responses(401, 403, 503))
async def start(
    admin: CurrentAdmin, rt: PartsDep, session: SessionDep, auditor: AuditorDep, after: BackgroundTasks
) -> ReportStarted:
    """The report row and its audit record commit with the request; the run starts after the response,
    which is after that commit (the session dependency ends when the endpoint returns)."""
    reconciler = rt.reconciler
    report_id = reconciler.add_report(session, "api", admin.id)
    await auditor.record(session, "reconciliation.run", actor_id=admin.id, target=report_id)
    after.add_task(reconciler.start, report_id)
    return ReportStarted(report_id=report_id)


@router.get("", response_model=list[ReportOut], responses=problem_responses(*AUTHENTICATED, 403))
async def index(
    admin: CurrentAdmin,
    session: SessionDep,
    limit: int = Query(default=50, ge=1, le=500),
    offset: int = Query(default=0, ge=0),
) -> list[ReportOut]:
    """Reports, newest first."""
    return [ReportOut.model_validate(report_out(r)) for r in await list_reports(session, limit, offset)]


@router.get(
    "/{report_id}",
    response_model=None,
    responses={
        200: {
            "description": "The report: JSON, or CSV / HTML with `format`.",
            "model": ReportDetailOut,
            "content": {
                "text/csv": {"schema": {"type": "string"}},
                "text/html": {"schema": {"type": "string"}},
            },
        },
        **problem_responses(*AUTHENTICATED, 403, 404),
    },
)
async def show(
    report_id: str,
    admin: CurrentAdmin,
    session: SessionDep,
    format: Literal["json", "csv", "html"] = "json",
) -> Response:
    report = await get_report(session, report_id)
    items = await mismatches(session, report_id)
    if format == "csv":
        return Response(
            to_csv(items),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="reconciliation-{report_id}.csv"'},
        )
    if format == "html":
        return HTMLResponse(to_html(report, items))
    return JSONResponse({**report_out(report), "mismatches": [mismatch_out(m) for m in items]})


@router.post(
    "/{report_id}/repair",
    response_model=RepairOut,
    responses=problem_responses(*WITH_BODY, 401, 403, 404, 409),
)
async def repair(
    report_id: str,
    body: RepairIn,
    admin: CurrentAdmin,
    rt: PartsDep,
    session: SessionDep,
    auditor: AuditorDep,
) -> RepairOut:
    report = await get_report(session, report_id)
    out = await repair_report(
        session, rt.repairs, auditor, admin, report, ids=body.mismatch_ids or None, kinds=body.kinds or None
    )
    return RepairOut.model_validate(
        {"report_id": report_id, "repaired": out.repaired, "skipped": out.skipped}
    )
