"""What every exchange adapter hands its callers: immutable records with exact amounts, one error type, and
the session protocol. No ccxt here: code that only needs these types never pays for importing it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol

from shared.amounts import average
from shared.orders import Status

ZERO = Decimal(0)


class Disposition(StrEnum):
    """What a failed call means for the request that made it."""

    RETRYABLE = "retryable"  # the exchange certainly did not act: the same request may be sent again later
    AMBIGUOUS = "ambiguous"  # it may have acted: look the outcome up before deciding or resending
    FINAL = "final"  # refused for good: retrying can't help


class ErrorKind(StrEnum):
    INSUFFICIENT_FUNDS = "insufficient_funds"
    FILTER_FAILURE = "filter_failure"
    INVALID_ORDER = "invalid_order"
    BAD_REQUEST = "bad_request"
    BAD_SYMBOL = "bad_symbol"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    ACCOUNT_SUSPENDED = "account_suspended"
    ORDER_NOT_FOUND = "order_not_found"
    DUPLICATE_ORDER = "duplicate_order"
    CANCEL_REJECTED = "cancel_rejected"
    MARKET_CLOSED = "market_closed"
    NOT_SUPPORTED = "not_supported"
    RATE_LIMITED = "rate_limited"
    BANNED = "banned"
    CLOCK_SKEW = "clock_skew"
    TIMEOUT = "timeout"
    NETWORK = "network"
    UNAVAILABLE = "unavailable"
    BAD_RESPONSE = "bad_response"
    EXCHANGE = "exchange"
    CLIENT_CLOSED = "client_closed"


@dataclass(frozen=True, slots=True)
class VenueError:
    """One exchange failure as our code reasons about it (the library's exception stays behind the adapter)."""

    kind: ErrorKind
    disposition: Disposition
    reason: str  # human, safe to show a user (never a key)
    retry_after: float | None = None  # seconds, for RATE_LIMITED/BANNED
    banned_until_ms: int | None = None
    exception: str = ""  # the library's exception class name, for logs

    @property
    def retryable(self) -> bool:
        return self.disposition is Disposition.RETRYABLE

    @property
    def ambiguous(self) -> bool:
        return self.disposition is Disposition.AMBIGUOUS

    @property
    def final(self) -> bool:
        return self.disposition is Disposition.FINAL


class ExchangeCallFailed(Exception):
    """The only exception an adapter session raises for a failed exchange call; `error` says what it means."""

    def __init__(self, error: VenueError) -> None:
        super().__init__(f"{error.kind}: {error.reason}")
        self.error = error


@dataclass(frozen=True, slots=True)
class ExchangeTrade:
    """One of the account's trades, exactly as the exchange booked it."""

    trade_id: str
    venue_order_id: str
    symbol: str  # the exchange's id, e.g. BTCUSDT
    side: str  # BUY | SELL
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal
    fee: Decimal
    fee_asset: str
    is_maker: bool
    time_ms: int | None


@dataclass(frozen=True, slots=True)
class ExchangeOrder:
    """An order as the exchange reported it (new-order, query, cancel, open-orders or history answer)."""

    venue_order_id: str
    client_order_id: str | None
    symbol: str
    side: str
    type: str
    time_in_force: str
    status: Status  # ours, through the adapter's one status map
    exchange_status: str  # the exchange's own word, kept for reports
    quantity: Decimal
    price: Decimal | None
    filled: Decimal
    cum_quote: Decimal
    time_ms: int | None
    transact_ms: int | None = None
    fills: tuple[ExchangeTrade, ...] = ()  # trades a FULL new-order answer carries inline
    stop_price: Decimal | None = None  # the stop types' trigger price
    triggered: bool = False  # a stop order whose trigger fired (Binance: isWorking / a workingTime set)

    @property
    def avg_price(self) -> Decimal | None:
        return average(self.cum_quote, self.filled) if self.filled > 0 else None


@dataclass(frozen=True, slots=True)
class ReplaceOutcome:
    """What one cancel-replace did: each side's order, or why it failed (None: not attempted/not failed).
    With STOP_ON_FAILURE a failed cancel means the new order was never placed."""

    canceled: ExchangeOrder | None
    cancel_error: str | None
    placed: ExchangeOrder | None
    place_error: str | None


@dataclass(frozen=True, slots=True)
class ExchangeBalance:
    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class Ticker:
    """Latest prices of one symbol; None where the exchange has none (no trade yet, empty book side)."""

    symbol: str
    last: Decimal | None
    bid: Decimal | None
    ask: Decimal | None


@dataclass(frozen=True, slots=True)
class MarketFilters:
    """One symbol's trading rules as the exchange publishes them (Binance's exchangeInfo filters), exact."""

    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal  # PRICE_FILTER
    min_price: Decimal
    step_size: Decimal  # LOT_SIZE
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal  # NOTIONAL (MIN_NOTIONAL on older listings)


@dataclass(frozen=True, slots=True)
class Kline:
    """One candle as the exchange aggregates it: the bucket opening at `open_ms` (epoch ms) of `interval`."""

    symbol: str
    interval: str
    open_ms: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal


# Failures that mean the exchange was not reached (or did not answer); any other answer means it was.
UNREACHED: frozenset[ErrorKind] = frozenset(
    {ErrorKind.TIMEOUT, ErrorKind.NETWORK, ErrorKind.UNAVAILABLE, ErrorKind.BAD_RESPONSE}
)


@dataclass(eq=False)
class Reachability:
    """When an exchange last answered and when it last could not be reached (wall clock, ms), so the user can
    be told "unreachable since ..., last reached at ..." instead of seeing stale numbers."""

    last_ok_ms: int | None = None
    last_failure_ms: int | None = None
    last_failure: str | None = None

    def record(self, error: VenueError | None) -> None:
        now = int(time.time() * 1000)
        if error is None or error.kind not in UNREACHED:
            self.last_ok_ms = now
        else:
            self.last_failure_ms, self.last_failure = now, error.reason

    @property
    def reachable(self) -> bool | None:
        """True/False from the latest call; None before any call."""
        if self.last_ok_ms is None and self.last_failure_ms is None:
            return None
        return (self.last_ok_ms or 0) >= (self.last_failure_ms or 0)

    @property
    def last_reached_at(self) -> datetime | None:
        return None if self.last_ok_ms is None else datetime.fromtimestamp(self.last_ok_ms / 1000, tz=UTC)

    @property
    def checked_ms(self) -> int | None:
        """When anything was last learnt (a success or a failure)."""
        seen = [m for m in (self.last_ok_ms, self.last_failure_ms) if m is not None]
        return max(seen) if seen else None


@dataclass(frozen=True, slots=True)
class SessionOptions:
    """Per-session tuning; the defaults suit a user-facing call."""

    timeout_ms: int = 10_000
    enable_rate_limit: bool = True
    recv_window_ms: int | None = None
    default_retry_after_s: float = 1.0  # a 429 without Retry-After closes the gate this long
    default_ban_s: float = 60.0  # a 418 without a ban end, likewise
    owner: str | None = None  # who the session is for (a user id), named in its log lines
    reachability: Reachability | None = None  # told the outcome of every call


# ---------------------------------------------------------------------------------------------- user stream


@dataclass(frozen=True, slots=True)
class OrderEvent:
    """One order report pushed by the exchange (Binance: executionReport). `order` is the order as of this
    event; when the event is a trade, `order.fills` holds that one trade."""

    order: ExchangeOrder
    execution_type: str  # the exchange's word: NEW, TRADE, CANCELED, EXPIRED, REJECTED, ...
    event_ms: int | None


@dataclass(frozen=True, slots=True)
class BalancesEvent:
    """Absolute free/locked of the assets that changed (Binance: outboundAccountPosition)."""

    balances: tuple[ExchangeBalance, ...]
    event_ms: int | None


@dataclass(frozen=True, slots=True)
class BalanceDeltaEvent:
    """A deposit, withdrawal or transfer moved one asset by `delta` (Binance: balanceUpdate)."""

    asset: str
    delta: Decimal
    event_ms: int | None


@dataclass(frozen=True, slots=True)
class StreamUp:
    """Subscribed. Anything that happened before (or during a gap since `StreamDown`) was NOT pushed: the
    consumer re-reads what it follows over REST."""

    reconnected: bool  # False for the first subscription of this stream


@dataclass(frozen=True, slots=True)
class StreamDown:
    """The subscription is gone (connection lost, terminated by the exchange, refused); retried after
    `retry_in_s` unless `final` (keys refused: retrying can't help)."""

    reason: str
    retry_in_s: float
    final: bool = False


UserStreamEvent = OrderEvent | BalancesEvent | BalanceDeltaEvent | StreamUp | StreamDown


@dataclass(frozen=True, slots=True)
class StreamOptions:
    request_timeout_s: float = 5.0  # one WebSocket API request (the subscription)
    backoff_s: float = 0.2  # first reconnect delay, doubling
    max_backoff_s: float = 10.0
    reachability: Reachability | None = None


class UserStream(Protocol):
    """A user's account updates, pushed by the exchange. `events()` runs until `close()`: it subscribes, and after
    any drop or termination reconnects with backoff and subscribes again, reporting the gap as StreamDown/StreamUp."""

    def events(self) -> AsyncIterator[UserStreamEvent]: ...

    async def close(self) -> None: ...


class ExchangeSession(Protocol):
    """One authenticated (or public) connection to an exchange. Symbols are the exchange's ids (BTCUSDT);
    amounts go in and come out as Decimal; every failure is an `ExchangeCallFailed`."""

    @property
    def closed(self) -> bool: ...

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
    ) -> ExchangeOrder: ...

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
    ) -> ReplaceOutcome: ...

    async def fetch_order(
        self, symbol: str, *, venue_order_id: str | None = None, client_order_id: str | None = None
    ) -> ExchangeOrder: ...

    async def find_order(
        self, symbol: str, *, venue_order_id: str | None = None, client_order_id: str | None = None
    ) -> ExchangeOrder | None: ...

    async def cancel_order(
        self, symbol: str, *, venue_order_id: str | None = None, client_order_id: str | None = None
    ) -> ExchangeOrder: ...

    async def open_orders(self, symbol: str | None = None) -> list[ExchangeOrder]: ...

    async def order_trades(self, symbol: str, venue_order_id: str) -> list[ExchangeTrade]: ...

    async def all_orders(self, symbol: str, since_ms: int) -> list[ExchangeOrder]: ...

    async def all_trades(self, symbol: str, since_ms: int) -> list[ExchangeTrade]: ...

    async def balances(self) -> list[ExchangeBalance]: ...

    async def tickers(self, symbols: list[str]) -> dict[str, Ticker]: ...

    async def market_filters(self) -> dict[str, MarketFilters]:
        """Every trading symbol's rules by exchange id, read afresh from the exchange (not a cached copy)."""
        ...

    async def klines(self, symbol: str, interval: str, limit: int) -> list[Kline]:
        """The most recent `limit` candles of `interval`, oldest first (the last one still running)."""
        ...

    async def close(self) -> None: ...


class ExchangeAdapter(Protocol):
    """One exchange (and network): builds sessions and checks keys."""

    name: str  # the registry name, e.g. "binance-testnet"
    label: str  # for people, e.g. "Binance testnet"

    def session(
        self,
        api_key: str | None = None,
        api_secret: str | None = None,
        *,
        options: SessionOptions | None = None,
    ) -> ExchangeSession: ...

    async def verify_keys(self, api_key: str, api_secret: str) -> None:
        """One signed call; raises ExchangeCallFailed when the exchange refuses or can't be reached."""
        ...

    def user_stream(
        self,
        api_key: str,
        api_secret: str,
        *,
        ws_url: str | None = None,
        options: StreamOptions | None = None,
    ) -> UserStream:
        """The account's update stream through the exchange's WebSocket base `ws_url` (None: the default)."""
        ...


__all__ = [
    "UNREACHED",
    "ZERO",
    "BalanceDeltaEvent",
    "BalancesEvent",
    "Disposition",
    "ErrorKind",
    "ExchangeAdapter",
    "ExchangeBalance",
    "ExchangeCallFailed",
    "ExchangeOrder",
    "ExchangeSession",
    "ExchangeTrade",
    "MarketFilters",
    "OrderEvent",
    "Reachability",
    "ReplaceOutcome",
    "SessionOptions",
    "StreamDown",
    "StreamOptions",
    "StreamUp",
    "Ticker",
    "UserStream",
    "UserStreamEvent",
    "VenueError",
]
