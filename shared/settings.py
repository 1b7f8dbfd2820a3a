"""Configuration from the environment (and `.env`), as fixed by the public contract.

Settings are plain data: reading them builds nothing. Secrets that may be generated (JWT_SECRET,
KEY_ENCRYPTION_KEYS) are resolved at start-up by `shared.secrets.resolve_secrets`, not here.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, PositiveInt, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.markets import MarketFields, canonical_symbol, check_markets, parse_market_rules
from shared.streams import USER_STREAM_IDLE_S, CommandRouting

DEFAULT_SQLITE_URL = "sqlite+aiosqlite:///./tradebridge.db"


def _csv(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    database_url: str = DEFAULT_SQLITE_URL
    redis_url: str | None = None
    redis_prefix: str = "tradebridge:"
    jwt_secret: SecretStr | None = None
    key_encryption_keys: SecretStr | None = None
    binance_testnet_url: str = "https://testnet.binance.vision"
    # WebSocket base of the testnet: its WebSocket API (user data stream) is at <base>/ws-api/v3, its market
    # streams at <base>/ws (the public testnet's own stream host when <base> is its ws-api host). Empty: no
    # stream, testnet orders are followed and its market polled over REST only.
    binance_testnet_ws_url: str = "wss://ws-api.testnet.binance.vision"
    # How often testnet orders' rules (tick, step, min/max quantity, min notional) are re-read from the
    # testnet's exchangeInfo; until the first read succeeds they are the configured (paper) rules.
    testnet_markets_refresh_s: float = Field(default=600.0, gt=0)
    pricefeed_source: str = "synthetic"
    symbols_csv: str = Field(default="BTCUSDT,ETHUSDT,BNBUSDT", validation_alias="SYMBOLS")
    # Rules of the SYMBOLS beyond the built-in three (or overrides of theirs): JSON, see shared.markets.
    market_rules_json: str = Field(default="", validation_alias="MARKET_RULES")
    paper_starting_balances_csv: str = Field(default="USDT=10000", validation_alias="PAPER_STARTING_BALANCES")
    paper_market_maker: Literal["on", "off"] = "on"
    # What the paper market maker is funded with, once, per asset (an asset not listed gets 100000).
    paper_market_maker_funding_csv: str = Field(
        default="USDT=50000000,BTC=500,ETH=10000,BNB=50000", validation_alias="PAPER_MARKET_MAKER_FUNDING"
    )
    # Paper execution partitioned by symbol (shared.streams.CommandRouting): the same count in every process
    # (the gateway routes by it); EXECUTION_PARTITION lists the partitions this execution process takes at
    # once (comma-separated; empty: all). It takes the others only when they stay free (their holder is gone).
    execution_partitions: int = Field(default=1, ge=1, le=64)
    execution_partition_csv: str = Field(default="", validation_alias="EXECUTION_PARTITION")
    admin_email: str | None = None
    admin_password: SecretStr | None = None
    cors_origins_csv: str = Field(default="", validation_alias="CORS_ORIGINS")
    tradebridge_env: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)

    # Not in the public contract; sensible defaults, overridable.
    secrets_file: Path = Path(".tradebridge-secrets.json")
    access_token_ttl_s: int = Field(default=900, ge=30)
    refresh_token_ttl_s: int = Field(default=30 * 24 * 3600, ge=60)
    bcrypt_rounds: int = Field(default=12, ge=4, le=16)
    # Login attempts: per account from one address (stops a guesser there, not the owner elsewhere), per
    # address (all accounts), per account from all addresses (well above the first: no single address can
    # lock the owner out).
    login_limit_per_account_address: str = "5/minute"
    login_limit_per_address: str = "30/minute"
    login_limit_per_account: str = "50/minute"
    order_rate_limit: str = "50/second"
    # Request weight per client address on the Binance-compatible API (/binance), as Binance counts it.
    binance_api_weight_limit: str = "6000/minute"
    # Order placements in progress at once per gateway process; past it 503 + Retry-After (load shedding).
    order_max_inflight: int = Field(default=64, ge=1)
    log_level: str = "INFO"
    trusted_proxies: bool = False
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=20, ge=0, le=500)
    db_pool_timeout_s: float = Field(default=5.0, gt=0)
    reconciliation_interval_s: float = Field(default=3600, ge=0)  # 0 turns the schedule off
    # Equity snapshots (the account's value over time): one per paper account every interval and one after
    # each fill; snapshots older than the retention are deleted, so the table stays bounded.
    equity_snapshot_interval_s: float = Field(default=300, gt=0)
    equity_snapshot_retention_days: int = Field(default=30, ge=1)
    # How long the execution worker keeps a command's processed mark (its idempotency record) before its
    # schedule deletes it: far longer than any redelivery (pending entries are claimed after 30 s, the relay
    # republishes after 2 s), and past it the order's own status still stops a second execution.
    processed_commands_retention_s: float = Field(default=24 * 3600, ge=1)
    # Per-stream caps (approximate MAXLEN, entries) over shared.streams.RETENTION's, as JSON by name or
    # "prefix*": '{"orders.commands.*": 100000, "market.*": 5000}'.
    stream_retention: dict[str, PositiveInt] = Field(default_factory=dict)
    # A user's private event stream (what `resume` replays) is deleted once it has had no event for this long, so
    # Redis holds the streams of recently active users, not of every user who ever traded; a client resuming
    # from before that gets RESYNC_REQUIRED. 0: kept for ever (each still capped by STREAM_RETENTION).
    user_stream_idle_s: float = Field(default=USER_STREAM_IDLE_S, ge=0)
    # The outbox relay is woken by every commit that wrote outbox rows; this poll is only its fallback.
    outbox_poll_interval_s: float = Field(default=0.25, gt=0)
    # uvicorn's access log (off: a line per request costs throughput); query strings are redacted either way.
    access_log: bool = False
    # WebSocket limits, per events process (`tradebridge events` or `up`): sockets one user may hold open
    # (past it: close 4429), the largest client message accepted (past it: close 1009), and how long a socket
    # that brought no token may take to send `{"op": "auth"}` (past it: close 4401).
    ws_max_connections_per_user: int = Field(default=32, ge=1)
    ws_max_message_bytes: int = Field(default=64 * 1024, ge=1024)
    ws_auth_timeout_s: float = Field(default=5.0, gt=0)

    @field_validator("paper_market_maker", mode="before")
    @classmethod
    def _on_off(cls, v: object) -> object:
        if isinstance(v, str):
            low = v.strip().lower()
            if low in {"1", "true", "yes", "on"}:
                return "on"
            if low in {"0", "false", "no", "off"}:
                return "off"
        return v

    @field_validator("paper_starting_balances_csv")
    @classmethod
    def _balances_parse(cls, v: str) -> str:
        _parse_balances(v)
        return v

    @field_validator("paper_market_maker_funding_csv")
    @classmethod
    def _funding_parse(cls, v: str) -> str:
        _parse_balances(v, "PAPER_MARKET_MAKER_FUNDING")
        return v

    @field_validator("execution_partition_csv")
    @classmethod
    def _partition_check(cls, v: str, info: ValidationInfo) -> str:
        count = info.data.get("execution_partitions")
        for part in _csv(v):
            if not part.isdigit() or (count is not None and int(part) >= count):
                raise ValueError(
                    f"EXECUTION_PARTITION entry {part!r} is not a partition 0..{(count or 1) - 1}"
                )
        return v

    @field_validator("market_rules_json")
    @classmethod
    def _markets_check(cls, v: str, info: ValidationInfo) -> str:
        """Every symbol traded has its rules (built in or configured): checked here, at start, so a missing
        one is a clear configuration error naming the symbol and the field."""
        symbols = info.data.get("symbols_csv")
        if symbols is not None:
            check_markets(_symbols(symbols), parse_market_rules(v))
        return v

    @cached_property
    def market_rules(self) -> dict[str, MarketFields]:
        """MARKET_RULES parsed: {SYMBOL: {field: value}} (the built-in markets' defaults are not in it)."""
        return parse_market_rules(self.market_rules_json)

    @cached_property
    def paper_market_maker_funding(self) -> dict[str, Decimal]:
        return _parse_balances(self.paper_market_maker_funding_csv, "PAPER_MARKET_MAKER_FUNDING")

    @cached_property
    def command_routing(self) -> CommandRouting:
        """Which stream each order's commands go to (paper: its symbol's partition)."""
        return CommandRouting(tuple(self.symbols), self.execution_partitions)

    @cached_property
    def execution_partition(self) -> frozenset[int]:
        """The partitions this execution process takes at once (all when EXECUTION_PARTITION is empty)."""
        mine = frozenset(int(p) for p in _csv(self.execution_partition_csv))
        return mine or frozenset(range(self.execution_partitions))

    @cached_property
    def symbols(self) -> list[str]:
        return _symbols(self.symbols_csv)

    @cached_property
    def cors_origins(self) -> list[str]:
        return _csv(self.cors_origins_csv)

    @cached_property
    def paper_starting_balances(self) -> dict[str, Decimal]:
        return _parse_balances(self.paper_starting_balances_csv)

    @property
    def is_production(self) -> bool:
        return self.tradebridge_env == "production"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def market_maker_enabled(self) -> bool:
        return self.paper_market_maker == "on"


def _symbols(value: str) -> list[str]:
    return [canonical_symbol(s) for s in _csv(value)]


def _parse_balances(value: str, name: str = "PAPER_STARTING_BALANCES") -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for part in _csv(value):
        asset, sep, amount = part.partition("=")
        if not sep or not asset.strip():
            raise ValueError(f"{name} entry {part!r} is not ASSET=AMOUNT")
        try:
            dec = Decimal(amount.strip())
        except InvalidOperation as exc:
            raise ValueError(f"{name} amount {amount!r} is not a number") from exc
        if not dec.is_finite() or dec < 0:
            raise ValueError(f"{name} amount {amount!r} must be a non-negative number")
        out[asset.strip().upper()] = dec
    return out
