"""The gateway application factory. It builds no adapter: `parts` (an async context manager factory, from the
composition root `tradebridge.app.create_app`) produces the `GatewayParts` for the app's lifetime, with
whatever other services this process runs (`tradebridge up` runs them all here)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import structlog
from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from gateway import binance_api
from gateway.apidocs import install_docs
from gateway.deps import GatewayParts
from gateway.middleware import BodyLimitMiddleware, MetricsMiddleware, SecurityHeadersMiddleware
from gateway.problems import install_openapi, install_problem_handlers
from gateway.routes import admin, auth, markets, me, ops, orders, portfolio, reconciliation
from gateway.services.accounts import ensure_admin
from gateway.web import mount_web
from shared.settings import Settings

log = structlog.get_logger(__name__)

PartsFactory = Callable[[FastAPI], AbstractAsyncContextManager[GatewayParts]]
"""Produces the app's parts for its lifetime (given the app, to attach what other services expose)."""


def create_app(settings: Settings, parts: PartsFactory) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with parts(app) as p:
            app.state.parts = p
            if settings.admin_email and settings.admin_password:
                await ensure_admin(
                    p.sessions,
                    p.clock,
                    settings.admin_email,
                    settings.admin_password.get_secret_value(),
                    rounds=settings.bcrypt_rounds,
                )
            log.info(
                "gateway ready", database=settings.database_url.split("://")[0], bus=type(p.bus).__name__
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
