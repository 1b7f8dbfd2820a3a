"""`/docs`: Swagger UI served from the install, not a CDN, so it works offline and under the gateway's strict
Content-Security-Policy (``script-src 'self'``: the page has no inline script; ``swagger-init.js`` starts it).

The UI's files come from the npm package ``swagger-ui-dist`` in ``gateway/web/node_modules`` (installed by
``scripts/install``'s ``npm install`` with the chart library); only the few files the page needs are served,
under ``/docs/assets/``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, Response

from gateway.web import WEB_DIR
from shared.errors import NotFound

SWAGGER_DIST: Final = WEB_DIR / "node_modules" / "swagger-ui-dist"
INIT_SCRIPT: Final = Path(__file__).resolve().parent / "swagger-init.js"
ASSETS: Final = {
    "swagger-ui.css": (SWAGGER_DIST / "swagger-ui.css", "text/css; charset=utf-8"),
    "swagger-ui-bundle.js": (SWAGGER_DIST / "swagger-ui-bundle.js", "text/javascript; charset=utf-8"),
    "favicon-32x32.png": (SWAGGER_DIST / "favicon-32x32.png", "image/png"),
    "swagger-init.js": (INIT_SCRIPT, "text/javascript; charset=utf-8"),
}
NO_CACHE: Final = {"Cache-Control": "no-cache"}

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - API documentation</title>
<link rel="stylesheet" href="/docs/assets/swagger-ui.css">
<link rel="icon" type="image/png" href="/docs/assets/favicon-32x32.png">
</head>
<body>
<div id="swagger-ui" data-openapi-url="{openapi_url}"></div>
<script src="/docs/assets/swagger-ui-bundle.js"></script>
<script src="/docs/assets/swagger-init.js"></script>
</body>
</html>
"""

_MISSING = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - API documentation</title></head>
<body><p>Swagger UI is not installed (run <code>scripts/install</code>). The OpenAPI document is at
<a href="{openapi_url}">{openapi_url}</a>.</p></body></html>
"""


def install_docs(app: FastAPI) -> None:
    """Serve `/docs` and its assets on `app` (created with ``docs_url=None``, so FastAPI's CDN page is off)."""
    openapi_url = app.openapi_url or "/openapi.json"
    title = app.title

    async def page(request: Request) -> HTMLResponse:
        installed = all(path.is_file() for path, _ in ASSETS.values())
        html = (_PAGE if installed else _MISSING).format(title=title, openapi_url=openapi_url)
        return HTMLResponse(html, headers=NO_CACHE)

    async def asset(name: str) -> Response:
        path, media_type = ASSETS.get(name, (None, ""))
        if path is None or not path.is_file():
            raise NotFound(f"No documentation asset {name}.")
        return FileResponse(path, media_type=media_type, headers=NO_CACHE)

    app.add_api_route("/docs", page, methods=["GET"], include_in_schema=False)
    app.add_api_route("/docs/assets/{name}", asset, methods=["GET"], include_in_schema=False)
