"""The web trading frontend, served by the gateway itself (no separate front-end server, no build step).

`mount_web(app)` serves `static/index.html` for `/` and every client-side route (`/login`, `/trade/BTCUSDT`,
...), the app's ES modules and CSS under `/assets/`, and the chart library's standalone ES module from
`node_modules` (installed by `scripts/install`, never committed) at `/assets/vendor/lightweight-charts.mjs`.

The client-side catch-all never matches the API's own prefixes, so an unknown `/api/...` path still gets
the API's problem+json 404 and routes added after `mount_web` under those prefixes stay reachable.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Final

from fastapi import FastAPI
from starlette.datastructures import URLPath
from starlette.middleware.gzip import GZipMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Match, Mount, NoMatchFound, Route, request_response
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

from shared.errors import NotFound

WEB_DIR: Final = Path(__file__).resolve().parent
STATIC_DIR: Final = WEB_DIR / "static"
CHART_DIST: Final = WEB_DIR / "node_modules" / "lightweight-charts" / "dist"
CHART_MODULE: Final = CHART_DIST / "lightweight-charts.standalone.production.mjs"
RESERVED_PREFIXES: Final = (
    "/api",
    "/auth",
    "/ws",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/healthz",
    "/readyz",
    "/metrics",
    "/assets",
)
# The shell must be revalidated on every load so a deploy takes effect at once; assets revalidate by ETag.
NO_CACHE: Final = {"Cache-Control": "no-cache"}


def _reserved(path: str) -> bool:
    return any(path == p or path.startswith(p + "/") for p in RESERVED_PREFIXES)


def _wants_html(scope: Scope) -> bool:
    """Browsers navigating send `Accept: text/html,...`; API clients send JSON or `*/*`."""
    for name, value in scope.get("headers", ()):
        if name == b"accept":
            return b"text/html" in value
    return False


class _ClientRoutes(BaseRoute):
    """GET/HEAD on any non-reserved path -> index.html (the app routes on `location.pathname`)."""

    def __init__(self, index: Path) -> None:
        self.index = index

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or _reserved(scope["path"]):
            return Match.NONE, {}
        if scope["method"] not in ("GET", "HEAD"):
            return Match.NONE, {}
        if "." in scope["path"]:  # a file that is not there (favicon.ico, robots.txt): a plain 404
            return Match.NONE, {}
        if scope["path"] != "/" and not _wants_html(scope):
            # An API client asking for a path that does not exist gets the problem+json 404, not the app.
            return Match.NONE, {}
        return Match.FULL, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        await FileResponse(self.index, media_type="text/html", headers=NO_CACHE)(scope, receive, send)


async def _chart_module(request: Request) -> Response:
    if not CHART_MODULE.is_file():
        raise NotFound("The chart library is not installed (run scripts/install).")
    return FileResponse(CHART_MODULE, media_type="text/javascript", headers=NO_CACHE)


class _Assets(StaticFiles):
    """Static files with explicit JavaScript types (`nosniff` is on, and `.mjs` is unknown to mimetypes)."""

    def file_response(
        self,
        full_path: str | os.PathLike[str],
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        if str(full_path).endswith((".js", ".mjs")):
            response.headers["content-type"] = "text/javascript; charset=utf-8"
        response.headers.setdefault("cache-control", "no-cache")
        return response


def mount_web(app: FastAPI) -> None:
    """Serve the web app on `app`. Call it after the API routers (its catch-all only claims free paths)."""
    # Compressed for browsers that accept it: the first load's JavaScript and CSS is about a third as large on
    # the wire (the chart library alone goes from ~200 KB to ~65 KB). The API's responses are left as they are.
    app.router.routes.append(
        Route(
            "/assets/vendor/lightweight-charts.mjs",
            GZipMiddleware(request_response(_chart_module), minimum_size=1024),
            methods=["GET"],
        )
    )
    app.router.routes.append(
        Mount(
            "/assets",
            app=GZipMiddleware(_Assets(directory=STATIC_DIR / "assets"), minimum_size=1024),
            name="web-assets",
        )
    )
    app.router.routes.append(_ClientRoutes(STATIC_DIR / "index.html"))
