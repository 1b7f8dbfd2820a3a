"""Testnet reconciliation against the Binance double: clean, drift made as the exchange, repairs, a reset."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import select, update
from sqlmodel import col

from shared.db import unit_of_work
from shared.models import Fill, Order
from tests.binance_double.server import BinanceDouble
from tests.reconciliation.conftest import admin_auth, get_order, insert_order, kinds, only, run_report
from tests.support.api import Api

DEFAULT_BALANCES = {"USDT": "10000", "BTC": "1"}


async def keyed_user(api: Api, double: BinanceDouble, email: str) -> tuple[str, str]:
    acct = double.state.create_account(DEFAULT_BALANCES)
    user = await api.register(email, binance_api_key=acct.api_key, binance_api_secret=acct.api_secret)
    return str(user["id"]), acct.api_key


async def placed(
    api: Api, double: BinanceDouble, user_id: str, api_key: str, price: str = "50000"
) -> tuple[str, int]:
    """An order TradeBridge placed on the exchange (as the testnet venue records it)."""
    oid = await insert_order(api, user_id, price=Decimal(price))
    ex, _ = double.state.place_order(
        api_key,
        {
            "symbol": "BTCUSDT",
            "side": "BUY",
            "type": "LIMIT",
            "timeInForce": "GTC",
            "quantity": "0.01",
            "price": price,
            "newClientOrderId": oid,
        },
    )
    async with unit_of_work(api.parts.sessions) as s:
        await s.execute(update(Order).where(col(Order.id) == oid).values(venue_order_id=str(ex.order_id)))
    return oid, ex.order_id


async def test_testnet_drift_reported_once_and_repaired(recon: Api, binance_double: BinanceDouble) -> None:
    api, double = recon, binance_double
    user_id, key = await keyed_user(api, double, "tn@example.com")
    o1, v1 = await placed(api, double, user_id, key)
    o2, v2 = await placed(api, double, user_id, key)
    await placed(api, double, user_id, key)
    admin = await admin_auth(api)

    clean = await run_report(api, admin)
    assert clean["mismatch_count"] == 0, clean["mismatches"]
    assert clean["summary"]["testnet_users"] == 1
    assert clean["summary"]["exchange_balances"][user_id]["USDT"] == "10000"

    double.state.expire_order(v1, "CANCELED")  # the exchange cancels on its own
    trade = double.state.fill_order(v2)  # the exchange fills, TradeBridge never heard
    ext = double.state.place_external_order(key, "BTCUSDT", "SELL", "LIMIT", "0.02", "70000")
    ghost = await insert_order(
        api, user_id, venue_order_id="99999999"
    )  # TradeBridge has it, the exchange doesn't

    report = await run_report(api, admin)
    assert kinds(report) == {
        "order_status_drift": 2,
        "order_fill_drift": 1,
        "fill_missing": 1,
        "unknown_exchange_order": 1,
        "exchange_order_missing": 1,
    }, report["mismatches"]
    drifts = {m["order_id"]: m for m in report["mismatches"] if m["kind"] == "order_status_drift"}
    assert (drifts[o1]["tradebridge_value"], drifts[o1]["reference_value"]) == ("NEW", "CANCELED")
    assert (drifts[o2]["tradebridge_value"], drifts[o2]["reference_value"]) == ("NEW", "FILLED")
    m = only(report, "order_fill_drift")
    assert (m["order_id"], m["tradebridge_value"], m["reference_value"]) == (o2, "0", "0.01")
    m = only(report, "fill_missing")
    assert (m["order_id"], m["trade_id"], m["reference_value"]) == (o2, str(trade.trade_id), "0.01@50000")
    m = only(report, "unknown_exchange_order")
    assert m["order_id"] == str(ext.order_id) and m["reference_value"] == "NEW SELL 0.02"
    assert only(report, "exchange_order_missing")["order_id"] == ghost

    r = await api.client.post(
        f"/api/admin/reconciliation/{report['id']}/repair",
        json={
            "kinds": [
                "order_status_drift",
                "order_fill_drift",
                "fill_missing",
                "unknown_exchange_order",
                "exchange_order_missing",
            ]
        },
        headers=admin,
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["repaired"]) == 6 and r.json()["skipped"] == [], r.json()
    assert (await get_order(api, o1)).status == "CANCELED"
    assert (await get_order(api, o2)).status == "FILLED"
    assert (await get_order(api, ghost)).status == "CANCELED"
    async with unit_of_work(api.parts.sessions) as s:
        adopted = (
            await s.execute(select(Order).where(col(Order.venue_order_id) == str(ext.order_id)))
        ).scalar_one()
        fill = (await s.execute(select(Fill).where(col(Fill.order_id) == o2))).scalar_one()
    assert adopted.external and adopted.status == "NEW"
    assert (fill.trade_id, fill.price, fill.fee_asset) == (str(trade.trade_id), Decimal("50000"), "BTC")

    after = await run_report(api, admin)
    assert after["mismatch_count"] == 0, after["mismatches"]

    # Fills that disagree with the exchange: reported, not repaired automatically.
    async with unit_of_work(api.parts.sessions) as s:
        await s.execute(update(Fill).where(col(Fill.order_id) == o2).values(fee=Decimal("0.5")))
        s.add(
            Fill(
                trade_id="424242",
                order_id=o1,
                user_id=user_id,
                mode="testnet",
                symbol="BTCUSDT",
                side="BUY",
                price=Decimal("50000"),
                quantity=Decimal("0.001"),
                quote_quantity=Decimal("50"),
                fee=Decimal(0),
                fee_asset="BTC",
                liquidity="MAKER",
                ts=api.parts.clock.now(),
            )
        )
    fees = await run_report(api, admin)
    # editing fills behind the engine also leaves the position off its fold
    assert kinds(fees) == {"fill_fee_mismatch": 1, "fill_extra": 1, "position_mismatch": 1}, fees[
        "mismatches"
    ]
    m = only(fees, "fill_fee_mismatch")
    assert (
        m["tradebridge_value"] == "0.5 BTC"
        and m["reference_value"] == f"{trade.commission.normalize():f} BTC"
    )
    assert only(fees, "fill_extra")["trade_id"] == "424242"


async def test_testnet_reset_is_one_finding(recon: Api, binance_double: BinanceDouble) -> None:
    api, double = recon, binance_double
    user_id, key = await keyed_user(api, double, "reset@example.com")
    orders = [(await placed(api, double, user_id, key))[0] for _ in range(4)]
    first = orders[0]
    double.state.fill_order(double.state.orders(key)[0].order_id)
    async with unit_of_work(api.parts.sessions) as s:  # TradeBridge saw that fill
        await s.execute(
            update(Order)
            .where(col(Order.id) == first)
            .values(status="FILLED", filled_quantity=Decimal("0.01"))
        )
    admin = await admin_auth(api)

    double.state.wipe()  # Binance resets the testnet
    report = await run_report(api, admin)
    assert kinds(report) == {"testnet_reset": 1}, report["mismatches"]
    m = only(report, "testnet_reset")
    assert m["user_id"] == user_id and m["repair"] == "close_reset"

    r = await api.client.post(
        f"/api/admin/reconciliation/{report['id']}/repair", json={"kinds": ["testnet_reset"]}, headers=admin
    )
    assert r.json()["repaired"] == [m["id"]], r.json()
    assert [(await get_order(api, o)).status for o in orders] == [
        "FILLED",
        "CANCELED",
        "CANCELED",
        "CANCELED",
    ]

    after = await run_report(api, admin)
    assert after["mismatch_count"] == 0, after["mismatches"]
