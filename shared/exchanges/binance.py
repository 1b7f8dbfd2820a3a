"""Binance spot (the testnet, a local double, or mainnet public data) through ccxt: the client factory, the one
order/trade parser and status map, and the session every caller goes through.

Client URLs. Order matters: `set_sandbox_mode(True)` REPLACES `client.urls['api']` with a clone of ccxt's own
`urls['test']` table (testnet.binance.vision for spot, testnet.binancefuture.com for futures). Any URL written
before that call is silently thrown away, and the client would talk to the public testnet (or, offline, fail
to resolve it) instead of `base_url`. So: sandbox first, then rewrite. The sandbox flag is still wanted,
because ccxt's binance reads `options['sandboxMode']` (e.g. fetch_markets skips option markets and margin
pairs there). After the rewrite, `urls['api']` holds ONLY the spot keys of SPOT_URL_PATHS. Everything else
(sapi, fapi, dapi, eapi, papi) is removed on purpose: the testnet has none of those endpoints, and ccxt's
`sign()` raises `NotSupported` for an api key missing from the table, so a stray futures or wallet call fails
loudly here instead of going to a real host.

Amounts. Orders, trades and balances are parsed from Binance's raw answers (`info`), whose amounts are exact
strings; ccxt's unified fields are floats and are never used for money.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import ccxt
import ccxt.async_support as ccxt_async
import structlog

from shared.amounts import plain
from shared.exchanges import DEFAULT_TESTNET_URL, DEFAULT_TESTNET_WS_URL
from shared.exchanges.base import (
    ZERO,
    Disposition,
    ErrorKind,
    ExchangeBalance,
    ExchangeCallFailed,
    ExchangeOrder,
    ExchangeTrade,
    Kline,
    MarketFilters,
    ReplaceOutcome,
    SessionOptions,
    StreamOptions,
    Ticker,
    UserStream,
    VenueError,
)
from shared.exchanges.errors import classify
from shared.orders import Status

log = structlog.get_logger(__name__)

# ccxt api table keys used for spot, and the REST prefix each one lives under.
SPOT_URL_PATHS: dict[str, str] = {
    "public": "/api/v3",
    "private": "/api/v3",
    "v1": "/api/v1",
}
REWRITTEN_URL_KEYS: frozenset[str] = frozenset(SPOT_URL_PATHS)
PAGE = 1000  # rows per allOrders/myTrades page (Binance's maximum)

# ---------------------------------------------------------------------------------------------- statuses

# Binance's order statuses (spot API, "ENUM definitions") -> ours. The only status map in the code base.
BINANCE_STATUS: Mapping[str, Status] = {
    "NEW": Status.NEW,
    "PENDING_NEW": Status.NEW,  # an order-list leg waiting for its trigger: accepted, not working yet
    "PARTIALLY_FILLED": Status.PARTIALLY_FILLED,
    "FILLED": Status.FILLED,
    "CANCELED": Status.CANCELED,
    "PENDING_CANCEL": Status.PENDING_CANCEL,  # documented as unused; a cancel under way if it ever appears
    "REJECTED": Status.REJECTED,
    "EXPIRED": Status.EXPIRED,
    "EXPIRED_IN_MATCH": Status.EXPIRED,  # self-trade prevention expired it
}


def map_status(exchange_status: str, filled: Decimal) -> Status:
    """Ours for Binance's `exchange_status`. A status Binance adds later is NOT guessed final: the order is
    treated as still open (NEW, or PARTIALLY_FILLED once something filled), so nothing is released or closed
    on a word we don't know; the raw word stays on the record and a warning is logged."""
    known = BINANCE_STATUS.get(exchange_status)
    if known is not None:
        return known
    log.warning("unknown Binance order status; treated as open", exchange_status=exchange_status)
    return Status.PARTIALLY_FILLED if filled > 0 else Status.NEW


# ---------------------------------------------------------------------------------------------- parsing


def _dec(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value is not None and value != "" else ZERO
    except InvalidOperation:
        return ZERO


def _opt_dec(value: Any) -> Decimal | None:
    """A positive finite price, or None (Binance writes "0.00000000" for 'none')."""
    if value is None or value == "":
        return None
    try:
        d = Decimal(str(value))
    except InvalidOperation:
        return None
    return d if d.is_finite() and d > 0 else None


def _ms(value: Any) -> int | None:
    return int(value) if value not in (None, "", 0) else None


# Binance's stop types: each waits (open, not on the book) until the last price crosses its stopPrice.
STOP_TYPES: frozenset[str] = frozenset({"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"})
LIMIT_PRICED: frozenset[str] = frozenset({"LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"})


def stop_triggered(order_type: str, working_time: Any, is_working: Any) -> bool:
    """Whether a stop order's trigger fired: Binance sets workingTime (-1 while it waits) when it starts
    working; where no workingTime is given, isWorking says it."""
    if order_type.upper() not in STOP_TYPES:
        return False
    if working_time not in (None, ""):
        return int(working_time) >= 0
    return bool(is_working)


def parse_order(info: Mapping[str, Any]) -> ExchangeOrder:
    """A raw Binance order: a new-order (ACK/RESULT/FULL), query, cancel, openOrders or allOrders row."""
    filled = _dec(info.get("executedQty"))
    exchange_status = str(info.get("status", ""))
    venue_order_id = str(info["orderId"])
    symbol = str(info.get("symbol", ""))
    side = str(info.get("side", ""))
    transact_ms = _ms(info.get("transactTime"))
    # A cancel answer's clientOrderId is the cancel request's own; the order's is origClientOrderId.
    cid = info["origClientOrderId"] if "origClientOrderId" in info else info.get("clientOrderId")
    fills = tuple(
        ExchangeTrade(
            trade_id=str(f.get("tradeId")),
            venue_order_id=venue_order_id,
            symbol=symbol,
            side=side,
            price=_dec(f.get("price")),
            quantity=_dec(f.get("qty")),
            quote_quantity=_dec(f.get("price")) * _dec(f.get("qty")),
            fee=_dec(f.get("commission")),
            fee_asset=str(f.get("commissionAsset", "")),
            is_maker=False,  # inline fills of a new order are the order's own taker trades
            time_ms=transact_ms,
        )
        for f in info.get("fills") or ()
    )
    return ExchangeOrder(
        venue_order_id=venue_order_id,
        client_order_id=None if cid in (None, "") else str(cid),
        symbol=symbol,
        side=side,
        type=str(info.get("type", "")),
        time_in_force=str(info.get("timeInForce") or "GTC"),
        status=map_status(exchange_status, filled),
        exchange_status=exchange_status,
        quantity=_dec(info.get("origQty")),
        price=_opt_dec(info.get("price")),
        filled=filled,
        cum_quote=_dec(info.get("cummulativeQuoteQty")),
        time_ms=_ms(info.get("time")) or transact_ms,
        transact_ms=transact_ms,
        fills=fills,
        stop_price=_opt_dec(info.get("stopPrice")),
        triggered=stop_triggered(str(info.get("type", "")), info.get("workingTime"), info.get("isWorking")),
    )


def parse_trade(row: Mapping[str, Any]) -> ExchangeTrade:
    """A raw Binance myTrades row."""
    price, qty = _dec(row.get("price")), _dec(row.get("qty"))
    return ExchangeTrade(
        trade_id=str(row.get("id", row.get("tradeId"))),
        venue_order_id=str(row["orderId"]),
        symbol=str(row.get("symbol", "")),
        side="BUY" if row.get("isBuyer") else "SELL",
        price=price,
        quantity=qty,
        quote_quantity=_dec(row["quoteQty"]) if row.get("quoteQty") is not None else price * qty,
        fee=_dec(row.get("commission")),
        fee_asset=str(row.get("commissionAsset", "")),
        is_maker=bool(row.get("isMaker")),
        time_ms=_ms(row.get("time")),
    )


def parse_balances(account: Mapping[str, Any]) -> list[ExchangeBalance]:
    """Every asset of a raw /api/v3/account answer, zero ones included, sorted by asset."""
    rows = [
        ExchangeBalance(str(b["asset"]), _dec(b.get("free")), _dec(b.get("locked")))
        for b in account.get("balances", [])
    ]
    return sorted(rows, key=lambda b: b.asset)


def parse_ticker(symbol: str, ticker: Mapping[str, Any]) -> Ticker:
    """A ccxt ticker, read from Binance's raw strings (`info`) where present, else ccxt's own fields."""
    info = ticker.get("info")
    raw: Mapping[str, Any] = info if isinstance(info, Mapping) else {}
    return Ticker(
        symbol=symbol,
        last=_opt_dec(raw.get("lastPrice", ticker.get("last"))),
        bid=_opt_dec(raw.get("bidPrice", ticker.get("bid"))),
        ask=_opt_dec(raw.get("askPrice", ticker.get("ask"))),
    )


# ---------------------------------------------------------------------------------------------- client


_REDACTED = "***"
_SECRET_HEADERS = frozenset({"x-mbx-apikey"})
CLIENT_LOGGER = "shared.exchanges.ccxt"


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
    logger = logging.getLogger(CLIENT_LOGGER)
    if not any(isinstance(f, _RedactKeysFilter) for f in logger.filters):
        logger.addFilter(_RedactKeysFilter())
    return logger


def normalise_base_url(base_url: str) -> str:
    """`http(s)://host[:port]`, without a trailing slash or a REST prefix ("/api", "/api/v3")."""
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"base_url must be like http://host:port or https://host, got {base_url!r}")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not carry a query or fragment")
    base = base_url.rstrip("/")
    for suffix in ("/api/v3", "/api"):
        base = base.removesuffix(suffix)
    return base


def make_binance_client(
    api_key: str | None,
    api_secret: str | None,
    *,
    base_url: str | None,
    timeout_ms: int = 10_000,
    enable_rate_limit: bool = True,
) -> ccxt_async.binance:
    """A spot-only ccxt binance client: pointed at `base_url` (the testnet or a local double), or at Binance's
    own hosts when `base_url` is None. Keys may be None for public data. The caller must `await close()`."""
    base = None if base_url is None else normalise_base_url(base_url)
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
    if base is not None:
        client.set_sandbox_mode(True)  # FIRST: this replaces urls['api'] wholesale
        client.urls["api"] = {key: base + prefix for key, prefix in SPOT_URL_PATHS.items()}  # THEN rewrite
    return client


# ---------------------------------------------------------------------------------------------- session


class BinanceSession:
    """One ccxt client for one set of keys, behind its throttle gate.

    After a 429/418 nothing more goes out on this client until the Retry-After (or ban end) has passed; a
    clock-skew refusal turns on ccxt's time-difference adjustment. Every failure leaves as ExchangeCallFailed,
    classified once (shared.exchanges.errors)."""

    def __init__(self, client: ccxt_async.binance, *, label: str, options: SessionOptions) -> None:
        self.client = client
        self.label = label
        self.options = options
        self.blocked_until = 0.0  # event-loop time
        self._markets_lock = asyncio.Lock()
        self._closed = False
        client.enableLastResponseHeaders = True
        client.options["warnOnFetchOpenOrdersWithoutSymbol"] = False
        if options.recv_window_ms is not None:
            client.options["recvWindow"] = options.recv_window_ms

    @property
    def closed(self) -> bool:
        return self._closed

    @staticmethod
    def _now() -> float:
        # Event-loop time: network pacing is about real elapsed time, not the domain clock.
        return float(asyncio.get_running_loop().time())

    def _fail(self, kind: ErrorKind, reason: str) -> ExchangeCallFailed:
        return ExchangeCallFailed(VenueError(kind, Disposition.FINAL, reason))

    async def _call(
        self, fn: Callable[..., Awaitable[Any]], *args: Any, markets: bool = True, **kw: Any
    ) -> Any:
        """One ccxt call behind the gate (markets loaded first when `markets`); failures classified."""
        wait = self.blocked_until - self._now()
        if wait > 0:  # throttled or banned: nothing goes out on this client until the gate opens
            await asyncio.sleep(wait)
        try:
            if markets:
                async with self._markets_lock:
                    if not self.client.markets:
                        await self.client.load_markets()
            result = await fn(*args, **kw)
        except asyncio.CancelledError:
            raise
        except ExchangeCallFailed as exc:
            self._reached(exc.error)
            raise
        except Exception as exc:
            failed = await self._failed(exc)
            self._reached(failed.error)
            raise failed from exc
        self._reached(None)
        return result

    def _reached(self, error: VenueError | None) -> None:
        if self.options.reachability is not None and (error is None or error.exception):
            self.options.reachability.record(error)  # (refusals made here, before sending, say nothing)

    async def _failed(self, exc: Exception) -> ExchangeCallFailed:
        headers = getattr(self.client, "last_response_headers", None)
        err = classify(exc, headers=headers if isinstance(headers, dict) else None, venue=self.label)
        if err.kind is ErrorKind.RATE_LIMITED or err.kind is ErrorKind.BANNED:
            pause = err.retry_after
            if pause is None and err.banned_until_ms is not None:
                pause = max(0.0, err.banned_until_ms / 1000 - time.time())
            if pause is None:
                pause = (
                    self.options.default_ban_s
                    if err.kind is ErrorKind.BANNED
                    else self.options.default_retry_after_s
                )
            self.blocked_until = max(self.blocked_until, self._now() + pause)
            log.warning("exchange client throttled", kind=err.kind, pause_s=pause, owner=self.options.owner)
        elif err.kind is ErrorKind.CLOCK_SKEW:
            self.client.options["adjustForTimeDifference"] = True
            with contextlib.suppress(Exception):
                await self.client.load_time_difference()
        return ExchangeCallFailed(err)

    def _market(self, symbol: str) -> str:
        """ccxt's unified symbol for an exchange id (BTCUSDT -> BTC/USDT); markets must be loaded."""
        found = (self.client.markets_by_id or {}).get(symbol.replace("/", "").upper())
        if not found:
            raise self._fail(ErrorKind.BAD_SYMBOL, f"{self.label} does not trade {symbol}")
        return str(found[0]["symbol"])

    @staticmethod
    def _ref(venue_order_id: str | None, client_order_id: str | None) -> tuple[str | None, dict[str, Any]]:
        if venue_order_id:
            return venue_order_id, {}
        if not client_order_id:
            raise ValueError("an order is looked up by its venue order id or its client order id")
        return None, {"origClientOrderId": client_order_id}

    # ---------------------------------------------------------------- orders

    async def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        quantity: Decimal,
        price: Decimal | None,
        *,
        client_order_id: str,
        time_in_force: str | None = None,
        stop_price: Decimal | None = None,
    ) -> ExchangeOrder:
        """Send one order, once (no retry here: an unclear outcome is the caller's to look up). Amounts off
        the symbol's step or tick are refused before anything is sent. The stop types go as Binance's own
        (their stopPrice in the request), so the exchange holds the trigger."""

        async def send() -> Any:
            sym = self._market(symbol)
            otype = type.upper()
            qty, px, params = self._order_fields(sym, otype, quantity, price, time_in_force, stop_price)
            params["newClientOrderId"] = client_order_id
            ccxt_type = otype if otype in STOP_TYPES else otype.lower()  # ccxt's own names for the plain ones
            return await self.client.create_order(sym, ccxt_type, side.lower(), qty, px, params)

        raw = await self._call(send)
        return parse_order(raw["info"])

    def _order_fields(
        self,
        sym: str,
        otype: str,
        quantity: Decimal,
        price: Decimal | None,
        time_in_force: str | None,
        stop_price: Decimal | None,
    ) -> tuple[str, str | None, dict[str, Any]]:
        """(quantity, price, params) of a new order, checked against the symbol's step and tick first."""
        qty = plain(quantity)  # str() would send "1E-7" for a normalized small amount
        if not _on_grid(self.client.amount_to_precision, sym, qty, quantity):
            raise self._fail(
                ErrorKind.FILTER_FAILURE,
                "quantity is not a multiple of the symbol's step size (LOT_SIZE)",
            )
        params: dict[str, Any] = {}
        px: str | None = None
        if otype in LIMIT_PRICED:
            if price is None:
                raise self._fail(ErrorKind.INVALID_ORDER, f"a {otype} order needs a price")
            px = plain(price)
            if not _on_grid(self.client.price_to_precision, sym, px, price):
                raise self._fail(
                    ErrorKind.FILTER_FAILURE,
                    "price is not a multiple of the symbol's tick size (PRICE_FILTER)",
                )
            params["timeInForce"] = (time_in_force or "GTC").upper()
        if otype in STOP_TYPES:
            if stop_price is None:
                raise self._fail(ErrorKind.INVALID_ORDER, f"a {otype} order needs a stop price")
            stop = plain(stop_price)
            if not _on_grid(self.client.price_to_precision, sym, stop, stop_price):
                raise self._fail(
                    ErrorKind.FILTER_FAILURE,
                    "stop price is not a multiple of the symbol's tick size (PRICE_FILTER)",
                )
            params["stopPrice"] = stop
        return qty, px, params

    async def cancel_replace(
        self,
        symbol: str,
        type: str,
        side: str,
        quantity: Decimal,
        price: Decimal | None,
        *,
        cancel_client_order_id: str,
        client_order_id: str,
        time_in_force: str | None = None,
        stop_price: Decimal | None = None,
    ) -> ReplaceOutcome:
        """One POST /api/v3/order/cancelReplace with STOP_ON_FAILURE: the open order (by its client order id)
        canceled and the new one placed under `client_order_id`, or, if the cancel fails, nothing placed.
        Binance's partial and total failures (-2021, -2022) come back as an outcome, each side with its
        reason; anything else (unreachable, throttled, bad parameters) raises as every call does. Sent once.
        ccxt's edit_order would drop our newClientOrderId, so its raw endpoint is called."""

        async def send() -> Any:
            sym = self._market(symbol)
            otype = type.upper()
            qty, px, params = self._order_fields(sym, otype, quantity, price, time_in_force, stop_price)
            request: dict[str, Any] = {
                "symbol": symbol.replace("/", "").upper(),
                "side": side.upper(),
                "type": otype,
                "quantity": qty,
                "cancelReplaceMode": "STOP_ON_FAILURE",
                "cancelOrigClientOrderId": cancel_client_order_id,
                "newClientOrderId": client_order_id,
                "newOrderRespType": "RESULT",
                **params,
            }
            if px is not None:
                request["price"] = px
            try:
                return await self.client.privatePostOrderCancelReplace(request)
            except ccxt.ExchangeError as exc:
                answer = _cancel_replace_failure(exc)
                if answer is None:
                    raise
                return answer

        raw = await self._call(send)
        return _replace_outcome(raw)

    async def fetch_order(
        self, symbol: str, *, venue_order_id: str | None = None, client_order_id: str | None = None
    ) -> ExchangeOrder:
        oid, params = self._ref(venue_order_id, client_order_id)

        async def fetch() -> Any:
            return await self.client.fetch_order(oid, self._market(symbol), params)

        raw = await self._call(fetch)
        return parse_order(raw["info"])

    async def find_order(
        self, symbol: str, *, venue_order_id: str | None = None, client_order_id: str | None = None
    ) -> ExchangeOrder | None:
        """`fetch_order`, with None where the exchange doesn't know the order."""
        try:
            return await self.fetch_order(
                symbol, venue_order_id=venue_order_id, client_order_id=client_order_id
            )
        except ExchangeCallFailed as exc:
            if exc.error.kind is ErrorKind.ORDER_NOT_FOUND:
                return None
            raise

    async def cancel_order(
        self, symbol: str, *, venue_order_id: str | None = None, client_order_id: str | None = None
    ) -> ExchangeOrder:
        oid, params = self._ref(venue_order_id, client_order_id)

        async def cancel() -> Any:
            return await self.client.cancel_order(oid, self._market(symbol), params)

        raw = await self._call(cancel)
        return parse_order(raw["info"])

    async def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]:
        """The account's open orders, on one symbol or all of them."""

        async def fetch() -> Any:
            if symbol is None:
                return await self.client.fetch_open_orders()
            return await self.client.fetch_open_orders(self._market(symbol))

        return [parse_order(r["info"]) for r in await self._call(fetch)]

    async def order_trades(self, symbol: str, venue_order_id: str) -> list[ExchangeTrade]:
        async def fetch() -> Any:
            return await self.client.fetch_my_trades(
                self._market(symbol), None, None, {"orderId": venue_order_id}
            )

        trades = [parse_trade(r["info"]) for r in await self._call(fetch)]
        return [t for t in trades if t.venue_order_id == venue_order_id]

    async def all_orders(self, symbol: str, since_ms: int) -> list[ExchangeOrder]:
        """Every order on `symbol` since `since_ms` (open and closed), page by page."""
        rows = await self._paged(self.client.private_get_allorders, symbol, since_ms, ("orderId", "orderId"))
        return [parse_order(r) for r in rows]

    async def all_trades(self, symbol: str, since_ms: int) -> list[ExchangeTrade]:
        """Every trade of the account on `symbol` since `since_ms`, page by page."""
        rows = await self._paged(self.client.private_get_mytrades, symbol, since_ms, ("fromId", "id"))
        return [parse_trade(r) for r in rows]

    async def _paged(
        self, fetch: Callable[..., Awaitable[Any]], symbol: str, since_ms: int, cursor: tuple[str, str]
    ) -> list[dict[str, Any]]:
        """The next page starts after the last row's id (`cursor` = the request parameter and the row field
        that carry it)."""
        param, field = cursor
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"symbol": symbol, "startTime": since_ms, "limit": PAGE}
        while True:
            rows = await self._call(fetch, params, markets=False)
            out += rows
            if len(rows) < PAGE:
                return out
            params = {"symbol": symbol, param: int(rows[-1][field]) + 1, "limit": PAGE}

    # ---------------------------------------------------------------- account and market data

    async def balances(self) -> list[ExchangeBalance]:
        """Every asset of the account (zero ones included)."""
        return parse_balances(await self._call(self.client.private_get_account, markets=False))

    async def tickers(self, symbols: list[str]) -> dict[str, Ticker]:
        """Latest prices by exchange id; symbols the exchange doesn't list are left out."""

        async def fetch() -> dict[str, Ticker]:
            by_unified: dict[str, str] = {}
            for s in symbols:
                with contextlib.suppress(ExchangeCallFailed):
                    by_unified[self._market(s)] = s
            if not by_unified:
                return {}
            raw = await self.client.fetch_tickers(list(by_unified))
            return {
                ours: parse_ticker(ours, raw[unified])
                for unified, ours in by_unified.items()
                if isinstance(raw.get(unified), Mapping)
            }

        result: dict[str, Ticker] = await self._call(fetch)
        return result

    async def market_filters(self) -> dict[str, MarketFilters]:
        """exchangeInfo's filters of every trading symbol, reloaded (ccxt keeps the raw listing in `info`)."""

        async def fetch() -> dict[str, MarketFilters]:
            async with self._markets_lock:
                markets = await self.client.load_markets(reload=True)
            found = {}
            for market in markets.values():
                info = market.get("info") or {}
                parsed = parse_market_filters(info)
                if parsed is not None:
                    found[parsed.symbol] = parsed
            return found

        result: dict[str, MarketFilters] = await self._call(fetch, markets=False)
        return result

    async def klines(self, symbol: str, interval: str, limit: int) -> list[Kline]:
        """Binance's own klines over REST (`GET /api/v3/klines`), read from its decimal strings (ccxt's
        fetch_ohlcv would hand floats)."""
        rows = await self._call(
            self.client.public_get_klines,
            {"symbol": symbol, "interval": interval, "limit": limit},
            markets=False,
        )
        return parse_klines(symbol, interval, rows)

    async def close(self) -> None:
        self._closed = True
        await self.client.close()


def parse_market_filters(info: Mapping[str, Any]) -> MarketFilters | None:
    """A symbol of exchangeInfo as our exact rules; None unless it trades and states the three core filters."""
    if info.get("status") != "TRADING" or not info.get("symbol"):
        return None
    filters = {f.get("filterType"): f for f in info.get("filters") or () if isinstance(f, Mapping)}
    price, lot = filters.get("PRICE_FILTER"), filters.get("LOT_SIZE")
    notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL")
    if price is None or lot is None or notional is None:
        return None
    try:
        return MarketFilters(
            symbol=str(info["symbol"]),
            base_asset=str(info["baseAsset"]),
            quote_asset=str(info["quoteAsset"]),
            tick_size=Decimal(str(price["tickSize"])),
            min_price=Decimal(str(price.get("minPrice", "0"))),
            step_size=Decimal(str(lot["stepSize"])),
            min_qty=Decimal(str(lot["minQty"])),
            max_qty=Decimal(str(lot["maxQty"])),
            min_notional=Decimal(str(notional["minNotional"])),
        )
    except (KeyError, InvalidOperation, TypeError):
        return None


def parse_klines(symbol: str, interval: str, rows: Any) -> list[Kline]:
    """Binance's kline rows `[open time, open, high, low, close, volume, ...]` (amounts as strings)."""
    return [
        Kline(
            symbol,
            interval,
            int(r[0]),
            Decimal(r[1]),
            Decimal(r[2]),
            Decimal(r[3]),
            Decimal(r[4]),
            Decimal(r[5]),
        )
        for r in rows
    ]


def _cancel_replace_failure(exc: Exception) -> dict[str, Any] | None:
    """The `data` of Binance's -2021/-2022 answer, which ccxt raises with the body in its message."""
    text = str(exc)
    start = text.find("{")
    if start < 0:
        return None
    try:
        body = json.loads(text[start:])
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("code") not in (-2021, -2022):
        return None
    data = body.get("data")
    return data if isinstance(data, dict) else None


def _replace_outcome(raw: Mapping[str, Any]) -> ReplaceOutcome:
    """Both sides of a cancelReplace answer (success or -2021/-2022 data) as records or reasons."""

    def side(key: str) -> tuple[ExchangeOrder | None, str | None]:
        value = raw.get(key)
        if not isinstance(value, dict):
            return None, None
        if "code" in value and "orderId" not in value:
            return None, f"{value.get('msg') or 'failed'} (Binance code {value.get('code')})"
        return parse_order(value), None

    canceled, cancel_error = side("cancelResponse")
    placed, place_error = side("newOrderResponse")
    return ReplaceOutcome(canceled, cancel_error, placed, place_error)


def _on_grid(to_precision: Callable[[str, str], str], symbol: str, text: str, value: Decimal) -> bool:
    """Whether `value` is a whole number of the market's steps (ccxt truncates; below one step it raises)."""
    try:
        return Decimal(to_precision(symbol, text)) == value
    except ccxt.InvalidOrder:
        return False


# ---------------------------------------------------------------------------------------------- adapter


@dataclass(frozen=True, slots=True)
class BinanceAdapter:
    """Binance spot: the testnet (or a double) at `base_url`, or mainnet public data when it is None."""

    name: str
    label: str
    base_url: str | None

    def session(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        options: SessionOptions | None = None,
    ) -> BinanceSession:
        opts = options or SessionOptions()
        client = make_binance_client(
            api_key,
            api_secret,
            base_url=self.base_url,
            timeout_ms=opts.timeout_ms,
            enable_rate_limit=opts.enable_rate_limit,
        )
        return BinanceSession(client, label=self.label, options=opts)

    async def verify_keys(self, api_key: str, api_secret: str) -> None:
        """One signed read (the account); ExchangeCallFailed says why the keys can't be used."""
        session = self.session(api_key, api_secret)
        try:
            await session.balances()
        finally:
            await session.close()

    def user_stream(
        self,
        api_key: str,
        api_secret: str,
        *,
        ws_url: str | None = None,
        options: StreamOptions | None = None,
    ) -> UserStream:
        """The account's user data stream over the WebSocket API (python-binance; see binance_stream)."""
        from shared.exchanges.binance_stream import BinanceUserStream

        if self.base_url is None and ws_url is None:
            raise ValueError("the binance (mainnet) adapter streams no account data")
        return BinanceUserStream(
            api_key,
            api_secret,
            ws_url=ws_url or DEFAULT_TESTNET_WS_URL,
            label=self.label,
            options=options or StreamOptions(),
        )


def testnet(base_url: str | None = None) -> BinanceAdapter:
    """The spot testnet at `base_url` (BINANCE_TESTNET_URL; a local double in tests)."""
    return BinanceAdapter(
        "binance-testnet", "Binance testnet", normalise_base_url(base_url or DEFAULT_TESTNET_URL)
    )


def mainnet(base_url: str | None = None) -> BinanceAdapter:
    """Binance's own spot hosts, for public market data (no keys are ever sent there by TradeBridge)."""
    if base_url is not None:
        raise ValueError("the binance (mainnet) adapter has no configurable URL; use binance-testnet")
    return BinanceAdapter("binance", "Binance", None)


__all__ = [
    "BINANCE_STATUS",
    "CLIENT_LOGGER",
    "DEFAULT_TESTNET_URL",
    "REWRITTEN_URL_KEYS",
    "SPOT_URL_PATHS",
    "BinanceAdapter",
    "BinanceSession",
    "mainnet",
    "make_binance_client",
    "map_status",
    "normalise_base_url",
    "parse_balances",
    "parse_order",
    "parse_ticker",
    "parse_trade",
    "testnet",
]
