"""Paper reconciliation end to end: a clean system, each kind of drift reported once, a repair, 403s."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import delete, select
from sqlmodel import col

from shared.db import unit_of_work
from shared.ledger_store import SqlLedger
from shared.models import AuditLog, Fill, ProcessedCommand
from shared.paper.ledger import reserve_entry
from shared.streams import order_command
from tests.reconciliation.conftest import (
    admin_auth,
    force_postings,
    get_order,
    insert_order,
    kinds,
    only,
    run_report,
    set_balance,
)
from tests.support.api import Api
from tests.support.eventually import eventually


async def order(api: Api, auth: dict[str, str], **body: Any) -> str:
    r = await api.client.post("/api/orders", json={"symbol": "BTCUSDT", **body}, headers=auth)
    assert r.status_code == 202, r.text
    return str(r.json()["order_id"])


async def status_is(api: Api, auth: dict[str, str], order_id: str, status: str) -> dict[str, Any] | None:
    o = (await api.client.get(f"/api/orders/{order_id}", headers=auth)).json()
    return o if o["status"] == status else None


async def trade(api: Api) -> dict[str, Any]:
    """Two users trade: a partially filled resting sell, a filled market buy, a resting buy."""
    seller = await api.user("seller@example.com")
    buyer = await api.user("buyer@example.com")
    sell = await order(api, seller, side="SELL", type="LIMIT", quantity="0.01", price="60000")
    await eventually(lambda: status_is(api, seller, sell, "NEW"))
    buy = await order(api, buyer, side="BUY", type="MARKET", quantity="0.004")
    await eventually(lambda: status_is(api, buyer, buy, "FILLED"))
    rest = await order(api, buyer, side="BUY", type="LIMIT", quantity="0.002", price="59000")
    await eventually(lambda: status_is(api, buyer, rest, "NEW"))
    me = {
        "seller": (await api.client.get("/api/me", headers=seller)).json()["id"],
        "buyer": (await api.client.get("/api/me", headers=buyer)).json()["id"],
    }
    return {"seller": seller, "buyer": buyer, "sell": sell, "buy": buy, "rest": rest, "ids": me}


async def test_clean_system_then_every_paper_drift_once(recon: Api) -> None:
    api = recon
    t = await trade(api)
    admin = await admin_auth(api)

    clean = await run_report(api, admin)
    assert clean["mismatch_count"] == 0, clean["mismatches"]
    assert clean["mismatches"] == [] and clean["summary"]["mismatches"] == 0
    names = {c["name"]: c for c in clean["summary"]["checks"]}
    assert names["locked_vs_open_orders"]["checked"] >= 2 and names["paper_fills_two_sided"]["checked"] == 1
    assert names["books_vs_database"]["checked"] == 2 and not names["books_vs_database"]["skipped"]
    assert clean["trigger"] == "api" and clean["requested_by"]

    # Non-admins: 403 everywhere.
    user = t["buyer"]
    rid = clean["id"]
    assert (await api.client.post("/api/admin/reconciliation", headers=user)).status_code == 403
    assert (await api.client.get("/api/admin/reconciliation", headers=user)).status_code == 403
    assert (await api.client.get(f"/api/admin/reconciliation/{rid}", headers=user)).status_code == 403
    r = await api.client.post(
        f"/api/admin/reconciliation/{rid}/repair", json={"kinds": ["order_stuck"]}, headers=user
    )
    assert r.status_code == 403
    assert (await api.client.get("/api/admin/reconciliation")).status_code == 401

    seller, buyer = t["ids"]["seller"], t["ids"]["buyer"]
    third = await api.user("third@example.com")
    tid = await order(
        api, third, side="BUY", type="LIMIT", quantity="0.001", price="10000"
    )  # funds the account
    await eventually(lambda: status_is(api, third, tid, "NEW"))
    third_id = (await api.client.get("/api/me", headers=third)).json()["id"]

    # 1. a balance row edited behind the journal's back
    await set_balance(api, seller, "USDT", free=Decimal("10244.76"))  # was 10239.76
    # 2. a negative balance, with its postings (so it is that and nothing else)
    await force_postings(
        api, [(buyer, "BTC", "free", Decimal("-1.5")), (third_id, "BTC", "free", Decimal("1.5"))]
    )
    # 3. funds locked for no order
    await force_postings(
        api, [(third_id, "USDT", "free", Decimal("-1")), (third_id, "USDT", "locked", Decimal("1"))]
    )
    # 4. one side of a user-vs-user trade lost
    async with unit_of_work(api.parts.sessions) as s:
        await s.execute(delete(Fill).where(Fill.order_id == t["sell"]))
    # 5. the in-memory book lost a resting order
    api.system.worker.paper.exchange.cancel(t["rest"])

    report = await run_report(api, admin)
    assert kinds(report) == {
        "balance_journal_mismatch": 1,
        "ledger_total_mismatch": 1,
        "negative_balance": 1,
        "locked_mismatch": 1,
        "fill_unpaired": 1,
        "filled_quantity_mismatch": 1,
        "position_mismatch": 1,
        "book_missing_order": 1,
    }, report["mismatches"]
    m = only(report, "balance_journal_mismatch")
    assert (m["user_id"], m["asset"], m["tradebridge_value"], m["reference_value"]) == (
        seller,
        "USDT",
        "10244.76/0",
        "10239.76/0",
    )
    m = only(report, "ledger_total_mismatch")
    assert m["asset"] == "USDT" and m["tradebridge_value"] == "30005"
    m = only(report, "negative_balance")
    assert (m["user_id"], m["asset"], m["tradebridge_value"]) == (buyer, "BTC", "-0.496/0")
    m = only(report, "locked_mismatch")
    assert (m["user_id"], m["asset"], m["tradebridge_value"], m["reference_value"]) == (
        third_id,
        "USDT",
        "11.01",
        "10.01",
    )
    m = only(report, "fill_unpaired")
    assert (m["order_id"], m["tradebridge_value"], m["reference_value"]) == (t["buy"], "TAKER", "MAKER")
    m = only(report, "filled_quantity_mismatch")
    assert (m["order_id"], m["tradebridge_value"], m["reference_value"]) == (t["sell"], "0.004", "0")
    m = only(report, "book_missing_order")
    assert (m["order_id"], m["user_id"]) == (t["rest"], buyer)
    assert m["repair"] is None and "restart" in m["action"]

    # CSV and HTML views of the same report
    r = await api.client.get(f"/api/admin/reconciliation/{report['id']}?format=csv", headers=admin)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert lines[0].startswith("id,kind,scope") and len(lines) == 1 + report["mismatch_count"]
    r = await api.client.get(f"/api/admin/reconciliation/{report['id']}?format=html", headers=admin)
    assert r.status_code == 200 and "book_missing_order" in r.text and "<table>" in r.text

    # The list, newest first; the metrics gauge follows the latest report.
    listed = (await api.client.get("/api/admin/reconciliation", headers=admin)).json()
    assert [x["id"] for x in listed] == [report["id"], clean["id"]]
    metrics = (await api.client.get("/metrics")).text
    assert 'tradebridge_reconciliation_mismatches{kind="negative_balance"} 1.0' in metrics
    assert 'tradebridge_reconciliation_mismatches{kind="order_stuck"} 0.0' in metrics

    # Ledger kinds have no automatic repair: asked anyway, they are skipped with the reason.
    r = await api.client.post(
        f"/api/admin/reconciliation/{report['id']}/repair",
        json={"kinds": ["negative_balance"]},
        headers=admin,
    )
    assert (
        r.status_code == 200
        and r.json()["repaired"] == []
        and "no automatic repair" in r.json()["skipped"][0]["reason"]
    )


async def test_stuck_order_is_repaired_by_republishing(recon: Api) -> None:
    api = recon
    auth = await api.user("stuck@example.com")
    first = await order(
        api, auth, side="BUY", type="LIMIT", quantity="0.001", price="50000"
    )  # funds the account
    await eventually(lambda: status_is(api, auth, first, "NEW"))
    user_id = (await api.client.get("/api/me", headers=auth)).json()["id"]
    # The worker's own sweep would hand it the order below within seconds (before the report, or not): a
    # stuck order outlives only a worker that does not sweep, so this one does not.
    for worker in api.system.workers:
        worker.sweep_interval_s = float("inf")
    # An order accepted (and reserved) whose command never reached the worker, five minutes ago.
    old = api.parts.clock.now() - timedelta(minutes=5)
    oid = await insert_order(
        api,
        user_id,
        mode="paper",
        status="PENDING",
        created_at=old,
        updated_at=old,
        reserved_asset="USDT",
        reserved_amount=Decimal("100.1"),
        reserved_price_cap=Decimal("50000"),
        quantity=Decimal("0.002"),
    )
    async with unit_of_work(api.parts.sessions) as s:
        await SqlLedger(s, api.parts.clock).apply([reserve_entry(user_id, "USDT", Decimal("100.1"), oid)])

    admin = await admin_auth(api)
    report = await run_report(api, admin)
    assert kinds(report) == {"order_stuck": 1}, report["mismatches"]
    m = only(report, "order_stuck")
    assert (m["order_id"], m["tradebridge_value"], m["repair"]) == (oid, "PENDING", "republish")

    r = await api.client.post(
        f"/api/admin/reconciliation/{report['id']}/repair", json={"mismatch_ids": [m["id"]]}, headers=admin
    )
    assert r.status_code == 200, r.text
    assert r.json()["repaired"] == [m["id"]] and r.json()["skipped"] == []
    await eventually(lambda: status_is(api, auth, oid, "NEW"))
    # The re-sent command is a new command (its tag), built like every other command by shared.streams.
    async with unit_of_work(api.parts.sessions) as s:
        processed = set((await s.execute(select(col(ProcessedCommand.command_id)))).scalars())
    command = order_command("place", oid, "paper", tag=f"recon-{m['id']}")
    assert command["command_id"] == f"{oid}:place:recon-{m['id']}" and command["command_id"] in processed

    again = await api.client.post(
        f"/api/admin/reconciliation/{report['id']}/repair", json={"mismatch_ids": [m["id"]]}, headers=admin
    )
    assert again.json()["skipped"] == [{"id": m["id"], "reason": "already repaired"}]
    stored = (await api.client.get(f"/api/admin/reconciliation/{report['id']}", headers=admin)).json()
    assert stored["mismatches"][0]["repaired_by"] is not None and stored["mismatches"][0]["repaired_at"]
    async with unit_of_work(api.parts.sessions) as s:
        audits = list(
            (
                await s.execute(select(AuditLog).where(col(AuditLog.action) == "reconciliation.repair"))
            ).scalars()
        )
    assert len(audits) == 1 and audits[0].target == f"{report['id']}/{m['id']}"
    assert (
        audits[0].actor_id == stored["mismatches"][0]["repaired_by"] and audits[0].details["order_id"] == oid
    )

    after = await run_report(api, admin)
    assert after["mismatch_count"] == 0, after["mismatches"]
    assert (await get_order(api, oid)).status == "NEW"
