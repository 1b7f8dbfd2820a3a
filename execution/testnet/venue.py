"""The Binance spot testnet behind the venue port, through the exchange adapter (shared.exchanges), with each
user's own keys. The adapter parses, maps statuses and errors, and throttles; this module owns the order
lifecycle.

What makes it hard is not the happy path but the unclear ones, so the rules are:

- An order is sent with TradeBridge's order id as `newClientOrderId`, and never sent twice. After any reply that
  leaves the outcome unknown (timeout, dropped connection, 5xx, garbled answer) the order is looked up by that id;
  it is adopted if the exchange has it, and sent again (same id) only once the exchange said it doesn't know it
  AND a full `recvWindow` (plus a margin) has passed since the unclear send, so a request still travelling can no
  longer be executed. A "Duplicate order sent." reply is treated the same way: look up and adopt.
- A cancel whose outcome is unclear (including the OrderNotFound a lost acknowledgement turns into when aiohttp
  retries the DELETE) is verified by looking the order up before any state is decided.
- Whatever can't be settled within a short budget is left PENDING/PENDING_CANCEL, settled in the background and
  reported through the sink the worker gave `start()`.
- Resting orders are followed by each user's data stream (execution.testnet.user_stream) when a WebSocket base is
  configured, and by polling open orders per (user, symbol): fast after activity and slower when idle while the
  user's stream is down, slowly (reconciliation) while it is up. Both feed `_observe`, which keys fills by the
  exchange's trade id, so a fill seen twice is applied once; prices and fees are the exchange's own.
- An order that could not be sent within `send_timeout_*` of its acceptance is EXPIRED, never sent later.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol, TypeVar

import structlog

from execution.testnet.user_stream import UserStreams
from execution.venues.base import (
    EMPTY,
    BalanceLine,
    BalanceReport,
    ExternalOrder,
    FillReport,
    OrderChange,
    ResultSink,
    VenueOrder,
    VenueResult,
)
from shared import venue_status
from shared.clock import Clock
from shared.errors import Conflict, Throttled, Unavailable
from shared.exchanges import (
    BalanceDeltaEvent,
    BalancesEvent,
    ErrorKind,
    ExchangeAdapter,
    ExchangeCallFailed,
    ExchangeOrder,
    ExchangeSession,
    ExchangeTrade,
    OrderEvent,
    Reachability,
    SessionOptions,
    StreamOptions,
    VenueError,
    get_adapter,
)
from shared.marketdata import MarketData
from shared.orders import Status
from shared.retry import Attempts, Backoff

log = structlog.get_logger(__name__)
T = TypeVar("T")

ZERO = Decimal(0)
FINAL_STATUSES = frozenset({Status.FILLED, Status.CANCELED, Status.REJECTED, Status.EXPIRED})
EXCHANGE = "binance-testnet"  # the adapter (shared.exchanges) this venue trades through


class ApiKeys(Protocol):
    """What a key provider returns (gateway.services.keys.PlainKeys fits)."""

    @property
    def api_key(self) -> str: ...

    @property
    def api_secret(self) -> str: ...


KeysProvider = Callable[[str], Awaitable[ApiKeys | None]]
UsersProvider = Callable[[], Awaitable[Sequence[str]]]
OpenOrders = Callable[[], Awaitable[list[VenueOrder]]]


@dataclass(frozen=True, slots=True)
class TestnetVenueConfig:
    __test__ = False
    base_url: str
    timeout_ms: int = 10_000
    recv_window_ms: int = 10_000
    settle_margin_s: float = 1.0  # added to recvWindow before "the exchange doesn't know it" is believed
    enable_rate_limit: bool = True
    place_budget_s: float = (
        20.0  # how long place()/cancel() settle inline before handing over to the background
    )
    retry_backoff_s: float = 0.2
    max_backoff_s: float = 10.0
    default_retry_after_s: float = 1.0
    default_ban_s: float = 60.0
    poll_fast_s: float = 0.5
    poll_slow_s: float = 15.0
    balance_ttl_s: float = 5.0
    keys_ttl_s: float = 30.0
    recover_on_start: bool = True
    # The user data stream's WebSocket base (BINANCE_TESTNET_WS_URL); None: polling only.
    ws_url: str | None = None
    stream_timeout_s: float = 5.0
    stream_backoff_s: float = 0.2
    stream_max_backoff_s: float = 10.0
    # An order not sent within this long of its acceptance is EXPIRED instead of being sent late.
    send_timeout_market_s: float = 5.0
    send_timeout_limit_s: float = 30.0

    @property
    def settle_s(self) -> float:
        return self.recv_window_ms / 1000 + self.settle_margin_s


@dataclass(eq=False)
class _UserClient:
    user_id: str
    fingerprint: str
    session: ExchangeSession
    keys_checked_at: float


@dataclass(eq=False)
class _Tracked:
    order: VenueOrder
    venue_order_id: str | None
    status: str
    filled: Decimal
    cum_quote: Decimal
    trade_ids: set[str] = field(default_factory=set)
    trade_qty: Decimal = ZERO
    cancel_requested: bool = False
    triggered: bool = False  # a stop order's trigger was seen firing (reported once)

    @property
    def key(self) -> tuple[str, str]:
        return (self.order.user_id, self.order.symbol)


@dataclass(eq=False)
class _Group:
    interval: float
    next_at: float


@dataclass(eq=False)
class _Settling:
    task: asyncio.Task[VenueResult]
    detached: bool = False


def _ms_to_dt(ms: int | None, clock: Clock) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms else clock.now()


async def _wait_event(event: asyncio.Event, timeout_s: float) -> None:
    """Wait for `event`, at most `timeout_s`. ``asyncio.timeout``, not ``wait_for``: Python 3.11's ``wait_for``
    returns normally when a cancellation arrives as the event is set, and the loop waiting would carry on."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            await event.wait()


def _fingerprint(keys: ApiKeys) -> str:
    return hashlib.sha256(f"{keys.api_key}\0{keys.api_secret}".encode()).hexdigest()[:16]


class TestnetVenue:
    """The venue port for the Binance spot testnet. One instance per worker process."""

    name = "testnet"
    __test__ = False  # not a pytest class, despite the name

    def __init__(
        self,
        config: TestnetVenueConfig,
        keys_provider: KeysProvider,
        clock: Clock,
        *,
        users_provider: UsersProvider | None = None,
    ) -> None:
        self.config = config
        self._adapter: ExchangeAdapter = get_adapter(EXCHANGE, base_url=config.base_url)
        self._keys = keys_provider
        self._users = users_provider
        self._clock = clock
        self._clients: dict[str, _UserClient] = {}
        self._client_locks: dict[str, asyncio.Lock] = {}
        self._tracked: dict[str, _Tracked] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._placing: dict[str, _Settling] = {}
        self._settled: OrderedDict[str, OrderChange] = OrderedDict()
        self._balances: dict[str, tuple[float, list[dict[str, Any]]]] = {}
        self._sink: ResultSink | None = None
        self._undelivered: list[VenueResult] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._poller: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self.reachability = Reachability()  # when Binance testnet last answered (shown to users)
        self._streams: UserStreams | None = None
        self._streaming: set[str] = set()  # users whose data stream is subscribed
        self._transient: set[str] = set()  # orders last reported with an in-flight reason
        # where users' stream state is published (gateways read it)
        self._status_store: MarketData | None = None
        self._status_changed = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle

    async def start(
        self,
        sink: ResultSink,
        open_orders: OpenOrders | None = None,
        *,
        status_store: MarketData | None = None,
    ) -> None:
        """Begin tracking; with `recover_on_start`, reconcile what TradeBridge believes open in the background;
        with `status_store`, keep each streamed user's marker there (shared.venue_status) for the gateways."""
        self._sink = sink
        self._stopping = False
        pending, self._undelivered = self._undelivered, []
        for result in pending:
            await self._emit(result)
        self._poller = asyncio.create_task(self._poll_loop(), name="testnet-poller")
        if self.config.ws_url:
            self._streams = self._user_streams(self.config.ws_url)
            self._spawn(self._subscribe_known_users(), "testnet-user-streams")
            if status_store is not None:
                self._status_store = status_store
                self._spawn(self._publish_status(), "testnet-venue-status")
        if open_orders is not None and self.config.recover_on_start:
            self._spawn(self._recover_on_start(open_orders), "testnet-recover")

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        streams, self._streams = self._streams, None
        if streams is not None:
            await streams.stop()
        tasks = [t for t in (self._poller, *self._tasks, *(s.task for s in self._placing.values())) if t]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._poller = None
        self._tasks.clear()
        self._placing.clear()
        clients, self._clients = list(self._clients.values()), {}
        for uc in clients:
            with contextlib.suppress(Exception):
                await uc.session.close()

    async def _recover_on_start(self, open_orders: OpenOrders) -> None:
        """Hand each order's outcome over as soon as it is known, those the exchange answers at once (orders it
        has) before those that may settle for up to `place_budget_s` (never answered): one result for all of them
        waited for the slowest, and fills found in the first second reached the database minutes later
        (benchmarks/chaos.py, seed 21: 2.5 min after a restart)."""
        orders = await self._until_done("reading the open orders", open_orders)
        if orders is None:
            return
        pending = deque(sorted(orders, key=_unsettled))
        attempts = self._attempts()
        while pending and not self._stopping:
            order = pending.popleft()
            try:
                result = await self._recover_one(order)
            except Exception:
                # Its keys or the database not readable yet (the worker restarting beside PostgreSQL): the
                # others first, this one again after them. A recovery that gave up here left every order it had
                # not reached followed by nobody: NEW here, FILLED at the exchange (chaos.py, seed 23).
                log.exception("testnet recovery of an order failed; trying it again", order_id=order.order_id)
                pending.append(order)
                await attempts.wait()
                continue
            attempts.reset()
            await self._emit(result)
        externals = await self._until_done("listing external orders", lambda: self._recover_externals(orders))
        if externals is not None:
            await self._emit(externals)

    async def _until_done(self, what: str, call: Callable[[], Awaitable[T]]) -> T | None:
        """`call()`, again after each failure (with backoff) until it answers; None if the venue stops first."""
        attempts = self._attempts()
        while not self._stopping:
            try:
                return await call()
            except Exception:
                log.exception("testnet recovery step failed; trying again", step=what)
                await attempts.wait()
        return None

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _emit(self, result: VenueResult) -> None:
        """Hand a result to the worker, again while it cannot persist it (its database restarting): the venue has
        folded the result into what it tracks already and follows no order it reported final, so a result given
        up on stayed lost until reconciliation repaired it (found by benchmarks/chaos.py, seed 17)."""
        if not result:
            return
        if self._sink is None:
            self._undelivered.append(result)
            return
        attempts = self._attempts()
        while True:
            try:
                await self._sink(result)
                return
            except Exception as exc:
                if self._stopping:
                    log.exception("the worker could not persist a testnet result; stopping, so it is dropped")
                    return
                if attempts.count == 0:
                    log.exception("the worker could not persist a testnet result; trying again")
                else:
                    log.warning("the worker still cannot persist a testnet result", error=repr(exc))
                await attempts.wait()

    # ------------------------------------------------------------------ clients

    async def _client(self, user_id: str, *, refresh_keys: bool = True) -> _UserClient | None:
        """The user's exchange session, rebuilt (and the old one closed) when their keys change."""
        lock = self._client_locks.setdefault(user_id, asyncio.Lock())
        async with lock:
            now = self._now()
            uc = self._clients.get(user_id)
            if uc is not None and not refresh_keys and now - uc.keys_checked_at < self.config.keys_ttl_s:
                return uc
            keys = await self._keys(user_id)
            if keys is None:
                if uc is not None:
                    del self._clients[user_id]
                    await uc.session.close()
                return None
            fp = _fingerprint(keys)
            if uc is not None and uc.fingerprint == fp:
                uc.keys_checked_at = now
                return uc
            if uc is not None:
                del self._clients[user_id]
                await uc.session.close()
            session = self._adapter.session(
                keys.api_key,
                keys.api_secret,
                options=SessionOptions(
                    timeout_ms=self.config.timeout_ms,
                    enable_rate_limit=self.config.enable_rate_limit,
                    recv_window_ms=self.config.recv_window_ms,
                    default_retry_after_s=self.config.default_retry_after_s,
                    default_ban_s=self.config.default_ban_s,
                    owner=user_id,
                    reachability=self.reachability,
                ),
            )
            uc = _UserClient(user_id, fp, session, now)
            self._clients[user_id] = uc
            if self._streams is not None:
                self._spawn(self._streams.ensure(user_id, fp), "testnet-user-stream")
            return uc

    @staticmethod
    def _now() -> float:
        # Event-loop time: network pacing is about real elapsed time, not the domain clock.
        return float(asyncio.get_running_loop().time())

    @staticmethod
    async def _lookup(uc: _UserClient, order: VenueOrder, venue_order_id: str | None) -> ExchangeOrder:
        return await uc.session.fetch_order(
            order.symbol, venue_order_id=venue_order_id, client_order_id=order.order_id
        )

    @staticmethod
    async def _trades(uc: _UserClient, order: VenueOrder, venue_order_id: str) -> list[ExchangeTrade]:
        return await uc.session.order_trades(order.symbol, venue_order_id)

    @staticmethod
    async def _pause(err: VenueError, attempts: Attempts) -> None:
        """Throttles and bans are waited out by the client's gate (the failure still counts); anything else
        backs off."""
        if err.kind in (ErrorKind.RATE_LIMITED, ErrorKind.BANNED):
            attempts.next_delay()
        else:
            await attempts.wait()

    def _attempts(self) -> Attempts:
        """Failures of one order's lifecycle: retry_backoff_s doubling up to max_backoff_s."""
        cap = self.config.max_backoff_s
        return Attempts(Backoff(base=min(self.config.retry_backoff_s, cap), factor=2.0, cap=cap))

    # ------------------------------------------------------------------ results

    def _track(self, order: VenueOrder) -> _Tracked:
        t = self._tracked.get(order.order_id)
        if t is None:
            t = _Tracked(
                order=order,
                venue_order_id=order.venue_order_id,
                status=order.status,
                filled=order.filled_quantity,
                cum_quote=ZERO,
            )
        return t

    def _fill(self, t: _Tracked, trade: ExchangeTrade) -> FillReport:
        return FillReport(
            trade_id=trade.trade_id,
            order_id=t.order.order_id,
            symbol=t.order.symbol,
            side=t.order.side,
            price=trade.price,
            quantity=trade.quantity,
            quote_quantity=trade.quote_quantity,
            fee=trade.fee,
            fee_asset=trade.fee_asset,
            liquidity="MAKER" if trade.is_maker else "TAKER",
            ts=_ms_to_dt(trade.time_ms, self._clock),
        )

    async def _observe(
        self,
        uc: _UserClient,
        t: _Tracked,
        snap: ExchangeOrder,
        *,
        reason: str | None = None,
        full: bool = False,
    ) -> VenueResult:
        """Fold an exchange snapshot into the tracked order; the changes and new fills it implies.

        `full` re-reports the current state and every trade (idempotent downstream), for redeliveries and restarts.
        """
        if not full and (
            snap.filled < t.filled or (t.status in FINAL_STATUSES and snap.status not in FINAL_STATUSES)
        ):
            return EMPTY  # older than what is known (a poll overtaken by the stream, or the reverse)
        t.venue_order_id = snap.venue_order_id
        fills: list[FillReport] = []
        if snap.filled > t.trade_qty:
            rows: Sequence[ExchangeTrade] = ()
            inline = [f for f in snap.fills if f.trade_id not in t.trade_ids]
            if inline and t.trade_qty + sum((f.quantity for f in inline), ZERO) == snap.filled:
                rows = inline  # a FULL new-order answer or a stream report carries the trades it adds
            else:
                try:
                    rows = await self._trades(uc, t.order, snap.venue_order_id)
                except ExchangeCallFailed as exc:
                    log.warning(
                        "testnet trades not readable yet", order_id=t.order.order_id, error=exc.error.kind
                    )
            for row in rows:
                if row.trade_id in t.trade_ids:
                    continue
                t.trade_ids.add(row.trade_id)
                fill = self._fill(t, row)
                t.trade_qty += fill.quantity
                fills.append(fill)
        elif full and t.trade_ids:
            with contextlib.suppress(ExchangeCallFailed):
                rows = await self._trades(uc, t.order, snap.venue_order_id)
                fills = [self._fill(t, r) for r in rows]
        if reason is None and snap.status in FINAL_STATUSES and t.order.order_id in self._transient:
            reason = f"{snap.status.lower()} on Binance testnet (confirmed after the outcome was unclear)"
        if snap.status in FINAL_STATUSES:
            self._transient.discard(t.order.order_id)
        fired = snap.triggered and not t.triggered  # a stop's trigger: NEW (waiting) -> NEW (working)
        changed = snap.status != t.status or snap.filled != t.filled or full or reason is not None or fired
        t.status, t.filled, t.cum_quote = snap.status, snap.filled, snap.cum_quote
        t.triggered = t.triggered or snap.triggered
        changes: tuple[OrderChange, ...] = ()
        if changed:
            changes = (
                OrderChange(
                    order_id=t.order.order_id,
                    status=snap.status,
                    filled_quantity=snap.filled,
                    cumulative_quote=snap.cum_quote,
                    avg_price=snap.avg_price,
                    reason=reason,
                    venue_order_id=snap.venue_order_id,
                    triggered=t.triggered,
                ),
            )
        if fills:
            self._balances.pop(t.order.user_id, None)  # the user's balances moved
        owes_fills = t.trade_qty < t.filled
        if snap.status in FINAL_STATUSES and not owes_fills:
            self._untrack(t.order.order_id)
        else:
            self._tracked[t.order.order_id] = t
            self._poke(t.key)
        if changes or fills:
            self._poke(t.key)
        return VenueResult(changes=changes, fills=tuple(fills), touched_symbols=frozenset({t.order.symbol}))

    def _untrack(self, order_id: str) -> None:
        t = self._tracked.pop(order_id, None)
        if t is not None and not any(o.key == t.key for o in self._tracked.values()):
            self._groups.pop(t.key, None)

    @staticmethod
    def _final(order: VenueOrder, status: str, reason: str) -> VenueResult:
        return _status_only(order, status, reason)

    def _in_flight(self, order: VenueOrder, status: str, reason: str) -> VenueResult:
        """A provisional state with its reason; the final change that follows replaces that reason."""
        self._transient.add(order.order_id)
        return _status_only(order, status, reason, venue_order_id=order.venue_order_id)

    def _send_deadline(self, order: VenueOrder) -> tuple[float, float]:
        """(event-loop time after which the order is no longer sent, the configured limit). Counted from the
        order's acceptance, which its id carries (shared.ids: 48-bit milliseconds first), else from now."""
        limit = (
            self.config.send_timeout_market_s
            if order.type.upper() == "MARKET"
            else self.config.send_timeout_limit_s
        )
        age = 0.0
        if len(order.order_id) == 32:
            with contextlib.suppress(ValueError):
                age = max(0.0, self._clock.now().timestamp() - int(order.order_id[:12], 16) / 1000)
        return self._now() + limit - age, limit

    def _expired_unsent(self, order: VenueOrder, limit: float) -> VenueResult:
        if order.replaces is not None:
            return self._final(
                order,
                Status.EXPIRED,
                f"cancel-replace not sent: Binance testnet could not take it within {limit:g} s of the "
                "request, and it is never sent late; the old order stands",
            )
        return self._final(
            order,
            Status.EXPIRED,
            f"not sent: Binance testnet could not take it within {limit:g} s of acceptance, and a "
            f"{order.type.upper()} order is never sent late",
        )

    # ------------------------------------------------------------------ placing

    async def place(self, order: VenueOrder) -> VenueResult:
        return self._remember(await self._settle_inline(order, sent_maybe=False))

    def _remember(self, result: VenueResult) -> VenueResult:
        """Keep recent final outcomes, so a cancel right after (the worker's place-then-cancel) needn't ask again."""
        for c in result.changes:
            if c.status in FINAL_STATUSES:
                self._settled[c.order_id] = c
                self._settled.move_to_end(c.order_id)
        while len(self._settled) > 10_000:
            self._settled.popitem(last=False)
        return result

    async def _settle_inline(self, order: VenueOrder, *, sent_maybe: bool) -> VenueResult:
        """Run (or join) the order's placement; past the budget, leave it PENDING and report it via the sink."""
        settling = self._placing.get(order.order_id)
        if settling is None:
            maybe = (
                sent_maybe
                or order.order_id in self._tracked
                or order.venue_order_id is not None
                or order.status == Status.PENDING_CANCEL  # a cancel may chase an earlier unclear send
            )
            task = asyncio.ensure_future(self._placement(order, sent_maybe=maybe))
            settling = _Settling(task)
            self._placing[order.order_id] = settling
            oid = order.order_id
            task.add_done_callback(lambda _t: self._placement_done(oid))
        done, _ = await asyncio.wait({settling.task}, timeout=self.config.place_budget_s)
        if settling.task in done:
            return settling.task.result()
        settling.detached = True
        return self._in_flight(
            order, order.status, "in flight: waiting for Binance testnet to confirm whether it has the order"
        )

    def _placement_done(self, order_id: str) -> None:
        settling = self._placing.pop(order_id, None)
        if settling is None or not settling.detached or settling.task.cancelled():
            return
        exc = settling.task.exception()
        if exc is not None:
            log.error("testnet placement failed in the background", order_id=order_id, error=repr(exc))
            return
        self._spawn(self._emit(settling.task.result()), "testnet-late-result")

    async def _placement(self, order: VenueOrder, *, sent_maybe: bool) -> VenueResult:
        """Send once; after any unclear outcome, look up by client order id and resend only on a confirmed miss."""
        loop_now = self._now
        unclear_since: float | None = loop_now() if sent_maybe else None
        deadline, limit = self._send_deadline(order)
        must_lookup = True  # even a first send: a redelivered command may find its order already there
        attempts = self._attempts()
        while True:
            uc = await self._client(order.user_id)
            if uc is None:
                if unclear_since is None:
                    return self._final(
                        order, Status.REJECTED, "no Binance testnet API keys are stored for this user"
                    )
                await attempts.wait()  # keys gone mid-flight: can't look, keep trying
                continue
            if must_lookup:
                try:
                    snap = await self._lookup(uc, order, order.venue_order_id)
                except ExchangeCallFailed as exc:
                    err = exc.error
                    if err.kind is ErrorKind.ORDER_NOT_FOUND:
                        if (
                            unclear_since is not None
                            and (left := unclear_since + self.config.settle_s - loop_now()) > 0
                        ):
                            await asyncio.sleep(left)  # let a request still travelling land or expire
                            continue
                        if order.status == Status.PENDING_CANCEL:
                            return self._final(
                                order, Status.CANCELED, "canceled before it reached the exchange"
                            )
                        if order.venue_order_id is not None or order.status not in (Status.PENDING,):
                            return await self._vanished(order)
                        must_lookup, unclear_since = False, None
                        continue
                    if err.final:  # bad keys etc.: the exchange can't have taken an order from them either
                        return self._final(order, Status.REJECTED, err.reason)
                    if unclear_since is None and not sent_maybe and loop_now() > deadline:
                        return self._expired_unsent(order, limit)  # never sent, and too late to send now
                    await attempts.wait()
                    continue
                result = await self._observe(uc, self._track(order), snap, full=True)
                if order.status == Status.PENDING_CANCEL and snap.status not in FINAL_STATUSES:
                    result = result + await self.cancel(order)
                return result
            # send
            if order.status == Status.PENDING_CANCEL:
                return self._final(order, Status.CANCELED, "canceled before it reached the exchange")
            if order.replaces is not None:
                # a replacement is only ever sent by `replace`, as one cancelReplace with the old order
                return self._final(
                    order,
                    Status.REJECTED,
                    "cancel-replace not done (the exchange does not have it); the old order stands",
                )
            if loop_now() > deadline:
                return self._expired_unsent(order, limit)
            try:
                placed = await self._send(uc, order)
            except ExchangeCallFailed as exc:
                err = exc.error
                if err.kind is ErrorKind.DUPLICATE_ORDER:
                    must_lookup = True  # the exchange already has it (an earlier send, another worker): adopt
                    unclear_since = unclear_since or loop_now()
                    continue
                if err.retryable:
                    await self._pause(err, attempts)
                    continue  # refused before processing: resend the same id once the gate opens
                if err.ambiguous:
                    must_lookup, unclear_since = True, loop_now()
                    log.warning(
                        "testnet placement outcome unknown; looking it up",
                        order_id=order.order_id,
                        kind=err.kind,
                    )
                    continue
                return self._final(order, Status.REJECTED, err.reason)
            # Sent and answered: whatever it waited for (an unreachable exchange, a send that never landed), its
            # outcome is known now, so its final state needs no "confirmed after unclear" note; the engine drops
            # the in-flight reason it showed meanwhile.
            self._transient.discard(order.order_id)
            return await self._observe(uc, self._track(order), placed)

    @staticmethod
    async def _send(uc: _UserClient, order: VenueOrder) -> ExchangeOrder:
        """One send with TradeBridge's order id as the client order id (the adapter never resends)."""
        return await uc.session.create_order(
            order.symbol,
            order.type,
            order.side,
            order.quantity,
            order.price,
            client_order_id=order.order_id,
            time_in_force=order.time_in_force,
            stop_price=order.stop_price,
        )

    async def _vanished(self, order: VenueOrder) -> VenueResult:
        """TradeBridge had it on the exchange; the exchange no longer knows it (the monthly testnet reset)."""
        self._untrack(order.order_id)
        if order.status == Status.PENDING_CANCEL:
            return self._final(order, Status.CANCELED, "no longer on Binance testnet")
        return self._final(order, Status.EXPIRED, "no longer known to Binance testnet (testnet reset?)")

    # ------------------------------------------------------------------ cancel-replace

    async def replace(self, old: VenueOrder, new: VenueOrder) -> VenueResult:
        """Binance's cancelReplace (STOP_ON_FAILURE), sent once with `new`'s id as its client order id: both
        done -> `old` CANCELED and `new` live; the cancel refused -> `new` REJECTED with the reason and `old`
        as it was (never placed beside it); the cancel done but the placement refused -> `old` CANCELED and
        `new` REJECTED, as Binance leaves it. An unclear outcome is looked up, never resent blindly; one not sent
        within the placement deadline of `new` (counted from the request) is `new` EXPIRED, `old` as it was."""
        attempts = self._attempts()
        deadline, limit = self._send_deadline(new)
        looked = False
        sent_maybe = False  # a cancelReplace went out and its outcome is not known yet
        while True:
            uc = await self._client(new.user_id)
            if uc is None:
                return self._final(
                    new, Status.REJECTED, "no Binance testnet API keys are stored for this user"
                )
            if not looked:  # a redelivered command may find the replacement already there
                try:
                    return await self._adopt_replacement(uc, old, new, await self._lookup(uc, new, None))
                except ExchangeCallFailed as exc:
                    if exc.error.kind is not ErrorKind.ORDER_NOT_FOUND:
                        if exc.error.final:
                            return self._final(new, Status.REJECTED, exc.error.reason)
                        if not sent_maybe and self._now() > deadline:
                            return self._expired_unsent(new, limit)  # never sent, and too late to send now
                        await attempts.wait()
                        continue
                looked, sent_maybe = True, False  # the exchange has no replacement: none of ours landed
            if self._now() > deadline:
                return self._expired_unsent(new, limit)
            try:
                outcome = await uc.session.cancel_replace(
                    new.symbol,
                    new.type,
                    new.side,
                    new.quantity,
                    new.price,
                    cancel_client_order_id=old.order_id,
                    client_order_id=new.order_id,
                    time_in_force=new.time_in_force,
                    stop_price=new.stop_price,
                )
            except ExchangeCallFailed as exc:
                err = exc.error
                if err.retryable:
                    await self._pause(err, attempts)
                    continue  # refused before processing: the same request again once the gate opens
                if err.ambiguous:
                    await asyncio.sleep(self.config.settle_s)  # let a request still travelling land
                    looked, sent_maybe = False, True
                    try:
                        snap = await self._lookup(uc, new, None)
                    except ExchangeCallFailed as again:
                        if again.error.kind is not ErrorKind.ORDER_NOT_FOUND:
                            await attempts.wait()
                            continue
                        return self._final(
                            new,
                            Status.REJECTED,
                            f"cancel-replace not done ({err.reason}); the old order stands",
                        )
                    return await self._adopt_replacement(uc, old, new, snap)
                return self._final(new, Status.REJECTED, f"cancel-replace refused: {err.reason}")
            result = EMPTY
            if outcome.canceled is not None:
                result = result + await self._observe(uc, self._track(old), outcome.canceled)
            if outcome.placed is not None:
                return result + await self._observe(uc, self._track(new), outcome.placed)
            if outcome.cancel_error is not None:
                reason = (
                    f"cancel-replace refused: the old order could not be canceled: {outcome.cancel_error}"
                )
            else:
                reason = f"cancel-replace: the old order was canceled but the new one refused: {outcome.place_error}"
            return result + self._final(new, Status.REJECTED, reason)

    async def _adopt_replacement(
        self, uc: _UserClient, old: VenueOrder, new: VenueOrder, snap: ExchangeOrder
    ) -> VenueResult:
        """The replacement is on the exchange (an earlier send did it): report it and the old order as they are."""
        result = await self._observe(uc, self._track(new), snap, full=True)
        with contextlib.suppress(ExchangeCallFailed):
            result = result + await self._observe(uc, self._track(old), await self._lookup(uc, old, None))
        return result

    # ------------------------------------------------------------------ cancelling

    async def cancel(self, order: VenueOrder) -> VenueResult:
        settling = self._placing.get(order.order_id)
        if settling is not None:
            done, _ = await asyncio.wait({settling.task}, timeout=self.config.place_budget_s)
            if settling.task not in done:
                return self._in_flight(
                    order, Status.PENDING_CANCEL, "cancel waits for the placement to settle"
                )
        settled = self._settled.get(order.order_id)
        if settled is not None and order.order_id not in self._tracked:
            return VenueResult(changes=(settled,))
        return self._remember(await self._cancel(order))

    async def _cancel(self, order: VenueOrder) -> VenueResult:
        t = self._tracked.get(order.order_id)
        venue_id = order.venue_order_id or (t.venue_order_id if t else None)
        if t is not None:
            t.cancel_requested = True
        task = asyncio.ensure_future(self._cancellation(order, venue_id))
        done, _ = await asyncio.wait({task}, timeout=self.config.place_budget_s)
        if task in done:
            return task.result()
        task.cancel()
        tracked = self._tracked.get(order.order_id)
        if tracked is None and venue_id is not None:
            tracked = self._track(order)
            tracked.venue_order_id = venue_id
            self._tracked[order.order_id] = tracked
        if tracked is not None:
            tracked.cancel_requested = True
            self._poke(tracked.key)
        return self._in_flight(
            order, Status.PENDING_CANCEL, "cancel in flight: verifying with Binance testnet"
        )

    async def _cancellation(self, order: VenueOrder, venue_id: str | None) -> VenueResult:
        attempts = self._attempts()
        while True:
            uc = await self._client(order.user_id)
            if uc is None:
                return VenueResult()
            try:
                canceled = await uc.session.cancel_order(
                    order.symbol, venue_order_id=venue_id, client_order_id=order.order_id
                )
                return await self._observe(uc, self._track(order), canceled)
            except ExchangeCallFailed as exc:
                err = exc.error
                if err.retryable:
                    await self._pause(err, attempts)
                    continue
                if not (err.ambiguous or err.kind in (ErrorKind.ORDER_NOT_FOUND, ErrorKind.CANCEL_REJECTED)):
                    prior = self._tracked.get(order.order_id)
                    status = (
                        prior.status
                        if prior
                        else (Status.PARTIALLY_FILLED if order.filled_quantity > 0 else Status.NEW)
                    )
                    if prior:
                        prior.cancel_requested = False
                    return self._in_flight(order, status, f"cancel refused: {err.reason}")
            # Unclear, or "unknown order" (which a lost acknowledgement retried by aiohttp also reads as):
            # ask the exchange before deciding anything.
            try:
                snap = await self._lookup(uc, order, venue_id)
            except ExchangeCallFailed as exc:
                if exc.error.kind is ErrorKind.ORDER_NOT_FOUND:
                    return (
                        await self._placement(order, sent_maybe=True)
                        if venue_id is None
                        else (await self._vanished(order))
                    )
                await attempts.wait()
                continue
            if snap.status in FINAL_STATUSES:
                return await self._observe(uc, self._track(order), snap)
            venue_id = snap.venue_order_id  # still open: the cancel didn't happen; try again
            await attempts.wait()

    # ------------------------------------------------------------------ tracking

    def _fast(self, user_id: str) -> float:
        """The poll interval after activity: fast while the user's stream is down, slow (reconciliation only)
        while it pushes the changes."""
        return self.config.poll_slow_s if user_id in self._streaming else self.config.poll_fast_s

    def _poke(self, key: tuple[str, str]) -> None:
        """Activity on (user, symbol): poll it fast again (unless the user's stream is up)."""
        now = self._now()
        fast = self._fast(key[0])
        g = self._groups.get(key)
        if g is None:
            self._groups[key] = _Group(fast, now + fast)
        else:
            g.interval = min(g.interval, fast)
            g.next_at = min(g.next_at, now + fast)
        self._wake.set()

    async def _poll_loop(self) -> None:
        while not self._stopping:
            now = self._now()
            due = [k for k, g in self._groups.items() if g.next_at <= now]
            for key in due:
                try:
                    active = await self._poll_group(key)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("testnet poll failed", user_id=key[0], symbol=key[1])
                    active = False
                g = self._groups.get(key)
                if g is not None:
                    fast = self._fast(key[0])
                    g.interval = fast if active else min(self.config.poll_slow_s, max(fast, g.interval * 2))
                    g.next_at = self._now() + g.interval
            self._wake.clear()
            nxt = min((g.next_at for g in self._groups.values()), default=self._now() + 1.0)
            await _wait_event(self._wake, max(0.01, min(1.0, nxt - self._now())))

    async def _poll_group(self, key: tuple[str, str]) -> bool:
        user_id, symbol = key
        members = [
            t for t in self._tracked.values() if t.key == key and t.order.order_id not in self._placing
        ]
        if not members:
            if not any(t.key == key for t in self._tracked.values()):
                self._groups.pop(key, None)
            return False
        uc = await self._client(user_id, refresh_keys=False)
        if uc is None:
            return False
        try:
            rows = await uc.session.open_orders(symbol)
        except ExchangeCallFailed:
            return False
        open_by_id = {r.venue_order_id: r for r in rows}
        open_by_client = {r.client_order_id: r for r in rows if r.client_order_id}
        result = EMPTY
        for t in members:
            snap = open_by_id.get(t.venue_order_id or "") or open_by_client.get(t.order.order_id)
            try:
                if snap is not None:
                    if snap.filled != t.filled or snap.status != t.status or t.trade_qty < snap.filled:
                        result = result + await self._observe(uc, t, snap)
                    if t.cancel_requested:
                        result = result + await self.cancel(t.order)
                    continue
                try:
                    snap = await self._lookup(uc, t.order, t.venue_order_id)
                except ExchangeCallFailed as exc:
                    if exc.error.kind is ErrorKind.ORDER_NOT_FOUND:
                        result = result + await self._vanished(t.order)
                    continue
                result = result + await self._observe(uc, t, snap)
            except ExchangeCallFailed:
                continue
        await self._emit(result)
        return bool(result)

    # ------------------------------------------------------------------ user data streams

    def _user_streams(self, ws_url: str) -> UserStreams:
        async def keys_for(user_id: str) -> tuple[str, str, str] | None:
            keys = await self._keys(user_id)
            return None if keys is None else (_fingerprint(keys), keys.api_key, keys.api_secret)

        options = StreamOptions(
            request_timeout_s=self.config.stream_timeout_s,
            backoff_s=self.config.stream_backoff_s,
            max_backoff_s=self.config.stream_max_backoff_s,
            reachability=self.reachability,
        )
        return UserStreams(self._adapter, ws_url, self, keys_for, options)

    async def _subscribe_known_users(self) -> None:
        users: set[str] = {t.order.user_id for t in self._tracked.values()}
        if self._users is not None:
            try:
                users |= set(await self._users())
            except Exception:
                log.exception("testnet users not readable; streams start with their first order")
        for user_id in sorted(users):
            if self._streams is not None:
                await self._streams.ensure(user_id)

    async def keys_changed(self, user_id: str) -> None:
        """The user stored, rotated or deleted their keys: their session is rebuilt (or closed) and their data
        stream subscribed with the new keys (or stopped) now, before any order of theirs."""
        self._balances.pop(user_id, None)
        await self._client(user_id)  # re-reads the keys: a new session, or none
        if self._streams is not None:
            await self._streams.ensure(user_id)

    def streaming(self, user_id: str) -> bool:
        """Whether `user_id`'s data stream is subscribed right now."""
        return user_id in self._streaming

    @property
    def streams_configured(self) -> bool:
        """Whether users' orders are pushed over a data stream at all (else they are only polled)."""
        return bool(self.config.ws_url)

    async def _publish_status(self) -> None:
        """Each streamed user's marker, at once when their stream goes up or down, else every heartbeat."""
        while not self._stopping:
            store, streams = self._status_store, self._streams
            if store is not None and streams is not None:
                r, now = self.reachability, self._clock.now()
                for user_id in streams.users():
                    value = venue_status.marker(
                        streaming=user_id in self._streaming,
                        last_ok_ms=r.last_ok_ms,
                        last_failure_ms=r.last_failure_ms,
                        now=now,
                    )
                    try:
                        await store.put(venue_status.KIND, venue_status.marker_key(user_id), value)
                    except Exception as exc:  # the store (Redis) is down: the next beat tries again
                        log.warning("testnet venue status not published", error=str(exc))
                        break
            self._status_changed.clear()
            await _wait_event(self._status_changed, venue_status.HEARTBEAT_S)

    async def on_stream_up(self, user_id: str) -> None:
        """Subscribed (again): slow polling for the user, and re-read every order of theirs being followed, so
        whatever happened before the subscription or during a gap is applied now."""
        self._streaming.add(user_id)
        self._status_changed.set()
        self._balances.pop(user_id, None)
        for key in sorted({t.key for t in self._tracked.values() if t.key[0] == user_id}):
            try:
                await self._poll_group(key)
            except ExchangeCallFailed:
                self._poke(key)

    def on_stream_down(self, user_id: str, reason: str) -> None:
        """No pushes for the user until the next StreamUp: their orders are polled fast meanwhile."""
        self._streaming.discard(user_id)
        self._status_changed.set()
        for key in {t.key for t in self._tracked.values() if t.key[0] == user_id}:
            self._poke(key)

    async def on_stream_order(self, user_id: str, event: OrderEvent) -> None:
        """An executionReport: applied through `_observe`, as a poll's snapshot would be."""
        snap = event.order
        t = self._tracked.get(snap.client_order_id or "")
        if t is None:
            t = next(
                (
                    x
                    for x in self._tracked.values()
                    if x.venue_order_id == snap.venue_order_id and x.order.user_id == user_id
                ),
                None,
            )
        oid = t.order.order_id if t is not None else (snap.client_order_id or "")
        settling = self._placing.get(oid)
        if settling is not None:
            # The placement still decides what the order is; apply the report once it has.
            settling.task.add_done_callback(
                lambda _t: self._spawn(self.on_stream_order(user_id, event), "testnet-stream-late")
            )
            return
        if t is None or t.order.user_id != user_id:
            return  # not ours to follow (already final, or external: reconciliation lists those)
        uc = await self._client(user_id, refresh_keys=False)
        if uc is None:
            return
        await self._emit(await self._observe(uc, t, snap))

    async def on_stream_balances(self, user_id: str, event: BalancesEvent | BalanceDeltaEvent) -> None:
        """The account's balances moved: the next read asks the exchange instead of the cache, and the user is
        told (a BALANCE_UPDATE in testnet mode): the assets pushed, or after a bare delta (a deposit or
        transfer) all of them, read again."""
        self._balances.pop(user_id, None)
        if isinstance(event, BalancesEvent):
            lines = tuple(BalanceLine(b.asset, b.free, b.locked) for b in event.balances)
        else:
            try:
                rows = await self.balances(user_id)
            except (Conflict, Throttled, Unavailable):
                return  # the next read shows them
            lines = tuple(BalanceLine(r["asset"], r["free"], r["locked"]) for r in rows)
        if lines:
            await self._emit(VenueResult(balances=(BalanceReport(user_id, "testnet", lines),)))

    # ------------------------------------------------------------------ restart reconciliation

    async def recover(self, open_orders: Sequence[VenueOrder], *, users: Iterable[str] = ()) -> VenueResult:
        """Check every order TradeBridge believes open or in flight against the exchange, and list the orders the
        exchange has that TradeBridge doesn't (external). Whatever can't be settled now is reported via the sink."""
        result = EMPTY
        for order in open_orders:
            result = result + await self._recover_one(order)
        return result + await self._recover_externals(open_orders, users)

    async def _recover_one(self, order: VenueOrder) -> VenueResult:
        if _unsettled(order):
            return await self._settle_inline(order, sent_maybe=True)
        return await self._recover_known(order)

    async def _recover_externals(
        self, open_orders: Sequence[VenueOrder], users: Iterable[str] = ()
    ) -> VenueResult:
        """The orders each user has at the exchange that TradeBridge does not know (placed elsewhere)."""
        result = EMPTY
        all_users = {o.user_id for o in open_orders} | set(users)
        if self._users is not None:
            with contextlib.suppress(Exception):
                all_users |= set(await self._users())
        known_ids = {o.order_id for o in open_orders} | set(self._tracked)
        known_venue_ids = {o.venue_order_id for o in open_orders if o.venue_order_id} | {
            t.venue_order_id for t in self._tracked.values() if t.venue_order_id
        }
        for user_id in sorted(all_users):
            result = result + await self._externals(user_id, known_ids, known_venue_ids)
        return result

    async def _recover_known(self, order: VenueOrder) -> VenueResult:
        attempts = self._attempts()
        while True:
            uc = await self._client(order.user_id)
            if uc is None:
                return EMPTY
            try:
                snap = await self._lookup(uc, order, order.venue_order_id)
            except ExchangeCallFailed as exc:
                if exc.error.kind is ErrorKind.ORDER_NOT_FOUND:
                    return await self._vanished(order)
                if exc.error.final or attempts.count >= 3:
                    t = self._track(order)
                    self._tracked[order.order_id] = t  # the poller keeps asking
                    self._poke(t.key)
                    return EMPTY
                await attempts.wait()
                continue
            t = self._track(order)
            t.status = order.status  # compare with what TradeBridge believes
            result = await self._observe(uc, t, snap, full=bool(order.filled_quantity or snap.filled))
            if order.status == Status.PENDING_CANCEL and snap.status not in FINAL_STATUSES:
                result = result + await self.cancel(order)
            return result

    async def _externals(self, user_id: str, known_ids: set[str], known_venue_ids: set[str]) -> VenueResult:
        uc = await self._client(user_id)
        if uc is None:
            return EMPTY
        try:
            rows = await uc.session.open_orders()
        except ExchangeCallFailed as exc:
            log.warning(
                "testnet open orders unreadable; external orders not checked",
                user_id=user_id,
                error=exc.error.kind,
            )
            return EMPTY
        found: list[ExternalOrder] = []
        for snap in rows:
            if snap.venue_order_id in known_venue_ids or (snap.client_order_id or "") in known_ids:
                continue
            found.append(
                ExternalOrder(
                    user_id=user_id,
                    venue_order_id=snap.venue_order_id,
                    client_order_id=snap.client_order_id,
                    symbol=snap.symbol,
                    side=snap.side,
                    type=snap.type,
                    time_in_force=snap.time_in_force,
                    quantity=snap.quantity,
                    price=snap.price,
                    status=snap.status,
                    filled_quantity=snap.filled,
                    cumulative_quote=snap.cum_quote,
                    avg_price=snap.avg_price,
                    created_at=_ms_to_dt(snap.time_ms, self._clock),
                )
            )
        return VenueResult(external_orders=tuple(found))

    # ------------------------------------------------------------------ balances

    async def balances(self, user_id: str, *, fresh: bool = False) -> list[dict[str, Any]]:
        """`[{asset, free, locked, total}]` (Decimals) from the exchange, cached briefly (unless `fresh`),
        dropped after fills and when a read fails: numbers the exchange can no longer confirm are not served."""
        cached = self._balances.get(user_id)
        if not fresh and cached is not None and cached[0] > self._now():
            return cached[1]
        uc = await self._client(user_id, refresh_keys=False)
        if uc is None:
            raise Conflict("No Binance testnet API keys are stored for this account.")
        try:
            found = await uc.session.balances()
        except ExchangeCallFailed as exc:
            self._balances.pop(user_id, None)
            err = exc.error
            if err.kind in (ErrorKind.RATE_LIMITED, ErrorKind.BANNED):
                raise Throttled(
                    "Binance testnet is throttling requests; try again shortly.", int(err.retry_after or 1)
                ) from exc
            if err.final:
                raise Conflict(f"Binance testnet refused the balance request: {err.reason}.") from exc
            reached = self.reachability.last_reached_at
            since = f" (last reached {reached.isoformat().replace('+00:00', 'Z')})" if reached else ""
            raise Unavailable(f"Binance testnet could not be reached{since}; try again.") from exc
        rows: list[dict[str, Any]] = [
            {"asset": b.asset, "free": b.free, "locked": b.locked, "total": b.total}
            for b in found
            if b.free or b.locked
        ]
        self._balances[user_id] = (self._now() + self.config.balance_ttl_s, rows)
        return rows


def _unsettled(order: VenueOrder) -> bool:
    """Whether TradeBridge never heard back about the order's placement (it may not be at the exchange)."""
    return order.status == Status.PENDING or (
        order.status == Status.PENDING_CANCEL and order.venue_order_id is None
    )


def _status_only(
    order: VenueOrder, status: str, reason: str, *, venue_order_id: str | None = None
) -> VenueResult:
    """A status change with nothing filled beyond what the order already had."""
    change = OrderChange(
        order_id=order.order_id,
        status=status,
        filled_quantity=order.filled_quantity,
        cumulative_quote=ZERO,
        avg_price=None,
        reason=reason,
        venue_order_id=venue_order_id,
    )
    return VenueResult(changes=(change,))


def build_testnet_venue(
    settings: Any,
    keys_provider: KeysProvider,
    clock: Clock,
    *,
    users_provider: UsersProvider | None = None,
    **overrides: Any,
) -> TestnetVenue:
    """The venue for `Settings` (BINANCE_TESTNET_URL); `overrides` tune TestnetVenueConfig (tests: short timeouts)."""
    ws_url = getattr(settings, "binance_testnet_ws_url", None)
    overrides = {"ws_url": str(ws_url) if ws_url else None, **overrides}
    config = TestnetVenueConfig(base_url=str(settings.binance_testnet_url), **overrides)
    return TestnetVenue(config, keys_provider, clock, users_provider=users_provider)


__all__ = [
    "ApiKeys",
    "KeysProvider",
    "TestnetVenue",
    "TestnetVenueConfig",
    "UsersProvider",
    "build_testnet_venue",
]
