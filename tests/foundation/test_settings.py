"""Settings and start-up secrets."""

from __future__ import annotations

import json
import stat
from decimal import Decimal
from pathlib import Path

import pytest

from shared.secrets import ConfigError, resolve_secrets
from shared.settings import Settings


def test_contract_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "DATABASE_URL",
        "REDIS_URL",
        "SYMBOLS",
        "PAPER_STARTING_BALANCES",
        "PAPER_MARKET_MAKER",
        "PORT",
    ):
        monkeypatch.delenv(var, raising=False)
    s = Settings(_env_file=None)
    assert s.database_url == "sqlite+aiosqlite:///./tradebridge.db"
    assert s.redis_url is None
    assert s.symbols == ["BTCUSDT", "ETHUSDT", "BNBUSDT"]
    assert s.paper_starting_balances == {"USDT": Decimal("10000")}
    assert s.market_maker_enabled and s.pricefeed_source == "synthetic"
    assert (s.host, s.port) == ("127.0.0.1", 8000)


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYMBOLS", "btc/usdt, ethusdt")
    monkeypatch.setenv("PAPER_STARTING_BALANCES", "USDT=500.5,btc=0.1")
    monkeypatch.setenv("PAPER_MARKET_MAKER", "off")
    monkeypatch.setenv("CORS_ORIGINS", "http://a.example,http://b.example")
    s = Settings(_env_file=None)
    assert s.symbols == ["BTCUSDT", "ETHUSDT"]
    assert s.paper_starting_balances == {"USDT": Decimal("500.5"), "BTC": Decimal("0.1")}
    assert not s.market_maker_enabled
    assert s.cors_origins == ["http://a.example", "http://b.example"]


def test_bad_balances_are_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAPER_STARTING_BALANCES", "USDT=lots")
    with pytest.raises(ValueError, match="PAPER_STARTING_BALANCES"):
        Settings(_env_file=None)


def test_development_generates_secrets_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.delenv("KEY_ENCRYPTION_KEYS", raising=False)
    path = tmp_path / "secrets.json"
    s = Settings(_env_file=None, secrets_file=path)
    first = resolve_secrets(s)
    assert first.jwt_secret and first.key_encryption_keys
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = resolve_secrets(Settings(_env_file=None, secrets_file=path))
    assert again == first
    assert json.loads(path.read_text())["JWT_SECRET"] == first.jwt_secret
    assert "redacted" in repr(first) and first.jwt_secret not in repr(first)


def test_production_refuses_to_start_without_secrets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JWT_SECRET", raising=False)
    monkeypatch.delenv("KEY_ENCRYPTION_KEYS", raising=False)
    s = Settings(_env_file=None, tradebridge_env="production", secrets_file=tmp_path / "s.json")
    with pytest.raises(ConfigError, match="JWT_SECRET and KEY_ENCRYPTION_KEYS must be set"):
        resolve_secrets(s)
    assert not (tmp_path / "s.json").exists()


def test_test_settings_reach_no_real_exchange() -> None:
    """The settings' defaults point at the public Binance testnet; every URL of the tests' own settings
    must be local, or a test on a machine with internet would open connections to it."""
    from urllib.parse import urlsplit

    from tests.support.api import make_settings

    settings = make_settings("sqlite+aiosqlite:///:memory:")
    urls = {
        name: value
        for name, value in settings.model_dump().items()
        if isinstance(value, str) and "://" in value and not name.startswith("database")
    }
    assert "binance_testnet_ws_url" in urls
    assert {name: urlsplit(u).hostname for name, u in urls.items() if u} == {
        name: "127.0.0.1" for name, u in urls.items() if u
    }
