"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.deps import GatewayParts, PartsDep
from shared.liquidity import liquidity_problems

router = APIRouter(tags=["operations"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def _liquidity(rt: GatewayParts) -> str:
    """Market orders can fill: the market maker quotes both sides of every symbol (see shared.liquidity)."""
    try:
        problems = await liquidity_problems(rt.market_data, rt.markets, rt.clock.now())
    except Exception as exc:
        return f"unavailable: {type(exc).__name__}"
    return "ok" if not problems else "waiting: " + ", ".join(f"{s} {why}" for s, why in problems.items())


@router.get(
    "/readyz",
    responses={
        200: {"description": "Ready: every check is `ok`."},
        503: {
            "description": "Not ready: the checks say which part is not.",
            "content": {"application/json": {"schema": {"type": "object"}}},
        },
    },
)
async def readyz(rt: PartsDep) -> JSONResponse:
    """Database and bus reachable; with the market maker on, also paper liquidity on every symbol (with
    PAPER_MARKET_MAKER=off there is none to wait for, so that check is left out)."""
    checks: dict[str, str] = {}
    for name, probe in (("database", rt.check_database), ("bus", rt.bus.ping)):
        try:
            await probe()
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"unavailable: {type(exc).__name__}"
    if rt.settings.market_maker_enabled:
        checks["liquidity"] = await _liquidity(rt)
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not ready", "checks": checks}, status_code=200 if ready else 503
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus metrics (text exposition format).",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
