"""The gateway application factory. `services` says which other services run inside this process
(`tradebridge up` runs them all here; `tradebridge gateway` runs the API alone)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import structlog
from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gateway import binance_api
from gateway.apidocs import install_docs
from gateway.middleware import BodyLimitMiddleware, MetricsMiddleware, SecurityHeadersMiddleware
from gateway.problems import install_openapi, install_problem_handlers
from gateway.routes import admin, auth, markets, me, ops, orders, portfolio, reconciliation
from gateway.services.accounts import ensure_admin
from gateway.web import mount_web
from reconciliation import reconciliation_hook
from shared.clock import Clock
from shared.settings import Settings
from tradebridge.bootstrap import Runtime, build_runtime

log = structlog.get_logger(__name__)

# A service hook starts a background part of the system inside the runtime and stops it on exit.
ServiceHook = Callable[[Runtime, AsyncExitStack], Any]


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    hooks: Iterable[ServiceHook] = (),
    migrate: bool = False,
    runtime_overrides: dict[str, Any] | None = None,
) -> FastAPI:
    hooks = [*hooks, reconciliation_hook()]

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if migrate:
            from shared.migrate import upgrade

            await upgrade(settings.database_url)
        async with build_runtime(settings, clock=clock) as rt, AsyncExitStack() as stack:
            for name, value in (runtime_overrides or {}).items():
                setattr(rt, name, value)
            app.state.runtime = rt
            if settings.admin_email and settings.admin_password:
                await ensure_admin(
                    rt.sessions,
                    rt.clock,
                    settings.admin_email,
                    settings.admin_password.get_secret_value(),
                    rounds=settings.bcrypt_rounds,
                )
            from execution.service import build_testnet, start_relay

            await start_relay(rt, stack)
            # Reads only (testnet balances); orders go through the execution worker.
            reader = build_testnet(rt, recover_on_start=False)
            rt.extras["testnet_reader"] = reader
            stack.push_async_callback(reader.stop)
            for hook in hooks:
                result = hook(rt, stack)
                if hasattr(result, "__await__"):
                    await result
            log.info(
                "gateway ready", database=settings.database_url.split("://")[0], bus=type(rt.bus).__name__
            )
            yield

    app = FastAPI(
        title="TradeBridge",
        version="0.1.0",
        description="One API for paper trading and the Binance spot testnet.",
        lifespan=lifespan,
        docs_url=None,  # install_docs: Swagger UI from the install, not FastAPI's CDN page
        redoc_url=None,  # ReDoc would need a CDN too
    )
    install_problem_handlers(app)
    install_openapi(app, symbols=settings.symbols)
    install_docs(app)
    for router in (
        auth.router,
        me.router,
        orders.router,
        portfolio.router,
        markets.router,
        admin.router,
        reconciliation.router,
        ops.router,
        binance_api.router,
    ):
        app.include_router(router)
    mount_web(app)  # last: the web app's catch-all must come after every API route

    # Outermost last: request id → metrics → security headers → CORS → body limit → app.
    app.add_middleware(BodyLimitMiddleware)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.is_production)
    app.add_middleware(MetricsMiddleware)
    app.add_middleware(CorrelationIdMiddleware, header_name="X-Request-ID")
    return app
