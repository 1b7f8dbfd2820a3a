"""Response bodies of the admin console's endpoints (users, audit log)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from shared.schemas.accounts import MeOut

UserStatus = Literal["active", "locked"]

# Paged lists answer a JSON array and this header: how many match the filters in all (for the pager).
TOTAL_COUNT = "X-Total-Count"
TOTAL_COUNT_HEADER = {
    TOTAL_COUNT: {
        "description": "How many items match the filters, all pages together.",
        "schema": {"type": "integer", "minimum": 0},
    }
}


class AdminUserOut(MeOut):
    created_at: datetime
    is_active: bool = Field(description="False while the user is locked.")
    status: UserStatus
    locked_at: datetime | None = Field(description="When an admin locked the user; null while unlocked.")
    last_login_at: datetime | None = Field(description="The last password login; null if never.")


class AuditEntryOut(BaseModel):
    id: int
    ts: datetime
    actor_id: str | None
    actor_email: str | None = Field(description="The actor's email, if the actor is a user that exists.")
    action: str
    target: str | None
    ip: str | None
    request_id: str | None
    details: dict[str, Any]


class ReportOut(BaseModel):
    """A reconciliation report (``reconciliation.store.report_out``)."""

    id: str
    status: Literal["running", "done", "failed"]
    trigger: str = Field(description="api, cli or schedule.")
    requested_by: str | None
    started_at: datetime
    finished_at: datetime | None
    mismatch_count: int
    error: str | None
    summary: dict[str, Any] = Field(description="The checks run and the mismatches by kind (`by_kind`).")


class MismatchOut(BaseModel):
    """One mismatch a report found (``reconciliation.store.mismatch_out``), and whether it was repaired."""

    id: int
    kind: str
    scope: Literal["paper", "testnet"]
    user_id: str | None
    asset: str | None
    symbol: str | None
    order_id: str | None
    trade_id: str | None
    tradebridge_value: str | None
    reference_value: str | None
    reference_source: str
    action: str = Field(description="What to do about it.")
    repair: str | None = Field(description="The repair an admin may request; null: investigate by hand.")
    repaired_at: datetime | None
    repaired_by: str | None
    details: dict[str, Any]


class ReportDetailOut(ReportOut):
    mismatches: list[MismatchOut]


class ReportStarted(BaseModel):
    report_id: str


class RepairSkipped(BaseModel):
    id: int | None
    reason: str


class RepairOut(BaseModel):
    report_id: str
    repaired: list[int]
    skipped: list[RepairSkipped]
