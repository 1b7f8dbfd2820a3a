"""/docs renders Swagger UI from the gateway's own files, offline and under the strict CSP (the `page` fixture
fails the test on any CSP console error)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.server import RunningSystem

pytestmark = pytest.mark.browser


def test_docs_render_the_operations_from_local_assets(page: Any, system: RunningSystem) -> None:
    from playwright.sync_api import expect

    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto("/docs")
    operations = page.locator(".opblock")
    expect(operations.first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/api/orders/{order_id}").first).to_be_visible()
    assert operations.count() >= 25
    assert requested and all(url.startswith(system.url) for url in requested), requested
