"""The one place that builds ccxt's async Binance client for the spot testnet (or a local double).

Order matters: `set_sandbox_mode(True)` REPLACES `client.urls['api']` with a clone of ccxt's own
`urls['test']` table (testnet.binance.vision for spot, testnet.binancefuture.com for futures). Any URL
written before that call is silently thrown away, and the client would talk to the public testnet (or,
offline, fail to resolve it) instead of `base_url`. So: sandbox first, then rewrite. The sandbox flag is
still wanted, because ccxt's binance reads `options['sandboxMode']` (e.g. fetch_markets skips option
markets and margin pairs there).

After the rewrite, `urls['api']` holds ONLY the spot keys below. Everything else (sapi, fapi, dapi, eapi,
papi) is removed on purpose: the testnet has none of those endpoints, and ccxt's `sign()` raises
`NotSupported` for an api key missing from the table, so a stray futures or wallet call fails loudly
here instead of going to a real host.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import urlsplit

import ccxt.async_support as ccxt_async

# ccxt api table keys used for spot, and the REST prefix each one lives under.
SPOT_URL_PATHS: dict[str, str] = {
    "public": "/api/v3",
    "private": "/api/v3",
    "v1": "/api/v1",
}
REWRITTEN_URL_KEYS: frozenset[str] = frozenset(SPOT_URL_PATHS)

DEFAULT_TESTNET_URL = "https://testnet.binance.vision"

_REDACTED = "***"
_SECRET_HEADERS = frozenset({"x-mbx-apikey"})


class _RedactKeysFilter(logging.Filter):
    """ccxt logs request headers at DEBUG (including X-MBX-APIKEY); keys must never reach a log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_redact(arg) for arg in record.args)
        return True


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: (_REDACTED if str(k).lower() in _SECRET_HEADERS else v) for k, v in value.items()}
    return value


def _client_logger() -> logging.Logger:
    logger = logging.getLogger("execution.testnet.ccxt")
    if not any(isinstance(f, _RedactKeysFilter) for f in logger.filters):
        logger.addFilter(_RedactKeysFilter())
    return logger


def _normalise_base_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must be like http://host:port or https://host, got {base_url!r}")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not carry a query or fragment")
    return base_url.rstrip("/")


def make_binance_client(
    api_key: str | None,
    api_secret: str | None,
    *,
    base_url: str,
    timeout_ms: int = 10000,
    enable_rate_limit: bool = True,
) -> ccxt_async.binance:
    """A spot-only ccxt binance client pointed at `base_url` (the testnet or a local double).

    Keys may be None for public-data-only use. The caller owns the client and must `await client.close()`.
    """
    base = _normalise_base_url(base_url)
    config: dict[str, Any] = {
        "timeout": int(timeout_ms),
        "enableRateLimit": bool(enable_rate_limit),
        "logger": _client_logger(),
        "options": {
            "defaultType": "spot",
            # spot only: no futures/options exchangeInfo, no margin pairs, no sapi capital/config call
            "fetchMarkets": {"types": ["spot"]},
            "fetchMargins": False,
            "fetchCurrencies": False,
        },
    }
    if api_key is not None:
        config["apiKey"] = api_key
    if api_secret is not None:
        config["secret"] = api_secret
    client = ccxt_async.binance(config)
    client.set_sandbox_mode(True)  # FIRST: this replaces urls['api'] wholesale
    client.urls["api"] = {key: base + prefix for key, prefix in SPOT_URL_PATHS.items()}  # THEN rewrite
    return client
