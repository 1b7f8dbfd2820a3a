"""Administration (role admin; 403 for others): the user list with search and filters, locking and unlocking
users, and the audit log with filters. Lists answer one page as a JSON array and the total in X-Total-Count."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AwareDatetime

from gateway.deps import AuditorDep, CurrentAdmin, PartsDep, SessionDep
from gateway.problems import AUTHENTICATED, problem_responses
from gateway.services.admin import AdminService, AuditQuery, UserQuery
from shared.schemas.accounts import Mode
from shared.schemas.admin import TOTAL_COUNT, TOTAL_COUNT_HEADER, AdminUserOut, AuditEntryOut, UserStatus

router = APIRouter(prefix="/api/admin", tags=["admin"])

PAGED: dict[int | str, dict[str, Any]] = {
    200: {"description": "One page, newest or oldest first as stated.", "headers": TOTAL_COUNT_HEADER}
}
UserId = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9_-]+$")]
Limit = Annotated[int, Query(ge=1, le=1000)]
Offset = Annotated[int, Query(ge=0)]


async def admin_service(rt: PartsDep, session: SessionDep, auditor: AuditorDep) -> AdminService:
    return AdminService(session, rt.clock, auditor)


Admin = Annotated[AdminService, Depends(admin_service)]


@router.get(
    "/users",
    response_model=list[AdminUserOut],
    responses={**PAGED, **problem_responses(*AUTHENTICATED, 403)},
)
async def list_users(
    admin: CurrentAdmin,
    service: Admin,
    session: SessionDep,
    auditor: AuditorDep,
    response: Response,
    q: Annotated[str | None, Query(max_length=320, description="Part of the email, or a user id.")] = None,
    role: Literal["user", "admin"] | None = None,
    mode: Mode | None = None,
    status: UserStatus | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[AdminUserOut]:
    """Users, oldest first: role, mode, whether they have testnet keys, last login, locked or not."""
    out, total = await service.users(
        UserQuery(search=q, role=role, mode=mode, status=status, limit=limit, offset=offset)
    )
    response.headers[TOTAL_COUNT] = str(total)
    await auditor.record(session, "admin.list_users", actor_id=admin.id, count=len(out))
    return out


@router.post(
    "/users/{user_id}/lock",
    response_model=AdminUserOut,
    responses=problem_responses(*AUTHENTICATED, 403, 404, 409),
)
async def lock_user(admin: CurrentAdmin, service: Admin, user_id: UserId) -> AdminUserOut:
    """Lock a user: no login, no refresh, no bearer token or API key works for them until unlocked; their
    refresh tokens are revoked. Audited. 409 for your own account and for the last active admin."""
    return await service.set_locked(admin, user_id, locked=True)


@router.post(
    "/users/{user_id}/unlock",
    response_model=AdminUserOut,
    responses=problem_responses(*AUTHENTICATED, 403, 404),
)
async def unlock_user(admin: CurrentAdmin, service: Admin, user_id: UserId) -> AdminUserOut:
    """Unlock a user: they can log in again (old sessions stay revoked). Audited."""
    return await service.set_locked(admin, user_id, locked=False)


@router.get(
    "/audit",
    response_model=list[AuditEntryOut],
    responses={**PAGED, **problem_responses(*AUTHENTICATED, 403)},
)
async def audit_log(
    admin: CurrentAdmin,
    service: Admin,
    response: Response,
    actor: Annotated[str | None, Query(max_length=320, description="A user id, or an email.")] = None,
    action: Annotated[
        str | None,
        Query(max_length=64, description='An action ("auth.login") or a dotted prefix ("auth").'),
    ] = None,
    since: Annotated[AwareDatetime | None, Query(description="From this time (inclusive).")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Before this time (exclusive).")] = None,
    limit: Limit = 50,
    offset: Offset = 0,
) -> list[AuditEntryOut]:
    """The audit log, newest first, filtered by actor, action and time range."""
    out, total = await service.audit_log(
        AuditQuery(actor=actor, action=action, since=since, until=until, limit=limit, offset=offset)
    )
    response.headers[TOTAL_COUNT] = str(total)
    return out
