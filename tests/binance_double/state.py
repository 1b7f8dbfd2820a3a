"""The Binance spot exchange the double serves: accounts, symbols, orders, trades, faults and a request log.

Everything here is plain in-memory state behind one re-entrant lock, so the server thread (handling ccxt's
requests) and the test thread (driving prices, faults and reading the record) can both touch it safely.
Validation, error codes and messages follow the real spot API, because TradeBridge's error handling is
tested against them and ccxt maps them to its exception classes by code and message.

Every change is also published, in order and while the lock is held, as an `Event` to the listeners
(`add_listener`): the server's WebSocket hub turns them into user data stream events (executionReport,
outboundAccountPosition, balanceUpdate) and market stream events (trade, kline, ticker, depth). The order
book carries an update id per symbol: REST depth's `lastUpdateId` and the diff depth stream's `U`/`u` count
the same changes, so a client can keep a local book the documented way.
"""

from __future__ import annotations

import bisect
import re
import secrets
import string
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Literal

from shared.clock import Clock, SystemClock, to_ms

ZERO = Decimal(0)
DEFAULT_FEE_RATE = Decimal("0.001")
EIGHT_DP = Decimal("0.00000001")

_NUMBER_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
_CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")
_ID_ALPHABET = string.ascii_letters + string.digits

OrderStatus = Literal["NEW", "PARTIALLY_FILLED", "FILLED", "CANCELED", "EXPIRED", "REJECTED"]
OPEN_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED"})
STOP_TYPES = frozenset({"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"})
ORDER_TYPES = (
    "LIMIT",
    "LIMIT_MAKER",
    "MARKET",
    "STOP_LOSS",
    "STOP_LOSS_LIMIT",
    "TAKE_PROFIT",
    "TAKE_PROFIT_LIMIT",
)
MARKET_LIKE = frozenset({"MARKET", "STOP_LOSS", "TAKE_PROFIT"})
TIME_IN_FORCES = frozenset({"GTC", "IOC", "FOK"})
RESP_TYPES = frozenset({"ACK", "RESULT", "FULL"})
ORDER_PARAMS = frozenset(
    {
        "symbol",
        "side",
        "type",
        "timeInForce",
        "quantity",
        "quoteOrderQty",
        "price",
        "newClientOrderId",
        "strategyId",
        "strategyType",
        "newOrderRespType",
        "selfTradePreventionMode",
        "stopPrice",
        "recvWindow",
        "timestamp",
        "signature",
    }
)
KLINE_INTERVALS_MS: dict[str, int] = {
    "1s": 1_000,
    "1m": 60_000,
    "3m": 180_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "2h": 7_200_000,
    "4h": 14_400_000,
    "6h": 21_600_000,
    "8h": 28_800_000,
    "12h": 43_200_000,
    "1d": 86_400_000,
    "3d": 259_200_000,
    "1w": 604_800_000,
}

MSG_INSUFFICIENT = "Account has insufficient balance for requested action."
MSG_DUPLICATE = "Duplicate order sent."
MSG_NO_ORDER = "Order does not exist."
MSG_UNKNOWN_ORDER = "Unknown order sent."
MSG_INVALID_SYMBOL = "Invalid symbol."
MSG_TRIGGER_IMMEDIATELY = "Order would trigger immediately."
CANCEL_REPLACE_PARAMS = frozenset(
    {
        "cancelReplaceMode",
        "cancelNewClientOrderId",
        "cancelOrigClientOrderId",
        "cancelOrderId",
        "cancelRestrictions",
        "orderRateLimitExceededMode",
    }
)


class BinanceError(Exception):
    """A rejection as Binance sends it: `{"code": code, "msg": msg}` with an HTTP status."""

    def __init__(self, code: int, msg: str, http_status: int = 400) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.http_status = http_status


def mandatory(name: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def fmt(value: Decimal) -> str:
    """Binance renders decimals with 8 fractional digits."""
    return f"{value.quantize(EIGHT_DP, rounding=ROUND_HALF_UP):f}"


def parse_decimal(params: Mapping[str, str], name: str) -> Decimal | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    if not _NUMBER_RE.match(raw):
        raise BinanceError(
            -1100,
            f"Illegal characters found in parameter '{name}'; legal range is '^([0-9]{{1,20}})(\\.[0-9]{{1,20}})?$'.",
        )
    try:
        return Decimal(raw)
    except InvalidOperation as exc:  # pragma: no cover - the regex already guards this
        raise BinanceError(-1100, f"Illegal characters found in parameter '{name}'.") from exc


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


def _on_grid(value: Decimal, base: Decimal, step: Decimal) -> bool:
    return step <= 0 or (value - base) % step == 0


@dataclass(frozen=True, slots=True)
class SymbolSpec:
    """A spot symbol's filters; values mirror the public testnet's for BTCUSDT, ETHUSDT and BNBUSDT."""

    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    min_price: Decimal
    max_price: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    market_min_qty: Decimal
    market_max_qty: Decimal
    min_notional: Decimal
    max_notional: Decimal
    base_precision: int = 8
    quote_precision: int = 8


def _spec(symbol: str, base: str, tick: str, max_price: str, step: str, market_max: str) -> SymbolSpec:
    d = Decimal
    return SymbolSpec(
        symbol=symbol,
        base=base,
        quote="USDT",
        tick_size=d(tick),
        min_price=d(tick),
        max_price=d(max_price),
        step_size=d(step),
        min_qty=d(step),
        max_qty=d("9000"),
        market_min_qty=ZERO,
        market_max_qty=d(market_max),
        min_notional=d("5"),
        max_notional=d("9000000"),
    )


DEFAULT_SYMBOLS: tuple[SymbolSpec, ...] = (
    _spec("BTCUSDT", "BTC", "0.01", "1000000", "0.00001", "120"),
    _spec("ETHUSDT", "ETH", "0.01", "1000000", "0.0001", "3000"),
    _spec("BNBUSDT", "BNB", "0.01", "100000", "0.001", "9000"),
)
DEFAULT_PRICES: dict[str, Decimal] = {
    "BTCUSDT": Decimal("60000.00"),
    "ETHUSDT": Decimal("3000.00"),
    "BNBUSDT": Decimal("600.00"),
}


@dataclass(frozen=True, slots=True)
class Account:
    api_key: str
    api_secret: str


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    free: Decimal
    locked: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.locked


@dataclass(frozen=True, slots=True)
class Order:
    """One order as the exchange knows it; `locked` is what it still holds (quote for buys, base for sells)."""

    order_id: int
    api_key: str
    symbol: str
    client_order_id: str
    side: str
    type: str
    time_in_force: str
    price: Decimal
    orig_qty: Decimal
    executed_qty: Decimal
    cummulative_quote_qty: Decimal
    status: str
    time: int
    update_time: int
    orig_quote_order_qty: Decimal
    locked: Decimal
    external: bool = False
    stop_price: Decimal = ZERO
    is_working: bool = True
    """False while a stop order waits for its trigger (it is open but not on the book)."""
    working_time: int = -1
    """When the order went on the book (Binance's workingTime; -1 while a stop order waits)."""

    @property
    def remaining(self) -> Decimal:
        return self.orig_qty - self.executed_qty

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def is_stop(self) -> bool:
        return self.type in STOP_TYPES


@dataclass(frozen=True, slots=True)
class Trade:
    trade_id: int
    order_id: int
    api_key: str
    symbol: str
    side: str
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    is_buyer: bool
    is_maker: bool
    time: int


@dataclass(frozen=True, slots=True)
class TapePoint:
    """A public price point: a fill (qty > 0) or a price move set by the test (qty == 0)."""

    time: int
    price: Decimal
    qty: Decimal
    trade_id: int | None = None
    is_buyer_maker: bool = False


# ---------------------------------------------------------------------- events (what listeners receive)


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """An order changed: `execution_type` is Binance's `x` (NEW, TRADE, CANCELED, EXPIRED, REJECTED)."""

    order: Order
    execution_type: str
    time: int
    trade: Trade | None = None
    client_order_id: str | None = None
    """The `c` of the event when it is not the order's own id (a cancel's newClientOrderId)."""


@dataclass(frozen=True, slots=True)
class AccountPosition:
    """Balances that an event changed (outboundAccountPosition)."""

    api_key: str
    balances: tuple[Balance, ...]
    time: int


@dataclass(frozen=True, slots=True)
class BalanceDelta:
    """A deposit or withdrawal made by the test (balanceUpdate)."""

    api_key: str
    asset: str
    delta: Decimal
    time: int


@dataclass(frozen=True, slots=True)
class BookUpdate:
    """Changed price levels (quantity 0: level gone) with their update ids `first`..`last`."""

    symbol: str
    first: int
    last: int
    bids: tuple[tuple[Decimal, Decimal], ...]
    asks: tuple[tuple[Decimal, Decimal], ...]
    time: int


@dataclass(frozen=True, slots=True)
class TapeUpdate:
    """A new public price point: a trade (trade_id set) or a price move."""

    symbol: str
    point: TapePoint


StreamCommand = Literal["reset", "terminate", "shutdown"]


@dataclass(frozen=True, slots=True)
class StreamControl:
    """A WebSocket fault for the server's live connections.

    `reset`: cut the connections (no close frame) of `scope` ("all", "market" streams or the "api").
    `terminate`: end the user data stream subscriptions of `api_key` (all accounts if None) with
    eventStreamTerminated. `shutdown`: serverShutdown event on every connection, then a close.
    """

    command: StreamCommand
    api_key: str | None = None
    scope: Literal["all", "market", "api"] = "all"


Event = OrderUpdate | AccountPosition | BalanceDelta | BookUpdate | TapeUpdate | StreamControl
Listener = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class CancelReplaceResult:
    """What POST /api/v3/order/cancelReplace did: each side is its result, a rejection, or None (not tried)."""

    cancel: Order | BinanceError
    cancel_client_order_id: str
    orig_client_order_id: str | None
    new: tuple[Order, list[Trade]] | BinanceError | None


FaultKind = Literal["status", "delay", "drop"]


@dataclass(frozen=True, slots=True)
class Fault:
    """An injected failure for the next `remaining` requests to `method path`.

    `status`: answer with that HTTP status (503, 429 with Retry-After, 418, 500...), before processing unless
    `after_processing` (the exchange did it, the client is told it failed). `delay`: process, then answer after
    `delay` seconds (past the client's timeout). `drop`: process (unless `after_processing` is False), then close
    the connection without any response.
    """

    method: str
    path: str
    kind: FaultKind
    remaining: int = 1
    status: int = 503
    delay: float = 0.0
    retry_after: int = 1
    after_processing: bool = False


@dataclass(frozen=True, slots=True)
class RequestRecord:
    seq: int
    time: int
    method: str
    path: str
    params: tuple[tuple[str, str], ...]
    api_key: str | None
    status: int
    fault: str | None
    processed: str | None = None  # a fault after processing: what the processing answered (status and body)


@dataclass(slots=True)
class _SymbolState:
    spec: SymbolSpec
    price: Decimal
    liquidity: Decimal | None = None
    tape: list[TapePoint] = field(default_factory=list)
    tape_times: list[int] = field(default_factory=list)
    update_id: int = 1
    book_bids: dict[Decimal, Decimal] = field(default_factory=dict)
    book_asks: dict[Decimal, Decimal] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _NewOrder:
    """A new order that passed the parameter and filter checks, ready for the matching engine."""

    api_key: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    qty: Decimal
    price: Decimal | None
    quote_qty: Decimal | None
    stop_price: Decimal | None
    client_id: str


class ExchangeState:
    """The double's whole exchange. Thread-safe: every public method takes the lock."""

    def __init__(
        self,
        *,
        clock: Clock | None = None,
        symbols: Iterable[SymbolSpec] = DEFAULT_SYMBOLS,
        prices: Mapping[str, Decimal] | None = None,
        fee_rate: Decimal = DEFAULT_FEE_RATE,
        duplicate_client_id: Literal["known", "open"] = "known",
    ) -> None:
        self._lock = threading.RLock()
        self._clock: Clock = clock or SystemClock()
        self._time_offset_ms = 0
        self.fee_rate = fee_rate
        self.duplicate_client_id = duplicate_client_id
        start_prices = dict(DEFAULT_PRICES)
        start_prices.update(prices or {})
        self._initial_prices = start_prices
        self._specs = {s.symbol: s for s in symbols}
        self._symbols: dict[str, _SymbolState] = {}
        self._accounts: dict[str, Account] = {}
        self._seed_balances: dict[str, dict[str, Decimal]] = {}
        self._balances: dict[str, dict[str, list[Decimal]]] = {}
        self._orders: dict[int, Order] = {}
        self._trades: list[Trade] = []
        self._faults: list[Fault] = []
        self._requests: list[RequestRecord] = []
        self._listen_keys: dict[str, str] = {}
        self._listeners: list[Listener] = []
        self._ws_delay_ms = 0
        self._next_order_id = 1
        self._next_trade_id = 1
        self._reset_market()

    # ------------------------------------------------------------------ events and WebSocket faults

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(event)` for every change, in order, with the lock held (so it must not block)."""
        with self._lock:
            self._listeners.append(listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)

    def _emit(self, event: Event) -> None:
        for listener in list(self._listeners):
            listener(event)

    def set_ws_delay_ms(self, delay_ms: int) -> None:
        """Hold every WebSocket message (responses, events) for `delay_ms` before sending it; 0 ends it."""
        with self._lock:
            if delay_ms < 0:
                raise ValueError("a delay can not be negative")
            self._ws_delay_ms = int(delay_ms)

    def ws_delay_ms(self) -> int:
        with self._lock:
            return self._ws_delay_ms

    def reset_ws_connections(self, scope: Literal["all", "market", "api"] = "all") -> None:
        """Cut live WebSocket connections without a close frame, as a network failure would."""
        with self._lock:
            if scope not in ("all", "market", "api"):
                raise ValueError(f"unknown scope {scope!r}")
            self._emit(StreamControl("reset", scope=scope))

    def terminate_user_streams(self, api_key: str | None = None) -> None:
        """End user data stream subscriptions (of one account, or all) with eventStreamTerminated."""
        with self._lock:
            self._emit(StreamControl("terminate", api_key=api_key))

    def server_shutdown(self) -> None:
        """Send serverShutdown on every WebSocket connection, then close them (clients must reconnect)."""
        with self._lock:
            self._emit(StreamControl("shutdown"))

    # ------------------------------------------------------------------ time

    def now_ms(self) -> int:
        with self._lock:
            return to_ms(self._clock.now()) + self._time_offset_ms

    def set_time_offset_ms(self, offset_ms: int) -> None:
        """Skew the exchange's clock against the client's (to provoke -1021 recvWindow rejections)."""
        with self._lock:
            self._time_offset_ms = int(offset_ms)

    # ------------------------------------------------------------------ accounts and balances

    def create_account(
        self,
        balances: Mapping[str, Decimal | str | int] | None = None,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
    ) -> Account:
        with self._lock:
            key = api_key or secrets.token_hex(32)
            secret = api_secret or secrets.token_hex(32)
            account = Account(key, secret)
            self._accounts[key] = account
            seed = {asset: Decimal(str(amount)) for asset, amount in (balances or {}).items()}
            self._seed_balances[key] = seed
            self._balances[key] = {asset: [amount, ZERO] for asset, amount in seed.items()}
            return account

    def account(self, api_key: str) -> Account | None:
        with self._lock:
            return self._accounts.get(api_key)

    def accounts(self) -> list[Account]:
        with self._lock:
            return list(self._accounts.values())

    def set_balance(self, api_key: str, asset: str, free: Decimal | str | int) -> None:
        """Set an asset's free amount (locked amounts belong to open orders and are kept)."""
        with self._lock:
            self._require_account(api_key)
            wallet = self._wallet(api_key, asset)
            delta = Decimal(str(free)) - wallet[0]
            wallet[0] = Decimal(str(free))
            if delta:
                now = self.now_ms()
                self._emit(BalanceDelta(api_key, asset, delta, now))
                self._position(api_key, (asset,))

    def balances(self, api_key: str) -> dict[str, Balance]:
        with self._lock:
            self._require_account(api_key)
            return {a: Balance(a, v[0], v[1]) for a, v in sorted(self._balances[api_key].items())}

    def balance(self, api_key: str, asset: str) -> Balance:
        with self._lock:
            free, locked = self._wallet(api_key, asset)
            return Balance(asset, free, locked)

    # ------------------------------------------------------------------ market

    def symbols(self) -> list[SymbolSpec]:
        with self._lock:
            return [s.spec for s in self._symbols.values()]

    def spec(self, symbol: str) -> SymbolSpec:
        with self._lock:
            return self._symbol(symbol).spec

    def price(self, symbol: str) -> Decimal:
        with self._lock:
            return self._symbol(symbol).price

    def set_price(
        self, symbol: str, price: Decimal | str, *, liquidity: Decimal | str | None = None
    ) -> list[Trade]:
        """Move the market price; resting limit orders it crosses fill at their own price (as makers)."""
        with self._lock:
            st = self._symbol(symbol)
            st.price = Decimal(str(price))
            if liquidity is not None:
                st.liquidity = Decimal(str(liquidity))
            now = self.now_ms()
            self._tape_add(st, TapePoint(now, st.price, ZERO))
            fills: list[Trade] = []
            for order in sorted(self._open_orders_for(symbol), key=lambda o: o.order_id):
                if self._crosses(order, st.price):
                    fills.append(self._fill(order, order.remaining, order.price, is_maker=True))
            fills.extend(self._trigger_stops(st))
            self._publish_book(st)
            return fills

    def set_liquidity(self, symbol: str, qty: Decimal | str | None) -> None:
        """Cap what one taker order can fill at the current price (None: unlimited)."""
        with self._lock:
            st = self._symbol(symbol)
            st.liquidity = None if qty is None else Decimal(str(qty))
            self._publish_book(st)

    def tape(self, symbol: str) -> list[TapePoint]:
        with self._lock:
            return list(self._symbol(symbol).tape)

    def public_trades(self, symbol: str) -> list[TapePoint]:
        with self._lock:
            return [p for p in self._symbol(symbol).tape if p.trade_id is not None]

    def depth(
        self, symbol: str, limit: int = 100, synthetic_levels: int = 20
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """Resting orders plus synthetic liquidity one tick and more away from the price."""
        with self._lock:
            bids, asks = self._book_levels(self._symbol(symbol), synthetic_levels)
            bid_levels = sorted(bids.items(), key=lambda kv: -kv[0])[:limit]
            ask_levels = sorted(asks.items(), key=lambda kv: kv[0])[:limit]
            return bid_levels, ask_levels

    def depth_snapshot(
        self, symbol: str, limit: int = 100
    ) -> tuple[int, list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The book with its update id, read atomically (REST depth's lastUpdateId)."""
        with self._lock:
            bids, asks = self.depth(symbol, limit)
            return self._symbol(symbol).update_id, bids, asks

    def last_update_id(self, symbol: str) -> int:
        with self._lock:
            return self._symbol(symbol).update_id

    # ------------------------------------------------------------------ orders (the API's view)

    def place_order(
        self, api_key: str, params: Mapping[str, str], *, external: bool = False
    ) -> tuple[Order, list[Trade]]:
        """Validate and execute a new order exactly as POST /api/v3/order does; raise BinanceError on rejection."""
        with self._lock:
            prepared = self._prepare_order(api_key, params)
            return self._execute_order(prepared, external=external)

    def _prepare_order(self, api_key: str, params: Mapping[str, str]) -> _NewOrder:
        """The checks Binance makes before the matching engine: parameters and filters."""
        self._require_account(api_key)
        unknown = [k for k in params if k not in ORDER_PARAMS]
        if unknown:
            raise BinanceError(
                -1104,
                f"Not all sent parameters were read; read '{len(params) - len(unknown)}' parameter(s) "
                f"but was sent '{len(params)}'.",
            )
        st = self._symbol_param(params)
        spec = st.spec
        side = params.get("side") or ""
        if not side:
            raise mandatory("side")
        if side not in ("BUY", "SELL"):
            raise BinanceError(-1117, "Invalid side.")
        otype = params.get("type") or ""
        if not otype:
            raise mandatory("type")
        if otype not in ORDER_TYPES:
            raise BinanceError(-1116, "Invalid orderType.")
        resp_type = params.get("newOrderRespType")
        if resp_type is not None and resp_type not in RESP_TYPES:
            raise BinanceError(-1100, "Illegal characters found in parameter 'newOrderRespType'.")
        tif = params.get("timeInForce")
        qty = parse_decimal(params, "quantity")
        quote_qty = parse_decimal(params, "quoteOrderQty")
        price = parse_decimal(params, "price")
        stop_price = parse_decimal(params, "stopPrice")
        has_limit = otype in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
        if otype in STOP_TYPES:
            if stop_price is None:
                raise mandatory("stopPrice")
        elif stop_price is not None:
            raise BinanceError(-1106, "Parameter 'stopPrice' sent when not required.")
        if has_limit:
            if not tif:
                raise mandatory("timeInForce")
            if tif not in TIME_IN_FORCES:
                raise BinanceError(-1115, "Invalid timeInForce.")
            if qty is None:
                raise mandatory("quantity")
            if price is None:
                raise mandatory("price")
            if quote_qty is not None:
                raise BinanceError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
        elif otype == "LIMIT_MAKER":
            if tif:
                raise BinanceError(-1106, "Parameter 'timeInForce' sent when not required.")
            if qty is None:
                raise mandatory("quantity")
            if price is None:
                raise mandatory("price")
            tif = "GTC"
        elif otype in ("STOP_LOSS", "TAKE_PROFIT"):
            if tif:
                raise BinanceError(-1106, "Parameter 'timeInForce' sent when not required.")
            if price is not None:
                raise BinanceError(-1106, "Parameter 'price' sent when not required.")
            if quote_qty is not None:
                raise BinanceError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
            if qty is None:
                raise mandatory("quantity")
            tif = "GTC"
        else:  # MARKET
            if tif:
                raise BinanceError(-1106, "Parameter 'timeInForce' sent when not required.")
            if price is not None:
                raise BinanceError(-1106, "Parameter 'price' sent when not required.")
            if qty is None and quote_qty is None:
                raise BinanceError(
                    -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"
                )
            if qty is not None and quote_qty is not None:
                raise BinanceError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
            tif = "GTC"
        if qty is not None and qty <= 0:
            raise BinanceError(-1013, "Invalid quantity.")
        if price is not None and price <= 0:
            raise BinanceError(-1013, "Invalid price.")
        if stop_price is not None and stop_price <= 0:
            raise BinanceError(-1013, "Stop price is invalid.")
        if quote_qty is not None and quote_qty <= 0:
            raise BinanceError(-1013, "Invalid quantity.")
        if qty is not None and -qty.as_tuple().exponent > spec.base_precision:  # type: ignore[operator]
            raise BinanceError(-1111, "Parameter 'quantity' has too much precision.")
        for name, value in (("price", price), ("stopPrice", stop_price)):
            if value is not None and -value.as_tuple().exponent > spec.quote_precision:  # type: ignore[operator]
                raise BinanceError(-1111, f"Parameter '{name}' has too much precision.")

        market_price = st.price
        if otype == "MARKET" and quote_qty is not None:
            qty = floor_to_step(quote_qty / market_price, spec.step_size)
        assert qty is not None
        if stop_price is not None:
            self._check_price_filter(spec, stop_price)
        # A stop market order's notional is judged at its stop price, the price it is meant to run at.
        self._check_filters(spec, otype, qty, price, quote_qty, stop_price or market_price)

        client_id = params.get("newClientOrderId") or self._generate_client_id()
        if not _CLIENT_ID_RE.match(client_id):
            raise BinanceError(-1100, "Illegal characters found in parameter 'newClientOrderId'.")
        return _NewOrder(
            api_key, spec.symbol, side, otype, tif or "GTC", qty, price, quote_qty, stop_price, client_id
        )

    def _execute_order(self, new: _NewOrder, *, external: bool = False) -> tuple[Order, list[Trade]]:
        """The matching engine's part: duplicates, triggers, funds, then execution."""
        st = self._symbols[new.symbol]
        spec = st.spec
        api_key, side, otype, qty = new.api_key, new.side, new.type, new.qty
        if self._duplicate(api_key, spec.symbol, new.client_id):
            raise BinanceError(-2010, MSG_DUPLICATE)

        market_price = st.price
        limit_price = new.price if new.price is not None else ZERO
        is_stop = otype in STOP_TYPES
        if is_stop:
            assert new.stop_price is not None
            if self._stop_reached(otype, side, new.stop_price, market_price):
                raise BinanceError(-2010, MSG_TRIGGER_IMMEDIATELY)
        marketable = not is_stop and (
            otype == "MARKET"
            or (limit_price >= market_price if side == "BUY" else limit_price <= market_price)
        )
        if otype == "LIMIT_MAKER" and marketable:
            raise BinanceError(-2010, "Order would immediately match and take.")

        # Funds: limit orders lock at their limit price, market orders spend at the market price,
        # stop market orders lock at their stop price until they trigger.
        if side == "BUY":
            if otype == "MARKET":
                need = new.quote_qty or market_price * qty
            elif otype in MARKET_LIKE:
                assert new.stop_price is not None
                need = new.stop_price * qty
            else:
                need = limit_price * qty
            asset = spec.quote
        else:
            need = qty
            asset = spec.base
        if self._wallet(api_key, asset)[0] < need:
            raise BinanceError(-2010, MSG_INSUFFICIENT)

        now = self.now_ms()
        order = Order(
            order_id=self._next_order_id,
            api_key=api_key,
            symbol=spec.symbol,
            client_order_id=new.client_id,
            side=side,
            type=otype,
            time_in_force=new.time_in_force,
            price=limit_price,
            orig_qty=qty,
            executed_qty=ZERO,
            cummulative_quote_qty=ZERO,
            status="NEW",
            time=now,
            update_time=now,
            orig_quote_order_qty=new.quote_qty or ZERO,
            locked=ZERO,
            external=external,
            stop_price=new.stop_price or ZERO,
            is_working=not is_stop,
            working_time=-1 if is_stop else now,
        )
        self._next_order_id += 1
        self._orders[order.order_id] = order

        fillable = ZERO
        if marketable:
            fillable = qty if st.liquidity is None else min(qty, st.liquidity)
        if order.time_in_force == "FOK" and fillable < qty:
            self._report(order, "NEW")
            order = self._put(replace(order, status="EXPIRED"))
            self._report(order, "EXPIRED")
            return order, []

        if otype != "MARKET":
            wallet = self._wallet(api_key, asset)
            wallet[0] -= need
            wallet[1] += need
            order = self._put(replace(order, locked=need))
        self._report(order, "NEW")
        if otype != "MARKET":
            self._position(api_key, (asset,))

        fills: list[Trade] = []
        if fillable > 0:
            fills.append(self._fill(order, fillable, market_price, is_maker=False))
            order = self._orders[order.order_id]
        if order.remaining > 0 and (otype == "MARKET" or order.time_in_force == "IOC"):
            order = self._finish(order, "EXPIRED")
        self._publish_book(st)
        return order, fills

    def get_order(
        self, api_key: str, symbol: str, *, order_id: int | None = None, client_order_id: str | None = None
    ) -> Order:
        with self._lock:
            found = self._find(api_key, symbol, order_id, client_order_id)
            if found is None:
                raise BinanceError(-2013, MSG_NO_ORDER)
            return found

    def cancel_order(
        self,
        api_key: str,
        symbol: str,
        *,
        order_id: int | None = None,
        client_order_id: str | None = None,
        new_client_order_id: str | None = None,
    ) -> Order:
        """Cancel an open order; `new_client_order_id` is the cancel's own id (the event's `c`)."""
        with self._lock:
            found = self._find(api_key, symbol, order_id, client_order_id)
            if found is None or not found.is_open:
                raise BinanceError(-2011, MSG_UNKNOWN_ORDER)
            order = self._finish(found, "CANCELED", client_order_id=new_client_order_id)
            self._publish_book(self._symbols[symbol])
            return order

    def cancel_all(self, api_key: str, symbol: str) -> list[Order]:
        with self._lock:
            st = self._symbol(symbol)
            mine = [
                o for o in self._orders.values() if o.symbol == symbol and o.is_open and o.api_key == api_key
            ]
            if not mine:
                raise BinanceError(-2011, MSG_UNKNOWN_ORDER)
            done = [self._finish(o, "CANCELED") for o in sorted(mine, key=lambda o: o.order_id)]
            self._publish_book(st)
            return done

    def cancel_replace(self, api_key: str, params: Mapping[str, str]) -> CancelReplaceResult:
        """POST /api/v3/order/cancelReplace: filters first, then the cancel, then (by mode) the new order.

        Parameter and filter failures of the new order raise (nothing is canceled); failures of the cancel
        or of the placement come back in the result, for the server to answer -2021/-2022 as Binance does.
        """
        with self._lock:
            self._require_account(api_key)
            mode = params.get("cancelReplaceMode") or ""
            if not mode:
                raise mandatory("cancelReplaceMode")
            if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
                raise BinanceError(-1100, "Illegal characters found in parameter 'cancelReplaceMode'.")
            restriction = params.get("cancelRestrictions") or None
            if restriction is not None and restriction not in ("ONLY_NEW", "ONLY_PARTIALLY_FILLED"):
                raise BinanceError(
                    -1145, "cancelRestrictions has to be either ONLY_NEW or ONLY_PARTIALLY_FILLED."
                )
            raw_cancel_id = params.get("cancelOrderId") or None
            cancel_orig = params.get("cancelOrigClientOrderId") or None
            if raw_cancel_id is None and cancel_orig is None:
                raise BinanceError(
                    -1102,
                    "Param 'cancelOrigClientOrderId' or 'cancelOrderId' must be sent, but both were empty/null!",
                )
            try:
                cancel_id = None if raw_cancel_id is None else int(raw_cancel_id)
            except ValueError:
                raise BinanceError(-1100, "Illegal characters found in parameter 'cancelOrderId'.") from None
            new_params = {k: v for k, v in params.items() if k not in CANCEL_REPLACE_PARAMS}
            prepared = self._prepare_order(api_key, new_params)
            cancel_client_id = params.get("cancelNewClientOrderId") or self._generate_client_id()

            cancel: Order | BinanceError
            found = self._find(api_key, prepared.symbol, cancel_id, cancel_orig)
            if found is None or not found.is_open:
                cancel = BinanceError(-2011, MSG_UNKNOWN_ORDER)
            elif (restriction == "ONLY_NEW" and found.status != "NEW") or (
                restriction == "ONLY_PARTIALLY_FILLED" and found.status != "PARTIALLY_FILLED"
            ):
                cancel = BinanceError(-2011, "Order was not canceled due to cancel restrictions.")
            else:
                cancel = self._finish(found, "CANCELED", client_order_id=cancel_client_id)
            orig = found.client_order_id if found is not None else cancel_orig

            new: tuple[Order, list[Trade]] | BinanceError | None = None
            if not (isinstance(cancel, BinanceError) and mode == "STOP_ON_FAILURE"):
                try:
                    new = self._execute_order(prepared)
                except BinanceError as exc:
                    new = exc
            self._publish_book(self._symbols[prepared.symbol])
            return CancelReplaceResult(cancel, cancel_client_id, orig, new)

    def open_orders(self, api_key: str, symbol: str | None = None) -> list[Order]:
        with self._lock:
            return [
                o
                for o in self._orders.values()
                if o.api_key == api_key and o.is_open and (symbol is None or o.symbol == symbol)
            ]

    # ------------------------------------------------------------------ the double's own record (controls)

    def orders(
        self, api_key: str | None = None, *, client_order_id: str | None = None, symbol: str | None = None
    ) -> list[Order]:
        with self._lock:
            return [
                o
                for o in self._orders.values()
                if (api_key is None or o.api_key == api_key)
                and (client_order_id is None or o.client_order_id == client_order_id)
                and (symbol is None or o.symbol == symbol)
            ]

    def order(self, order_id: int) -> Order:
        with self._lock:
            try:
                return self._orders[order_id]
            except KeyError:
                raise KeyError(f"no order {order_id}") from None

    def trades(
        self, api_key: str | None = None, *, order_id: int | None = None, symbol: str | None = None
    ) -> list[Trade]:
        with self._lock:
            return [
                t
                for t in self._trades
                if (api_key is None or t.api_key == api_key)
                and (order_id is None or t.order_id == order_id)
                and (symbol is None or t.symbol == symbol)
            ]

    def fill_order(
        self, order_id: int, qty: Decimal | str | None = None, price: Decimal | str | None = None
    ) -> Trade:
        """Fill a resting order (fully by default) as a maker, at its price unless given a better one."""
        with self._lock:
            order = self.order(order_id)
            if not order.is_open:
                raise ValueError(f"order {order_id} is {order.status}")
            if not order.is_working or order.type in MARKET_LIKE:
                raise ValueError(f"order {order_id} is not resting on the book")
            fill_qty = order.remaining if qty is None else Decimal(str(qty))
            if not ZERO < fill_qty <= order.remaining:
                raise ValueError(f"fill quantity {fill_qty} outside (0, {order.remaining}]")
            fill_price = order.price if price is None else Decimal(str(price))
            trade = self._fill(order, fill_qty, fill_price, is_maker=True)
            self._publish_book(self._symbols[order.symbol])
            return trade

    def expire_order(self, order_id: int, status: Literal["EXPIRED", "CANCELED"] = "EXPIRED") -> Order:
        """End an open order as the exchange would on its own (expiry, maintenance, self-trade prevention)."""
        with self._lock:
            order = self.order(order_id)
            if not order.is_open:
                raise ValueError(f"order {order_id} is {order.status}")
            done = self._finish(order, status)
            self._publish_book(self._symbols[order.symbol])
            return done

    def place_external_order(
        self,
        api_key: str,
        symbol: str,
        side: str,
        type: str,
        quantity: Decimal | str,
        price: Decimal | str | None = None,
        *,
        time_in_force: str = "GTC",
        client_order_id: str | None = None,
        stop_price: Decimal | str | None = None,
    ) -> Order:
        """An order placed outside TradeBridge (web UI, another bot): same rules, no request, no faults."""
        params = {"symbol": symbol, "side": side, "type": type, "quantity": str(quantity)}
        if price is not None:
            params["price"] = str(price)
        if stop_price is not None:
            params["stopPrice"] = str(stop_price)
        if type in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"):
            params["timeInForce"] = time_in_force
        if client_order_id is not None:
            params["newClientOrderId"] = client_order_id
        order, _ = self.place_order(api_key, params, external=True)
        return order

    def wipe(self, *, keep_accounts: bool = True) -> None:
        """Binance resets the testnet about monthly: orders and trades vanish, balances go back to the seed."""
        with self._lock:
            self._orders.clear()
            self._trades.clear()
            self._faults.clear()
            self._requests.clear()
            self._listen_keys.clear()
            if keep_accounts:
                self._balances = {
                    key: {asset: [amount, ZERO] for asset, amount in seed.items()}
                    for key, seed in self._seed_balances.items()
                }
            else:
                self._accounts.clear()
                self._seed_balances.clear()
                self._balances.clear()
            self._reset_market()

    def set_symbol_filters(self, symbol: str, **fields: Any) -> None:
        """Change a symbol's filters (tick_size, step_size, min_qty, max_qty, min_notional, ...), in
        exchangeInfo and in the checks of orders sent from now on, as the exchange does now and then."""
        with self._lock:
            st = self._symbol(symbol)
            st.spec = replace(st.spec, **fields)

    # ------------------------------------------------------------------ faults and request log

    def inject_fault(self, fault: Fault) -> None:
        with self._lock:
            if fault.remaining < 1:
                raise ValueError("a fault must apply to at least one request")
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take_fault(self, method: str, path: str) -> Fault | None:
        """Consume one use of the first fault matching this request."""
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.method == method.upper() and fault.path == path:
                    if fault.remaining <= 1:
                        del self._faults[i]
                    else:
                        self._faults[i] = replace(fault, remaining=fault.remaining - 1)
                    return fault
            return None

    def log_request(
        self,
        method: str,
        path: str,
        params: Iterable[tuple[str, str]],
        api_key: str | None,
        status: int,
        fault: str | None,
        processed: str | None = None,
    ) -> None:
        with self._lock:
            cleaned = tuple((k, v) for k, v in params if k != "signature")
            self._requests.append(
                RequestRecord(
                    len(self._requests) + 1,
                    self.now_ms(),
                    method,
                    path,
                    cleaned,
                    api_key,
                    status,
                    fault,
                    processed,
                )
            )

    def requests(self, method: str | None = None, path: str | None = None) -> list[RequestRecord]:
        with self._lock:
            return [
                r
                for r in self._requests
                if (method is None or r.method == method.upper()) and (path is None or r.path == path)
            ]

    # ------------------------------------------------------------------ listen keys

    def new_listen_key(self, api_key: str) -> str:
        with self._lock:
            for key, owner in self._listen_keys.items():
                if owner == api_key:
                    return key
            key = secrets.token_urlsafe(45)[:60]
            self._listen_keys[key] = api_key
            return key

    def touch_listen_key(self, api_key: str, listen_key: str, *, delete: bool = False) -> None:
        with self._lock:
            if self._listen_keys.get(listen_key) != api_key:
                raise BinanceError(-1125, "This listenKey does not exist.")
            if delete:
                del self._listen_keys[listen_key]

    # ------------------------------------------------------------------ internals (lock held)

    def _reset_market(self) -> None:
        now = self.now_ms()
        previous = self._symbols if hasattr(self, "_symbols") else {}
        self._symbols = {}
        for sym, spec in self._specs.items():
            price = self._initial_prices.get(sym, Decimal(1))
            st = _SymbolState(spec, price)
            old = previous.get(sym)
            if old is not None:  # update ids never go back, so a synced client sees the reset as a diff
                st.update_id, st.book_bids, st.book_asks = old.update_id, old.book_bids, old.book_asks
            self._tape_add(st, TapePoint(now, price, ZERO))
            self._symbols[sym] = st
            self._publish_book(st)

    def _require_account(self, api_key: str) -> None:
        if api_key not in self._accounts:
            raise BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)

    def _wallet(self, api_key: str, asset: str) -> list[Decimal]:
        return self._balances.setdefault(api_key, {}).setdefault(asset, [ZERO, ZERO])

    def _symbol(self, symbol: str) -> _SymbolState:
        st = self._symbols.get(symbol)
        if st is None:
            raise BinanceError(-1121, MSG_INVALID_SYMBOL)
        return st

    def _symbol_param(self, params: Mapping[str, str]) -> _SymbolState:
        symbol = params.get("symbol")
        if not symbol:
            raise mandatory("symbol")
        return self._symbol(symbol)

    def _tape_add(self, st: _SymbolState, point: TapePoint) -> None:
        if st.tape_times and point.time < st.tape_times[-1]:
            i = bisect.bisect_right(st.tape_times, point.time)
            st.tape.insert(i, point)
            st.tape_times.insert(i, point.time)
        else:
            st.tape.append(point)
            st.tape_times.append(point.time)
        self._emit(TapeUpdate(st.spec.symbol, point))

    def _check_filters(
        self,
        spec: SymbolSpec,
        otype: str,
        qty: Decimal,
        price: Decimal | None,
        quote_qty: Decimal | None,
        market_price: Decimal,
    ) -> None:
        if price is not None:
            self._check_price_filter(spec, price)
        if qty < spec.min_qty or qty > spec.max_qty or not _on_grid(qty, spec.min_qty, spec.step_size):
            raise BinanceError(-1013, "Filter failure: LOT_SIZE")
        if otype in MARKET_LIKE and (
            qty < spec.market_min_qty or (spec.market_max_qty > 0 and qty > spec.market_max_qty)
        ):
            raise BinanceError(-1013, "Filter failure: MARKET_LOT_SIZE")
        if otype in MARKET_LIKE:
            notional = quote_qty if quote_qty is not None else qty * market_price
            if notional < spec.min_notional:
                raise BinanceError(-1013, "Filter failure: NOTIONAL")
        else:
            assert price is not None
            notional = price * qty
            if notional < spec.min_notional or notional > spec.max_notional:
                raise BinanceError(-1013, "Filter failure: NOTIONAL")

    @staticmethod
    def _check_price_filter(spec: SymbolSpec, price: Decimal) -> None:
        if (
            price < spec.min_price
            or price > spec.max_price
            or not _on_grid(price, spec.min_price, spec.tick_size)
        ):
            raise BinanceError(-1013, "Filter failure: PRICE_FILTER")

    def new_client_id(self) -> str:
        """A random id shaped like the ones Binance generates."""
        return self._generate_client_id()

    def _generate_client_id(self) -> str:
        return "".join(secrets.choice(_ID_ALPHABET) for _ in range(22))

    def _duplicate(self, api_key: str, symbol: str, client_id: str) -> bool:
        for o in self._orders.values():
            same = o.api_key == api_key and o.symbol == symbol and o.client_order_id == client_id
            if same and (self.duplicate_client_id == "known" or o.is_open):
                return True
        return False

    def _find(
        self, api_key: str, symbol: str, order_id: int | None, client_order_id: str | None
    ) -> Order | None:
        self._symbol(symbol)
        if order_id is None and client_order_id is None:
            raise BinanceError(
                -1102, "Param 'origClientOrderId' or 'orderId' must be sent, but both were empty/null!"
            )
        if order_id is not None:
            o = self._orders.get(order_id)
            if o is None or o.api_key != api_key or o.symbol != symbol:
                return None
            if client_order_id is not None and o.client_order_id != client_order_id:
                return None
            return o
        matches = [
            o
            for o in self._orders.values()
            if o.api_key == api_key and o.symbol == symbol and o.client_order_id == client_order_id
        ]
        return max(matches, key=lambda o: o.order_id) if matches else None

    def _open_orders_for(self, symbol: str) -> list[Order]:
        """Orders on the book (a stop order waiting for its trigger is open but not there)."""
        return [o for o in self._orders.values() if o.symbol == symbol and o.is_open and o.is_working]

    @staticmethod
    def _crosses(order: Order, price: Decimal) -> bool:
        return price <= order.price if order.side == "BUY" else price >= order.price

    def _put(self, order: Order) -> Order:
        self._orders[order.order_id] = order
        return order

    def _fill(self, order: Order, qty: Decimal, price: Decimal, *, is_maker: bool) -> Trade:
        spec = self._symbols[order.symbol].spec
        quote_amount = price * qty
        base_wallet = self._wallet(order.api_key, spec.base)
        quote_wallet = self._wallet(order.api_key, spec.quote)
        locked = order.locked
        if order.side == "BUY":
            if order.type in MARKET_LIKE:
                quote_wallet[0] -= quote_amount
            else:
                reserved = order.price * qty
                quote_wallet[1] -= reserved
                quote_wallet[0] += reserved - quote_amount
                locked -= reserved
            commission = (qty * self.fee_rate).quantize(EIGHT_DP, rounding=ROUND_HALF_UP)
            base_wallet[0] += qty - commission
            commission_asset = spec.base
        else:
            if order.type in MARKET_LIKE:
                base_wallet[0] -= qty
            else:
                base_wallet[1] -= qty
                locked -= qty
            commission = (quote_amount * self.fee_rate).quantize(EIGHT_DP, rounding=ROUND_HALF_UP)
            quote_wallet[0] += quote_amount - commission
            commission_asset = spec.quote
        now = self.now_ms()
        executed = order.executed_qty + qty
        updated = replace(
            order,
            executed_qty=executed,
            cummulative_quote_qty=order.cummulative_quote_qty + quote_amount,
            status="FILLED" if executed == order.orig_qty else "PARTIALLY_FILLED",
            update_time=now,
            locked=locked,
        )
        if updated.status == "FILLED" and updated.locked != 0:
            # A buy filled below its limit keeps no reservation.
            asset_wallet = quote_wallet if order.side == "BUY" else base_wallet
            asset_wallet[1] -= updated.locked
            asset_wallet[0] += updated.locked
            updated = replace(updated, locked=ZERO)
        self._put(updated)
        trade = Trade(
            trade_id=self._next_trade_id,
            order_id=order.order_id,
            api_key=order.api_key,
            symbol=order.symbol,
            side=order.side,
            price=price,
            qty=qty,
            quote_qty=quote_amount,
            commission=commission,
            commission_asset=commission_asset,
            is_buyer=order.side == "BUY",
            is_maker=is_maker,
            time=now,
        )
        self._next_trade_id += 1
        self._trades.append(trade)
        is_buyer_maker = (order.side == "BUY") == is_maker
        self._report(updated, "TRADE", trade)
        self._position(order.api_key, (spec.base, spec.quote))
        self._tape_add(
            self._symbols[order.symbol], TapePoint(now, price, qty, trade.trade_id, is_buyer_maker)
        )
        return trade

    def _finish(self, order: Order, status: str, *, client_order_id: str | None = None) -> Order:
        """End an order, releasing whatever it still has locked."""
        released = order.locked
        if released:
            self._release(order)
        done = self._put(replace(order, status=status, locked=ZERO, update_time=self.now_ms()))
        self._report(done, status, client_order_id=client_order_id)
        if released:
            spec = self._symbols[order.symbol].spec
            self._position(order.api_key, (spec.quote if order.side == "BUY" else spec.base,))
        return done

    def _release(self, order: Order) -> None:
        spec = self._symbols[order.symbol].spec
        wallet = self._wallet(order.api_key, spec.quote if order.side == "BUY" else spec.base)
        wallet[1] -= order.locked
        wallet[0] += order.locked

    def _report(
        self,
        order: Order,
        execution_type: str,
        trade: Trade | None = None,
        *,
        client_order_id: str | None = None,
    ) -> None:
        self._emit(OrderUpdate(order, execution_type, self.now_ms(), trade, client_order_id))

    def _position(self, api_key: str, assets: Iterable[str]) -> None:
        wallets = self._balances.get(api_key, {})
        balances = tuple(
            Balance(a, wallets[a][0], wallets[a][1]) for a in sorted(set(assets)) if a in wallets
        )
        self._emit(AccountPosition(api_key, balances, self.now_ms()))

    def _book_levels(
        self, st: _SymbolState, synthetic_levels: int = 20
    ) -> tuple[dict[Decimal, Decimal], dict[Decimal, Decimal]]:
        tick = st.spec.tick_size
        bids: dict[Decimal, Decimal] = {}
        asks: dict[Decimal, Decimal] = {}
        synthetic_qty = st.liquidity if st.liquidity is not None else Decimal(1)
        for i in range(1, synthetic_levels + 1):
            bid = st.price - tick * i
            if bid > 0:
                bids[bid] = bids.get(bid, ZERO) + synthetic_qty
            ask = st.price + tick * i
            asks[ask] = asks.get(ask, ZERO) + synthetic_qty
        for order in self._open_orders_for(st.spec.symbol):
            book = bids if order.side == "BUY" else asks
            book[order.price] = book.get(order.price, ZERO) + order.remaining
        return bids, asks

    def _publish_book(self, st: _SymbolState) -> None:
        """Count the book's changed levels as update ids and publish them (the diff depth stream)."""
        bids, asks = self._book_levels(st)

        def diff(old: dict[Decimal, Decimal], new: dict[Decimal, Decimal]) -> list[tuple[Decimal, Decimal]]:
            return [
                (p, new.get(p, ZERO)) for p in old.keys() | new.keys() if old.get(p, ZERO) != new.get(p, ZERO)
            ]

        bid_changes = sorted(diff(st.book_bids, bids), key=lambda kv: -kv[0])
        ask_changes = sorted(diff(st.book_asks, asks), key=lambda kv: kv[0])
        st.book_bids, st.book_asks = bids, asks
        if not bid_changes and not ask_changes:
            return
        first = st.update_id + 1
        st.update_id += len(bid_changes) + len(ask_changes)
        self._emit(
            BookUpdate(
                st.spec.symbol, first, st.update_id, tuple(bid_changes), tuple(ask_changes), self.now_ms()
            )
        )

    @staticmethod
    def _stop_reached(otype: str, side: str, stop_price: Decimal, last: Decimal) -> bool:
        """Binance's trigger rule on the last price: stop-loss buys rise into it, take-profit buys fall."""
        rising = (otype.startswith("STOP_LOSS")) == (side == "BUY")
        return last >= stop_price if rising else last <= stop_price

    def _trigger_stops(self, st: _SymbolState) -> list[Trade]:
        """Put every stop order the price reached on the book (or through it, for stop market orders)."""
        fills: list[Trade] = []
        waiting = [
            o for o in self._orders.values() if o.symbol == st.spec.symbol and o.is_open and not o.is_working
        ]
        for order in sorted(waiting, key=lambda o: o.order_id):
            if self._stop_reached(order.type, order.side, order.stop_price, st.price):
                fills.extend(self._activate(order, st))
        return fills

    def _activate(self, order: Order, st: _SymbolState) -> list[Trade]:
        now = self.now_ms()
        order = self._put(replace(order, is_working=True, working_time=now, update_time=now))
        self._report(order, "NEW")
        last = st.price
        if order.type in MARKET_LIKE:
            # The stop's reservation gives way to spending at the market price, as a market order does.
            asset = st.spec.quote if order.side == "BUY" else st.spec.base
            if order.locked:
                self._release(order)
                order = self._put(replace(order, locked=ZERO))
            need = last * order.orig_qty if order.side == "BUY" else order.orig_qty
            if self._wallet(order.api_key, asset)[0] < need:
                self._finish(order, "EXPIRED")
                return []
            marketable = True
        else:
            marketable = order.price >= last if order.side == "BUY" else order.price <= last
        fillable = ZERO
        if marketable:
            fillable = order.remaining if st.liquidity is None else min(order.remaining, st.liquidity)
        if order.time_in_force == "FOK" and fillable < order.remaining:
            self._finish(order, "EXPIRED")
            return []
        fills = []
        if fillable > 0:
            fills.append(self._fill(order, fillable, last, is_maker=False))
            order = self._orders[order.order_id]
        if order.remaining > 0 and (order.type in MARKET_LIKE or order.time_in_force == "IOC"):
            self._finish(order, "EXPIRED")
        return fills
