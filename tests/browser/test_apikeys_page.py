"""Account → API keys in a real browser: a key is created with its secret shown once, listed by hint, and
revoked; the key it showed signs requests to the Binance-compatible API until then."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from tests.browser.server import RunningSystem
from tests.browser.test_web import register_in_ui

pytestmark = pytest.mark.browser


def _account_status(base: str, api_key: str, secret: str) -> int:
    query = f"timestamp={int(time.time() * 1000)}"
    sig = hmac.new(secret.encode(), query.encode(), hashlib.sha256).hexdigest()
    r = httpx.get(f"{base}/binance/api/v3/account?{query}&signature={sig}", headers={"X-MBX-APIKEY": api_key})
    return r.status_code


def test_api_keys_created_shown_once_and_revoked(page: Any, system: RunningSystem) -> None:
    register_in_ui(page, f"keys-{uuid.uuid4().hex[:10]}@example.com")
    page.get_by_role("link", name="Account").click()
    page.locator("#apikeys-form").get_by_label("Label").fill("my bot")
    page.locator("#apikeys-form").get_by_label("Trade").uncheck()
    page.get_by_role("button", name="Create API key").click()

    api_key = page.locator("#apikeys-new-key")
    expect(api_key).to_be_visible(timeout=15_000)
    key, secret = api_key.inner_text(), page.locator("#apikeys-new-secret").inner_text()
    assert len(key) == 64 and len(secret) == 64
    listed = page.locator("#apikeys-list .key-hint")
    expect(listed).to_contain_text("my bot ****" + key[-4:] + " · read ·")
    assert _account_status(system.url, key, secret) == 200

    page.get_by_role("button", name="Done").click()
    assert secret not in page.content()
    page.get_by_role("button", name=f"Revoke API key ****{key[-4:]}").click()
    expect(page.locator("#apikeys-list")).to_contain_text("No API keys.")
    assert _account_status(system.url, key, secret) == 401
