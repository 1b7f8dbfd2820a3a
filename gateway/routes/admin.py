"""Administration (role admin; 403 for others)."""

from __future__ import annotations

from fastapi import APIRouter, Query
from sqlmodel import col, select

from gateway.deps import AuditorDep, CurrentAdmin, SessionDep
from gateway.problems import AUTHENTICATED, problem_responses
from gateway.services.accounts import has_testnet_keys
from shared.models import User
from shared.schemas.accounts import AdminUserOut

router = APIRouter(prefix="/api/admin", tags=["admin"])


@router.get("/users", response_model=list[AdminUserOut], responses=problem_responses(*AUTHENTICATED, 403))
async def list_users(
    admin: CurrentAdmin,
    session: SessionDep,
    auditor: AuditorDep,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
) -> list[AdminUserOut]:
    users = (
        await session.execute(select(User).order_by(col(User.created_at)).limit(limit).offset(offset))
    ).scalars()
    out = [
        AdminUserOut(
            id=u.id,
            email=u.email,
            role=u.role,
            mode=u.mode,
            has_testnet_keys=await has_testnet_keys(session, u.id),
            created_at=u.created_at,
            is_active=u.is_active,
        )
        for u in users
    ]
    await auditor.record(session, "admin.list_users", actor_id=admin.id, count=len(out))
    return out
