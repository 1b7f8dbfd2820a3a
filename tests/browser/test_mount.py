"""`mount_web` serves the app shell and assets without shadowing the API (no browser needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.web import CHART_MODULE
from tests.support.api import make_settings, running_api
from tradebridge.app import create_app


@pytest.fixture
async def api(tmp_path: Path):
    settings = make_settings(f"sqlite+aiosqlite:///{tmp_path / 'web.db'}")
    app = create_app(settings, migrate=True)  # mounts the web app last, after every API router

    @app.get("/api/added-after-mount")  # a route added after mount_web stays reachable
    async def added() -> dict[str, bool]:
        return {"ok": True}

    async with running_api(settings, app=app) as running:
        yield running


@pytest.mark.parametrize("path", ["/", "/login", "/trade/BTCUSDT", "/admin", "/account"])
async def test_client_routes_get_the_shell_under_the_strict_csp(api, path: str) -> None:
    r = await api.client.get(path, headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/assets/js/main.js">' in r.text
    assert "script-src 'self';" in r.headers["content-security-policy"]
    assert "<script>" not in r.text  # no inline script: the CSP would block it


async def test_api_prefixes_are_not_shadowed(api) -> None:
    assert (await api.client.get("/healthz")).json() == {"status": "ok"}
    assert (await api.client.get("/api/markets")).status_code == 200
    assert (await api.client.get("/api/added-after-mount")).json() == {"ok": True}
    recon = await api.client.get("/api/admin/reconciliation", headers={"Accept": "text/html"})
    assert recon.status_code == 401 and recon.headers["content-type"].startswith("application/problem+json")
    for path in ("/api/nope", "/auth/nope", "/ws", "/assets/nope.js", "/favicon.ico"):
        r = await api.client.get(path)
        assert r.status_code == 404, path
        assert "<!doctype html>" not in r.text.lower(), path
    assert (await api.client.get("/api/nope")).headers["content-type"].startswith("application/problem+json")
    assert (await api.client.post("/trade/BTCUSDT")).status_code in (404, 405)
    assert (await api.client.get("/metrics")).headers["content-type"].startswith("text/plain")


async def test_modules_and_styles_are_served_with_their_types(api) -> None:
    js = await api.client.get("/assets/js/main.js")
    assert js.status_code == 200
    assert js.headers["content-type"].startswith("text/javascript")
    css = await api.client.get("/assets/app.css")
    assert css.headers["content-type"].startswith("text/css")
    chart = await api.client.get("/assets/vendor/lightweight-charts.mjs")
    if CHART_MODULE.is_file():
        assert chart.status_code == 200
        assert chart.headers["content-type"].startswith("text/javascript")
    else:
        assert chart.status_code == 404


async def test_unknown_paths_are_problem_json_for_api_clients(api) -> None:
    r = await api.client.get("/no/such/route", headers={"Accept": "application/json"})
    assert r.status_code == 404 and r.headers["content-type"].startswith("application/problem+json")
    r = await api.client.get("/no/such/route", headers={"Accept": "text/html"})
    # The app shows its own 404.
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
