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
