from decimal import Decimal as D

import pytest

from shared.errors import InvalidInput
from shared.paper.rules import DEFAULT_RULES, MarketRules, RuleViolation, build_rules, normalize_symbol


@pytest.mark.parametrize("raw", ["BTCUSDT", "BTC/USDT", "btcusdt", " btc-usdt ", "btc_usdt"])
def test_symbol_normalisation(raw: str) -> None:
    assert normalize_symbol(raw) == "BTCUSDT"


def test_bad_symbol_is_a_rule_violation_on_symbol_field() -> None:
    with pytest.raises(RuleViolation) as e:
        normalize_symbol("BTC USDT!")
    assert e.value.field == "symbol" and e.value.rule == "SYMBOL"


def test_defaults() -> None:
    r = build_rules()
    assert set(r) == {"BTCUSDT", "ETHUSDT", "BNBUSDT"}
    assert r["BTCUSDT"].tick_size == D("0.01") and r["BTCUSDT"].step_size == D("0.00001")
    assert r["ETHUSDT"].step_size == D("0.0001")
    assert r["BNBUSDT"].step_size == D("0.001")
    assert all(x.min_notional == D(5) for x in r.values())
    assert r["BTCUSDT"].base_asset == "BTC" and r["BTCUSDT"].quote_asset == "USDT"


def test_overrides_and_new_symbols() -> None:
    r = build_rules(
        ["btc/usdt", "SOLUSDT"],
        {
            "BTCUSDT": {"tick_size": "0.1"},
            "SOLUSDT": {"tick_size": "0.01", "step_size": "0.01", "min_notional": "5"},
        },
    )
    assert r["BTCUSDT"].tick_size == D("0.1")
    assert DEFAULT_RULES["BTCUSDT"].tick_size == D("0.01")  # defaults untouched
    assert (r["SOLUSDT"].base_asset, r["SOLUSDT"].quote_asset, r["SOLUSDT"].min_qty) == (
        "SOL",
        "USDT",
        D("0.01"),
    )
    with pytest.raises(ValueError):
        build_rules(["XYZUSDT"])


def test_conversions_are_exact() -> None:
    r = DEFAULT_RULES["BTCUSDT"]
    assert r.price_to_ticks(D("65000.01")) == 6500001
    assert r.qty_to_lots(D("0.00123")) == 123
    assert r.ticks_to_price(6500001) == D("65000.01")
    assert r.lots_to_qty(123) == D("0.00123")
    assert r.limit_order(D("100"), D("0.05")) == (10000, 5000)


@pytest.mark.parametrize(
    ("price", "qty", "rule", "field"),
    [
        (D("100.001"), D("1"), "PRICE_FILTER", "price"),
        (D("0"), D("1"), "PRICE_FILTER", "price"),
        (D("-1"), D("1"), "PRICE_FILTER", "price"),
        ("abc", D("1"), "PRICE_FILTER", "price"),
        (D("100"), D("0.000001"), "LOT_SIZE", "quantity"),
        (D("100"), D("0.000015"), "LOT_SIZE", "quantity"),
        (D("100"), D("0"), "LOT_SIZE", "quantity"),
        (D("100"), D("100000"), "LOT_SIZE", "quantity"),
        (D("100"), D("0.04"), "MIN_NOTIONAL", "quantity"),
    ],
)
def test_violations_name_rule_and_field(price: object, qty: D, rule: str, field: str) -> None:
    r = DEFAULT_RULES["BTCUSDT"]
    with pytest.raises(RuleViolation) as e:
        r.limit_order(price, qty)  # type: ignore[arg-type]
    assert isinstance(e.value, InvalidInput) and e.value.status == 422
    assert e.value.rule == rule and e.value.field == field
    assert rule in e.value.detail
    assert e.value.errors is not None
    assert e.value.errors == [{"field": field, "rule": rule, "message": e.value.errors[0]["message"]}]


def test_market_order_notional_uses_reference_price() -> None:
    r = DEFAULT_RULES["BTCUSDT"]
    assert r.market_order(D("0.0001"), None) == 10
    with pytest.raises(RuleViolation, match="MIN_NOTIONAL"):
        r.market_order(D("0.0001"), D("100"))


def test_protection_band() -> None:
    r = MarketRules("XUSD", "X", "USD", D("0.01"), D("1"), D("1"), D("0"), market_protection_pct=D("5"))
    assert r.band_limit_ticks(10000, True) == 10500
    assert r.band_limit_ticks(10000, False) == 9500
    assert r.band_limit_ticks(333, True) == 349  # 349.65 floored: never beyond the band
    assert r.band_limit_ticks(333, False) == 317  # 316.35 ceiled
