"""Every `APIRouter` under gateway/routes/ is part of the app `create_app` builds: a router written but never
included answers 404 in production while tests that mount it themselves stay green (issue #14)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

from fastapi import APIRouter
from fastapi.routing import APIRoute

import gateway.routes
from tests.support.api import make_settings
from tradebridge.app import create_app


def routers_under_gateway_routes() -> dict[str, APIRouter]:
    """Each APIRouter instance found in a module of gateway.routes (imported here), by where it was found."""
    found: dict[int, tuple[str, APIRouter]] = {}
    for info in pkgutil.walk_packages(gateway.routes.__path__, gateway.routes.__name__ + "."):
        module = importlib.import_module(info.name)
        for name, value in vars(module).items():
            if isinstance(value, APIRouter):
                found.setdefault(id(value), (f"{info.name}.{name}", value))
    return dict(found.values())


def test_every_router_under_gateway_routes_is_in_the_openapi(tmp_path: Path) -> None:
    routers = routers_under_gateway_routes()
    assert "gateway.routes.orders.router" in routers and "gateway.routes.reconciliation.router" in routers
    # openapi() needs no start-up: the database is never opened.
    app = create_app(make_settings(f"sqlite+aiosqlite:///{tmp_path / 'unused.db'}"))
    documented = {(path, method.upper()) for path, item in app.openapi()["paths"].items() for method in item}
    missing: list[str] = []
    for where, router in routers.items():
        routes = [r for r in router.routes if isinstance(r, APIRoute)]
        assert routes, f"{where} has no routes"
        for route in routes:
            for method in sorted(route.methods or ()):
                if (route.path, method) not in documented:
                    missing.append(f"{method} {route.path} ({where})")
    assert missing == [], "routers not included by create_app: " + ", ".join(missing)
