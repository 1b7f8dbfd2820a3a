"""The admin console in a real Chromium against the running system: a reconciliation that finds seeded
mismatches (the chart, a mismatch's detail, its audited repair), locking and unlocking a user, and the audit
log's filters and pager."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest
from playwright.sync_api import expect

from shared.db import unit_of_work
from shared.ids import new_id
from shared.models import Order
from tests.browser.server import ADMIN_EMAIL, ADMIN_PASSWORD, RunningSystem
from tests.browser.test_web import PASSWORD, login_in_ui, new_email, seed_unjournaled_balance, shot

pytestmark = pytest.mark.browser


@pytest.fixture
def testnet_sweep_paused(system: RunningSystem) -> Iterator[None]:
    """The worker sweeps testnet orders whose command never came after 30 s, before a report (60 s) calls them
    stuck; a report finds one when no worker swept it (none held the paper lease, say): that is the case here."""
    worker = system.app.state.system.worker
    before = worker.testnet_sweep_after_s
    worker.testnet_sweep_after_s = 24 * 3600.0
    try:
        yield
    finally:
        worker.testnet_sweep_after_s = before


def seed_stuck_order(system: RunningSystem) -> str:
    """A testnet order accepted five minutes ago whose command never reached the worker: `order_stuck`, whose
    repair republishes the command."""
    r = httpx.post(f"{system.url}/auth/register", json={"email": new_email(), "password": PASSWORD})
    assert r.status_code == 201, r.text
    user_id = str(r.json()["id"])
    order_id = new_id()

    async def seed(rt: Any) -> None:
        old = rt.clock.now() - timedelta(minutes=5)
        async with unit_of_work(rt.sessions) as s:
            s.add(
                Order(
                    id=order_id,
                    user_id=user_id,
                    request_hash="seeded",
                    mode="testnet",
                    symbol="BTCUSDT",
                    side="BUY",
                    type="LIMIT",
                    time_in_force="GTC",
                    quantity=Decimal("0.01"),
                    price=Decimal("50000"),
                    status="PENDING",
                    created_at=old,
                    updated_at=old,
                )
            )

    system.call(seed)
    return order_id


def open_admin(page: Any) -> None:
    login_in_ui(page, ADMIN_EMAIL, ADMIN_PASSWORD)
    page.get_by_role("link", name="Admin").click()
    expect(page).to_have_url(re.compile(r"/admin$"))


def test_a_reconciliation_shows_a_seeded_mismatch_its_detail_and_its_audited_repair(
    page: Any, system: RunningSystem, testnet_sweep_paused: None
) -> None:
    trader_id = seed_unjournaled_balance(system)
    order_id = seed_stuck_order(system)
    open_admin(page)

    page.get_by_role("button", name="Run reconciliation now").click()
    heading = page.locator("#report-detail h2")
    expect(heading).to_have_text(re.compile(r"^Report \S+$"))
    report_id = heading.inner_text().removeprefix("Report ")
    expect(page.locator(f'#reports-body tr[data-report-id="{report_id}"]')).to_have_attribute(
        "data-status", "done", timeout=30_000
    )

    # The chart has a bar for the run, as tall as its count.
    bar = page.locator(f'#mismatch-chart .bar[data-report-id="{report_id}"]')
    expect(bar).to_have_class(re.compile(r"\bbar-bad\b"))
    count = int(bar.get_attribute("data-count") or "0")
    assert count >= 2
    expect(page.locator("#mismatch-chart .bars")).to_have_attribute(
        "aria-label", re.compile(rf"latest {count}\.")
    )
    expect(page.locator("#report-detail h3").first).to_have_text(f"Mismatches ({count})")

    drift = page.locator("#mismatches tr.mismatch[data-kind=balance_journal_mismatch]", has_text=trader_id)
    expect(drift).to_contain_text("5/0")
    drift.get_by_role("button", name=re.compile(r"^Details of mismatch")).click()
    detail = page.locator("#mismatch-detail")
    expect(detail).to_be_focused()
    expect(detail).to_contain_text("balance_journal_mismatch")
    expect(detail.locator("#mismatch-details")).to_contain_text("free")
    expect(detail.locator("#mismatch-no-repair")).to_be_visible()

    stuck = page.locator("#mismatches tr.mismatch[data-kind=order_stuck]", has_text="testnet")
    expect(stuck).to_have_count(1)
    mismatch_id = stuck.get_attribute("data-mismatch-id")
    stuck.get_by_role("button", name=f"Details of mismatch {mismatch_id}").click()
    expect(detail.locator("h3")).to_have_text(f"Mismatch {mismatch_id}")
    expect(detail).to_contain_text(order_id)
    expect(detail.locator("#mismatch-details")).to_contain_text("age s")
    shot(page, "admin_mismatch_detail")
    detail.get_by_role("button", name="Repair: republish").click()
    expect(detail.locator("#mismatch-repaired")).to_contain_text("Repaired")
    expect(stuck).to_contain_text("repaired")

    # The repair is in the audit log, by this admin, naming the mismatch.
    page.get_by_label("Action or prefix").fill("reconciliation.repair")
    page.locator("#audit-filter").get_by_role("button", name="Apply").click()
    repaired = page.locator(
        "#audit-body tr[data-action='reconciliation.repair']", has_text=f"{report_id}/{mismatch_id}"
    )
    expect(repaired).to_have_count(1)
    expect(repaired).to_contain_text(ADMIN_EMAIL)
    shot(page, "admin_reconciliation_repaired")


def test_an_admin_locks_and_unlocks_a_user(page: Any, system: RunningSystem) -> None:
    email = f"lock-{uuid.uuid4().hex[:10]}@example.com"
    r = httpx.post(f"{system.url}/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text

    def login_status() -> int:
        return httpx.post(f"{system.url}/auth/login", json={"email": email, "password": PASSWORD}).status_code

    assert login_status() == 200
    open_admin(page)
    page.get_by_label("Search (email or user id)").fill(email)
    page.get_by_label("Search (email or user id)").press("Enter")
    row = page.locator("#users-body tr", has_text=email)
    expect(page.locator("#users-body tr")).to_have_count(1)
    expect(row).to_have_attribute("data-status", "active")
    expect(row.locator("td").nth(3)).to_have_text(re.compile(r"\d"))  # the last login just made, not "never"
    expect(row.locator("td").nth(2)).to_have_text("paper")  # the user's mode, and a filter on it
    page.get_by_label("Mode", exact=True).select_option("testnet")
    page.locator("#users-filter").get_by_role("button", name="Search").click()
    expect(page.locator("#users-body")).to_contain_text("No users match.")
    page.get_by_label("Mode", exact=True).select_option("paper")
    page.locator("#users-filter").get_by_role("button", name="Search").click()
    expect(page.locator("#users-body tr")).to_have_count(1)
    expect(row).to_have_attribute("data-status", "active")

    row.get_by_role("button", name=f"Lock {email}").click()
    expect(row).to_have_attribute("data-status", "locked")
    expect(row).to_contain_text("since")
    assert login_status() == 401

    page.get_by_label("Status").select_option("locked")
    page.locator("#users-filter").get_by_role("button", name="Search").click()
    expect(page.locator("#users-body tr")).to_have_count(1)
    row.get_by_role("button", name=f"Unlock {email}").click()
    expect(page.locator("#users-body")).to_contain_text("No users match.")  # no longer locked
    assert login_status() == 200

    # An admin's own row has no lock button.
    page.get_by_label("Search (email or user id)").fill(ADMIN_EMAIL)
    page.get_by_label("Status").select_option("")
    page.locator("#users-filter").get_by_role("button", name="Search").click()
    mine = page.locator("#users-body tr", has_text=ADMIN_EMAIL)
    expect(mine).to_contain_text("you")
    expect(mine.get_by_role("button")).to_have_count(0)

    page.get_by_label("Actor (email or user id)").fill(ADMIN_EMAIL)
    page.get_by_label("Action or prefix").fill("admin.user_")
    page.get_by_label("Action or prefix").press("Enter")
    expect(page.locator("#audit-body")).to_contain_text("No entries match.")  # no action, no dotted prefix
    page.get_by_label("Action or prefix").fill("admin")
    page.get_by_label("Action or prefix").press("Enter")
    for action in ("admin.user_lock", "admin.user_unlock"):
        expect(page.locator(f"#audit-body tr[data-action='{action}']", has_text=email)).to_have_count(1)


def test_the_audit_log_filters_by_actor_action_and_time_and_pages(page: Any, system: RunningSystem) -> None:
    email = f"audit-{uuid.uuid4().hex[:10]}@example.com"
    r = httpx.post(f"{system.url}/auth/register", json={"email": email, "password": PASSWORD})
    assert r.status_code == 201, r.text
    for _ in range(22):
        bad = httpx.post(f"{system.url}/auth/login", json={"email": email, "password": "not the password"})
        assert bad.status_code == 401

    open_admin(page)
    page.get_by_label("Actor (email or user id)").fill(email)
    page.get_by_label("Action or prefix").fill("auth.login_failed")
    page.locator("#audit-filter").get_by_role("button", name="Apply").click()
    rows = page.locator("#audit-body tr")
    expect(page.locator("#audit-pager-info")).to_have_text("1\u201320 of 22")
    expect(rows).to_have_count(20)
    expect(page.locator("#audit-body tr[data-action='auth.login_failed']")).to_have_count(20)
    page.get_by_role("button", name="Next page of the audit log").click()
    expect(page.locator("#audit-pager-info")).to_have_text("21\u201322 of 22")
    expect(rows).to_have_count(2)
    expect(page.get_by_role("button", name="Next page of the audit log")).to_be_disabled()

    page.get_by_label("Action or prefix").fill("user")
    page.locator("#audit-filter").get_by_role("button", name="Apply").click()
    expect(page.locator("#audit-body tr[data-action='user.register']")).to_have_count(1)
    expect(rows).to_have_count(1)

    # A range in the future holds nothing; one that ends before it starts is refused in plain words.
    page.get_by_label("Action or prefix").fill("")
    page.get_by_label("From").fill("2099-01-01T00:00:00")
    page.locator("#audit-filter").get_by_role("button", name="Apply").click()
    expect(page.locator("#audit-body")).to_contain_text("No entries match.")
    page.get_by_label("Until").fill("2098-01-01T00:00:00")
    page.locator("#audit-filter").get_by_role("button", name="Apply").click()
    expect(page.locator("#audit-error")).to_contain_text("since must be before until")
    page.get_by_label("From").fill("")
    page.get_by_label("Until").fill("")
    page.locator("#audit-filter").get_by_role("button", name="Apply").click()
    expect(page.locator("#audit-pager-info")).to_have_text("1\u201320 of 23")
    shot(page, "admin_audit_log")
