"""MARKET_RULES and PAPER_MARKET_MAKER_FUNDING: any SYMBOLS with their rules from configuration, checked at
start with a message naming the symbol and the field; `tradebridge up` without them stops with one clear
configuration error, not a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from shared.paper.rules import build_rules
from shared.settings import Settings

CLI = [sys.executable, "-m", "tradebridge.cli"]


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for var in ("SYMBOLS", "MARKET_RULES", "PAPER_MARKET_MAKER_FUNDING"):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    return Settings(_env_file=None)


def test_builtin_markets_keep_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    s = _settings(monkeypatch)
    assert s.market_rules == {}
    rules = build_rules(s.symbols, s.market_rules)
    assert [(r.symbol, r.tick_size, r.step_size, r.min_qty, r.min_notional) for r in rules.values()] == [
        ("BTCUSDT", Decimal("0.01"), Decimal("0.00001"), Decimal("0.00001"), Decimal("5")),
        ("ETHUSDT", Decimal("0.01"), Decimal("0.0001"), Decimal("0.0001"), Decimal("5")),
        ("BNBUSDT", Decimal("0.1"), Decimal("0.001"), Decimal("0.001"), Decimal("5")),
    ]
    assert s.paper_market_maker_funding == {
        "USDT": Decimal("50000000"),
        "BTC": Decimal("500"),
        "ETH": Decimal("10000"),
        "BNB": Decimal("50000"),
    }


def test_any_symbol_with_configured_rules(monkeypatch: pytest.MonkeyPatch) -> None:
    rules = {
        "sol/usdt": {"tick_size": "0.01", "step_size": "0.001", "min_notional": "5"},
        "BTCUSDT": {"min_notional": "10"},  # a built-in market: only the fields given change
        "WIDGETXYZ": {
            "tick_size": "0.5",
            "step_size": "1",
            "min_notional": "1",
            "base_asset": "widget",
            "quote_asset": "xyz",
        },
    }
    s = _settings(
        monkeypatch,
        SYMBOLS="BTCUSDT,SOLUSDT,WIDGETXYZ",
        MARKET_RULES=json.dumps(rules),
        PAPER_MARKET_MAKER_FUNDING="sol=100, USDT=10000000",
    )
    built = build_rules(s.symbols, s.market_rules)
    sol, btc, widget = built["SOLUSDT"], built["BTCUSDT"], built["WIDGETXYZ"]
    assert (sol.base_asset, sol.quote_asset, sol.tick_size, sol.step_size, sol.min_qty, sol.min_notional) == (
        "SOL",
        "USDT",
        Decimal("0.01"),
        Decimal("0.001"),
        Decimal("0.001"),
        Decimal("5"),
    )
    assert (btc.tick_size, btc.min_notional) == (Decimal("0.01"), Decimal("10"))
    assert (widget.base_asset, widget.quote_asset) == ("WIDGET", "XYZ")
    assert s.paper_market_maker_funding == {"SOL": Decimal("100"), "USDT": Decimal("10000000")}


@pytest.mark.parametrize(
    ("env", "needles"),
    [
        ({"SYMBOLS": "BTCUSDT,SOLUSDT"}, ["SOLUSDT", "not a built-in market", "MARKET_RULES has no entry"]),
        (
            {"SYMBOLS": "SOLUSDT", "MARKET_RULES": '{"SOLUSDT": {"tick_size": "0.01", "min_notional": "5"}}'},
            ["SOLUSDT", "lacks step_size"],
        ),
        (
            {"SYMBOLS": "BTCUSDT", "MARKET_RULES": '{"BTCUSDT": {"tick_size": "fine"}}'},
            ["MARKET_RULES.BTCUSDT.tick_size"],
        ),
        (
            {"SYMBOLS": "BTCUSDT", "MARKET_RULES": '{"BTCUSDT": {"tick_size": "0"}}'},
            ["BTCUSDT.tick_size", "positive"],
        ),
        ({"SYMBOLS": "BTCUSDT", "MARKET_RULES": '{"BTCUSDT": {"tick": "0.1"}}'}, ["unknown field 'tick'"]),
        ({"MARKET_RULES": "SOLUSDT=0.01"}, ["MARKET_RULES is not valid JSON"]),
        (
            {
                "SYMBOLS": "ABCDEF",
                "MARKET_RULES": '{"ABCDEF": {"tick_size": "1", "step_size": "1", "min_notional": "1"}}',
            },
            ["ABCDEF", "base_asset and quote_asset"],
        ),
        ({"PAPER_MARKET_MAKER_FUNDING": "SOL=lots"}, ["PAPER_MARKET_MAKER_FUNDING"]),
    ],
)
def test_bad_market_configuration_names_the_symbol_and_field(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], needles: list[str]
) -> None:
    with pytest.raises(ValueError) as exc:
        _settings(monkeypatch, **env)
    for needle in needles:
        assert needle in str(exc.value)


def test_up_without_the_rules_of_a_symbol_is_a_clear_configuration_error(tmp_path: Path) -> None:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_", "MARKET_", "SYMBOLS"))
    }
    env.update(SYMBOLS="BTCUSDT,SOLUSDT", DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}")
    out = subprocess.run(
        [*CLI, "up", "--port", "9"], capture_output=True, text=True, timeout=60, env=env, cwd=tmp_path
    )
    assert out.returncode == 2, out.stderr
    assert "configuration error" in out.stderr and "SOLUSDT" in out.stderr and "MARKET_RULES" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "tb.db").exists()  # stopped before touching anything
