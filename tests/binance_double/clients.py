"""The real client libraries, unmodified, pointed at a double: how each one's URLs are set.

python-binance (`AsyncClient`, `BinanceSocketManager`):
    client = AsyncClient(api_key, api_secret)                   # __init__ makes no request (create() would)
    client.API_URL = double.url + "/api"                         # REST: API_URL + "/v3/<path>"
    client.ws_api = WebsocketAPI(url=double.ws_url + "/ws-api/v3")  # WS API, used by user_socket()
    bsm = BinanceSocketManager(client)
    bsm.STREAM_URL = double.ws_url + "/"                         # market streams: STREAM_URL + "ws/<stream>"

ccxt.pro `binance`:
    exchange = ccxt.pro.binance({... spot-only options ...}); exchange.set_sandbox_mode(True)
    exchange.urls["api"] = {"public": url + "/api/v3", "private": url + "/api/v3", "v1": url + "/api/v1",
                            "ws": {"spot": ws_url + "/ws", "margin": ws_url + "/ws",
                                   "ws-api": {"spot": ws_url + "/ws-api/v3"}}}
    (set_sandbox_mode first: it replaces urls["api"] wholesale.) ccxt connects market streams to
    `ws_url/ws/<n>` and SUBSCRIBEs there; watch_orders subscribes with userDataStream.subscribe.signature.

The WebSocket API signature both libraries compute (python-binance: `urlencode` of the sorted params; ccxt:
`rawencode` of them) is the documented one for the subscription's params; see `tests.binance_double.ws`.
"""

from __future__ import annotations

from typing import Any

import ccxt.pro
from binance import AsyncClient, BinanceSocketManager
from binance.ws.websocket_api import WebsocketAPI

from tests.binance_double.server import BinanceDouble
from tests.binance_double.state import Account


def python_binance(
    double: BinanceDouble, account: Account | None = None
) -> tuple[AsyncClient, BinanceSocketManager]:
    """An AsyncClient and a socket manager talking only to `double` (call inside a running event loop)."""
    client = AsyncClient(account.api_key if account else None, account.api_secret if account else None)
    client.API_URL = double.url + "/api"
    client.ws_api = WebsocketAPI(url=double.ws_url + "/ws-api/v3")
    client.ws_api.TIMEOUT = (
        2  # request timeout, and how long close_connection() waits on its read loop (10 s)
    )
    sockets = BinanceSocketManager(client)
    sockets.STREAM_URL = double.ws_url + "/"
    return client, sockets


def ccxt_pro(double: BinanceDouble, account: Account | None = None) -> Any:
    """A ccxt.pro binance client (spot only) whose REST and WebSocket URLs all lead to `double`."""
    config: dict[str, Any] = {
        "enableRateLimit": False,
        "timeout": 5000,
        "options": {
            "defaultType": "spot",
            "fetchMarkets": {"types": ["spot"]},
            "fetchMargins": False,
            "fetchCurrencies": False,
        },
    }
    if account is not None:
        config.update(apiKey=account.api_key, secret=account.api_secret)
    exchange = ccxt.pro.binance(config)
    exchange.set_sandbox_mode(True)
    exchange.urls["api"] = {
        "public": double.url + "/api/v3",
        "private": double.url + "/api/v3",
        "v1": double.url + "/api/v1",
        "ws": {
            "spot": double.ws_url + "/ws",
            "margin": double.ws_url + "/ws",
            "ws-api": {"spot": double.ws_url + "/ws-api/v3"},
        },
    }
    return exchange
