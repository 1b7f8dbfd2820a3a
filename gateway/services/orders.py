"""Order commands and queries. Accepting an order writes, in the request's one transaction: the order, its
first status, the paper reservation (ledger) and the command in the outbox. The relay publishes after commit."""

from __future__ import annotations

import base64
import functools
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession
from sqlmodel import col, select

from gateway.services.acceptance import Acceptance, GroupCommit, accept_paper_pg
from gateway.services.accounts import has_testnet_keys
from shared.clock import Clock
from shared.contracts import order_event_payload, order_out, order_out_of_row
from shared.db import upsert_insert
from shared.errors import Conflict, DomainError, InvalidInput, NotFound, Throttled, Unauthorized
from shared.ids import new_id
from shared.ledger_store import Movement, SqlLedger, balance_payload
from shared.marketdata import MarketData
from shared.metrics import ORDERS_ACCEPTED
from shared.models import Balance, Fill, Order, OrderEvent, PaperAccount
from shared.orders import FINAL, OPEN, Status
from shared.outbox import (
    add_outbox,
    add_outbox_row,
    outbox_row,
    private_row,
    publish_after_commit,
    write_outbox,
)
from shared.paper.ledger import (
    FeeSchedule,
    JournalEntry,
    Reservation,
    deposit_entry,
    required_reservation,
    reserve_entry,
)
from shared.paper.rules import MarketRules, RuleViolation, normalize_symbol
from shared.ratelimit import RateLimiter
from shared.schemas.orders import (
    PRICED_TYPES,
    STOP_TYPES,
    FillOut,
    OrderDetail,
    OrderEventOut,
    OrderIn,
    OrderOut,
    OrderPage,
    ReplaceIn,
)
from shared.streams import CommandRouting, order_command
from shared.trading_errors import InsufficientBalance


@functools.cache
def _order_defaults() -> dict[str, Any]:
    """Every column of an order row with its model default: both paths insert complete rows."""
    table = Order.__table__  # type: ignore[attr-defined]
    return {
        c.name: c.default.arg if c.default is not None and c.default.is_scalar else None
        for c in table.columns
    }


@functools.cache
def _insert_order(dialect: str) -> Any:
    """``INSERT INTO orders ... ON CONFLICT (user_id, client_order_id) DO NOTHING RETURNING id``, built once:
    the values come as parameters, so no per-request statement construction and cache-key work."""
    table = Order.__table__  # type: ignore[attr-defined]
    return (
        upsert_insert(dialect)(table)
        .on_conflict_do_nothing(index_elements=["user_id", "client_order_id"])
        .returning(table.c.id)
    )


def fill_out(f: Fill) -> FillOut:
    return FillOut(
        trade_id=f.trade_id,
        order_id=f.order_id,
        symbol=f.symbol,
        side=f.side,
        price=f.price,
        quantity=f.quantity,
        fee=f.fee,
        fee_asset=f.fee_asset,
        liquidity=f.liquidity,
        ts=f.ts,
    )


def request_hash(body: OrderIn, symbol: str, mode: str, tif: str) -> str:
    canon = "|".join(
        [
            symbol,
            body.side,
            body.type,
            format(body.quantity.normalize(), "f"),
            format(body.price.normalize(), "f") if body.price is not None else "",
            tif,
            mode,
            *([format(body.stop_price.normalize(), "f")] if body.stop_price is not None else []),
        ]
    )
    return hashlib.sha256(canon.encode()).hexdigest()


def check_order_rules(
    rules: MarketRules, order_type: str, quantity: Decimal, price: Decimal | None, stop_price: Decimal | None
) -> None:
    """The market's filters for an order of this type (``RuleViolation``, a 422 naming the field): a priced
    order's price and notional, a stop's trigger price on the tick, a stop market order's notional at its stop
    price (the price it is meant to run at, as Binance judges it), a market order's quantity step."""
    if stop_price is not None:
        try:
            rules.price_to_ticks(stop_price)
        except RuleViolation as exc:
            message = exc.errors[0]["message"] if exc.errors else exc.detail
            raise RuleViolation(exc.rule, "stop_price", str(message)) from None
    if order_type in PRICED_TYPES:
        assert price is not None
        rules.limit_order(price, quantity)
    elif stop_price is not None:
        rules.market_order(quantity, stop_price)
    else:
        rules.qty_to_lots(quantity)


def rules_for(markets: dict[str, MarketRules], symbol: str) -> MarketRules:
    """The market's rules for `BTCUSDT`, `btcusdt` or `BTC/USDT`; an unknown symbol is a 422 naming the field."""
    try:
        name = normalize_symbol(symbol)
    except (ValueError, InvalidInput):
        name = symbol.upper()
    rules = markets.get(name)
    if rules is None:
        raise RuleViolation("SYMBOL", "symbol", f"unknown symbol {symbol}; see GET /api/markets")
    return rules


def encode_cursor(order_id: str) -> str:
    return base64.urlsafe_b64encode(order_id.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput(
            "cursor is not valid", errors=[{"field": "cursor", "message": "malformed"}]
        ) from None
    if not raw.isalnum() or len(raw) > 36:
        raise InvalidInput("cursor is not valid", errors=[{"field": "cursor", "message": "malformed"}])
    return raw


class Autocommit:
    """PostgreSQL: one autocommit connection for a placement, taken on first use, given back by ``release``
    (a placement that goes on in the request's session releases it first: never two connections at once)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._conn: AsyncConnection | None = None

    async def connection(self) -> AsyncConnection:
        if self._conn is None:
            conn = await self._engine.connect().start()
            self._conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        return self._conn

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await conn.close()


class UserChanged(Exception):
    """The placing user, taken unread from the gateway's hints, is not (or no longer) as assumed: read it."""


class Owner(Protocol):
    """Whose orders: a ``User`` row or the order routes' lighter ``Trader``."""

    @property
    def id(self) -> str: ...

    @property
    def mode(self) -> str: ...


@dataclass
class OrderService:
    session: AsyncSession
    clock: Clock
    markets: dict[str, MarketRules]
    fees: FeeSchedule
    market_data: MarketData
    limiter: RateLimiter
    order_rate_limit: str
    starting_balances: dict[str, Decimal]
    routing: CommandRouting  # which stream each order's commands go to (its paper partition)
    funded: set[str] = field(default_factory=set)
    # PostgreSQL placements (``gateway.routes.orders.placement``): a funded user's paper order is accepted by its
    # one statement alone on a connection of its own (``group``: with the placements arriving together), with no
    # BEGIN/COMMIT round trips; ``autocommit`` is the placement's connection for the reads around it
    autocommit: Autocommit | None = None
    group: GroupCommit | None = None
    # The testnet's own rules (gateway.services.testnet_markets); None: the configured ones, as paper.
    testnet_markets: dict[str, MarketRules] | None = None
    # Reads the placing user afresh (``Unauthorized`` if gone or locked): for a user passed in unread, taken
    # from the gateway's hints (``verified`` False), whose order the acceptance statement checks instead.
    recheck: Callable[[], Awaitable[Owner]] | None = None
    # Placements on PostgreSQL (``gateway.routes.orders.placement``): the request's unit of work is opened on
    # first use (``session`` is None until then), since a funded user's paper order never uses it.
    open_session: Callable[[], Awaitable[AsyncSession]] | None = None

    def rules_for(self, symbol: str, mode: str = "paper") -> MarketRules:
        """The rules an order of `mode` is accepted by: the exchange's own on the testnet."""
        testnet = self.testnet_markets if mode == "testnet" else None
        return rules_for(self.markets if testnet is None else testnet, symbol)

    async def place(self, user: Owner, body: OrderIn) -> tuple[OrderOut, bool]:
        """``_place`` for a user read in this request, or for one taken unread from the gateway's hints
        (``verified`` False; PostgreSQL): then only the one-statement acceptance goes ahead unread, and it checks
        the user itself (``gateway.services.acceptance``); any other path, a changed user, or a refusal before
        the statement reads the user first (``recheck``), so a locked user still gets 401 and a changed mode is followed."""
        try:
            if getattr(user, "verified", True) or self.recheck is None:
                return await self._place(user, body)
            try:
                return await self._place(user, body)
            except UserChanged:
                fresh = await self.recheck()  # Unauthorized if the user is gone or locked
            except DomainError:
                fresh = await self.recheck()
                if fresh.mode == user.mode:
                    raise
            return await self._place(fresh, body)
        except UserChanged:  # a user read in this request, locked before its order's statement ran
            raise Unauthorized() from None

    async def _place(self, user: Owner, body: OrderIn) -> tuple[OrderOut, bool]:
        """Returns (order as shown, created). An idempotent replay returns the existing order with created=False.

        Round trips are the cost of this path (each one is ~0.1 ms of CPU on either side here), so the common
        case makes few: the order row goes in with ``INSERT ... ON CONFLICT DO NOTHING`` (a replay is found by
        the conflict, not by a look-up first); on PostgreSQL a paper order's reservation, postings, status row
        and outbox rows go in the same statement (``gateway.services.acceptance``), elsewhere as a ledger entry
        and multi-row inserts: the same rows, made once here, whichever way they are written. The outbox rows are
        published once the unit of work commits (``shared.outbox.publish_after_commit``), or the group commit's
        statement returns. A replay that a check before the insert would refuse (rate limit, no reference price)
        still gets its existing order."""
        mode = body.mode or user.mode
        rules = self.rules_for(body.symbol, mode)
        tif = body.time_in_force or ("GTC" if body.type in PRICED_TYPES else "IOC")
        digest = request_hash(body, rules.symbol, mode, tif)
        check_order_rules(rules, body.type, body.quantity, body.price, body.stop_price)
        now = self.clock.now()
        order_id = new_id()
        row: dict[str, Any] = {
            "id": order_id,
            "user_id": user.id,
            "client_order_id": body.client_order_id or order_id,
            "request_hash": digest,
            "mode": mode,
            "symbol": rules.symbol,
            "side": body.side,
            "type": body.type,
            "time_in_force": tif,
            "quantity": body.quantity,
            "price": body.price,
            "stop_price": body.stop_price,
            "status": Status.PENDING,
            "created_at": now,
            "updated_at": now,
        }
        on_its_own = self.group is not None and mode == "paper" and user.id in self.funded
        verified = getattr(user, "verified", True)
        if not verified and not on_its_own:
            raise UserChanged  # only the one statement checks the user itself
        if self.autocommit is not None and not on_its_own:
            await self.autocommit.release()  # the request's session from here on: one connection at a time
        if not on_its_own and self.open_session is not None:
            self.session, self.open_session = await self.open_session(), None
        # The autocommit connection is taken when a statement needs it, not before the Redis round trips (rate
        # limit, reference price): held across them, placements in flight past the pool's size opened and closed
        # overflow connections (a PostgreSQL backend each) under load (issue #16).
        link = self.autocommit if on_its_own else None
        try:
            await self.limiter.hit(self.order_rate_limit, f"orders:{user.id}")
            if mode == "testnet" and not await has_testnet_keys(self.session, user.id):
                raise Conflict("Save Binance testnet API keys before placing testnet orders.")
            reservation = await self._reservation(row, rules) if mode == "paper" else None
        except (Conflict, Throttled):
            existing = (
                await self._by_client_id(user.id, body.client_order_id, link)
                if body.client_order_id
                else None
            )
            if existing is None:
                raise
            return self._replay(existing, digest), False
        if reservation is not None:
            row["reserved_asset"] = reservation.asset
            row["reserved_amount"] = reservation.amount
            row["reserved_price_cap"] = reservation.price_cap
            await self.ensure_paper_funded(user.id)
        # What accepting writes, made once for either database: the order row, the RESERVE entry (paper), the
        # first status row and the outbox rows (BALANCE_UPDATE with the balances once moved, the command, the
        # ORDER_UPDATE).
        row = {**_order_defaults(), **row}
        order = order_out_of_row(row)  # what the answer and the ORDER_UPDATE show; no ORM instance is needed
        entries = (
            [reserve_entry(user.id, reservation.asset, reservation.amount, order_id)] if reservation else []
        )
        status_row = {
            "order_id": order_id,
            "status": row["status"],
            "filled_quantity": Decimal(0),
            "reason": None,
            "ts": now,
        }
        short: InsufficientBalance | None = None
        if entries and (on_its_own or self.session.bind.dialect.name == "postgresql"):  # type: ignore[union-attr]
            # an unread user is checked by the statement, with the default mode assumed when the body names none
            assumed = None if verified or body.mode else user.mode
            acceptance = Acceptance(row, Movement(entries), status_row, self._outbox(row, order, []), assumed)
            accepted, short = await self._accept_pg(acceptance, on_its_own=on_its_own)
        else:
            accepted = await self._accept(row, entries, status_row, order)
        if not accepted:
            existing = await self._by_client_id(user.id, row["client_order_id"], link)
            if existing is None:
                if short is not None:  # not affordable (a replay is answered even so)
                    raise short
                # the conflicting row vanished: cannot happen, orders are never deleted
                raise Conflict("client_order_id conflict; retry")
            return self._replay(existing, digest), False
        ORDERS_ACCEPTED.labels(mode).inc()
        return order, True

    async def _accept(
        self, row: dict[str, Any], entries: list[JournalEntry], status_row: dict[str, Any], order: OrderOut
    ) -> bool:
        """Acceptance statement by statement (SQLite; testnet orders): False if the order already existed."""
        if not await self._insert(row):
            return False
        balances = None
        if entries:
            views = await SqlLedger(self.session, self.clock).apply(entries, check_funds=True)
            balances = balance_payload(views)
        await self.session.execute(insert(OrderEvent.__table__), [status_row])  # type: ignore[attr-defined]
        publish_after_commit(self.session)
        await write_outbox(self.session, self._outbox(row, order, balances))
        return True

    async def _accept_pg(
        self, acceptance: Acceptance, *, on_its_own: bool
    ) -> tuple[bool, InsufficientBalance | None]:
        """The same acceptance of a paper order in one statement (``gateway.services.acceptance``): for a funded
        user on its own, gathered with the placements arriving together (``group``; published by it), else in
        the request's session (published after its commit). (False, None) if the order already existed, (False,
        the shortfall) if it cannot be afforded; either way nothing of it was written."""
        if on_its_own:
            assert self.group is not None
            done = await self.group.accept(acceptance)
        else:
            (done,) = await accept_paper_pg(self.session, [acceptance])
            publish_after_commit(self.session).extend(done.committed)
        if not done.user_ok:  # nothing written
            raise UserChanged
        if not done.inserted:
            return False, done.short
        acceptance.movement.checked(done.balances, check_funds=True)
        return True, None

    def _outbox(
        self, row: dict[str, Any], order: OrderOut, balances: list[dict[str, str]] | None
    ) -> list[dict[str, Any]]:
        """The outbox rows of an accepted order (its ``row`` as written, shown as ``order``): BALANCE_UPDATE
        (paper: ``balances`` as moved; the one statement on PostgreSQL fills them in itself), the command, the
        ORDER_UPDATE."""
        now, user_id = row["created_at"], row["user_id"]
        rows = []
        if balances is not None:
            rows.append(
                private_row("BALANCE_UPDATE", user_id, {"mode": "paper", "balances": balances}, now=now)
            )
        rows.append(
            outbox_row(
                self.routing.stream(row["mode"], row["symbol"]),
                order_command("place", row["id"], row["mode"]),
                now=now,
            )
        )
        rows.append(self._event_row(user_id, order, now))
        return rows

    async def _insert(self, row: dict[str, Any]) -> bool:
        """Insert the order unless (user, client_order_id) exists; True when inserted."""
        stmt = _insert_order(self.session.bind.dialect.name)  # type: ignore[union-attr]
        return (await self.session.execute(stmt, row)).first() is not None

    def _replay(self, existing: Order, digest: str) -> OrderOut:
        if existing.request_hash != digest:
            raise Conflict(
                "client_order_id was already used for a different order",
                errors=[{"field": "client_order_id", "message": "already used with another body"}],
            )
        return order_out(existing)

    async def _by_client_id(
        self, user_id: str, client_order_id: str, link: Autocommit | None = None
    ) -> Order | None:
        """The user's order with this client order id: through the session, or read on ``link`` (an autocommit
        placement's connection, taken now) as a row."""
        if link is not None:
            table = Order.__table__  # type: ignore[attr-defined]
            found = await (await link.connection()).execute(
                table.select().where(table.c.user_id == user_id, table.c.client_order_id == client_order_id)
            )
            hit = found.first()
            return Order(**hit._mapping) if hit is not None else None
        result = await self.session.execute(
            select(Order).where(col(Order.user_id) == user_id, col(Order.client_order_id) == client_order_id)
        )
        return result.scalar_one_or_none()

    async def _reservation(self, row: dict[str, Any], rules: MarketRules) -> Reservation:
        """What a paper order locks (pure arithmetic, plus the reference price of a market buy). A stop order
        locks at acceptance what it will run with: a stop market order as a market order at its stop price."""
        is_buy = row["side"] == "BUY"
        reference = None
        if row["type"] in STOP_TYPES:
            price = row["price"] if row["type"] in PRICED_TYPES else None
            return required_reservation(rules, self.fees, is_buy, row["quantity"], price, row["stop_price"])
        if row["type"] == "MARKET" and is_buy:
            reference = await self.reference_price(rules.symbol)
            if reference is None:
                raise Conflict(f"No market price for {rules.symbol} yet; use a LIMIT order or retry shortly.")
            rules.check_notional(reference, row["quantity"])
        return required_reservation(rules, self.fees, is_buy, row["quantity"], row["price"], reference)

    async def reference_price(self, symbol: str) -> Decimal | None:
        """The price a market buy reserves against: the best ask of the paper book, else the last ticker."""
        depth = await self.market_data.get("depth", symbol)
        if depth and depth.get("asks"):
            return Decimal(str(depth["asks"][0][0]))
        ticker = await self.market_data.get("ticker", symbol)
        if ticker and ticker.get("price") and not ticker.get("stale"):
            return Decimal(str(ticker["price"]))
        return None

    async def ensure_paper_funded(self, user_id: str) -> None:
        """The starting deposit, made exactly once when the account first uses paper mode.

        ``funded`` (shared by the process) remembers accounts seen funded by an earlier, committed
        transaction, so their orders skip this statement. An account is only remembered once the insert
        finds the row already there: the transaction that inserts it may still roll back."""
        if user_id in self.funded:
            return
        result = await self.session.execute(
            upsert_insert(self.session.bind.dialect.name)(PaperAccount)  # type: ignore[union-attr]
            .values(user_id=user_id, funded_at=self.clock.now())
            .on_conflict_do_nothing(index_elements=["user_id"])
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            self.funded.add(user_id)
        elif self.starting_balances:
            entries = [
                deposit_entry(user_id, asset, amount, f"start:{user_id}")
                for asset, amount in self.starting_balances.items()
                if amount > 0
            ]
            await SqlLedger(self.session, self.clock).apply(entries)

    def _event_row(self, user_id: str, order: Order | OrderOut, now: Any) -> dict[str, Any]:
        return private_row("ORDER_UPDATE", user_id, order_event_payload(order), now=now)

    def _event(self, order: Order, now: Any) -> None:
        add_outbox_row(self.session, self._event_row(order.user_id, order, now))

    async def get_owned(self, user: Owner, order_id: str, *, for_update: bool = False) -> Order:
        stmt = select(Order).where(col(Order.id) == order_id, col(Order.user_id) == user.id)
        if for_update:
            stmt = stmt.with_for_update()
        order = (await self.session.execute(stmt)).scalar_one_or_none()
        if order is None:
            raise NotFound(f"No order {order_id}.")
        return order

    async def cancel(self, user: Owner, order_id: str) -> Order:
        order = await self.get_owned(user, order_id, for_update=True)
        if order.status in FINAL:
            raise Conflict(f"The order is already {order.status}; it cannot be canceled.")
        if order.status == Status.PENDING_CANCEL:
            return order
        now = self.clock.now()
        order.status = Status.PENDING_CANCEL
        order.version += 1
        order.updated_at = now
        self.session.add(order)
        self.session.add(
            OrderEvent(order_id=order.id, status=order.status, filled_quantity=order.filled_quantity, ts=now)
        )
        add_outbox(
            self.session,
            self.routing.stream(order.mode, order.symbol),
            order_command("cancel", order.id, order.mode),
            now=now,
        )
        self._event(order, now)
        await self.session.flush()
        return order

    async def replace(self, user: Owner, order_id: str, body: ReplaceIn) -> Order:
        """Cancel-replace: a new order (a new id, ``replaces`` = the old one) with the old one's symbol, side,
        type, time in force and mode, and the given quantity (default: the old remainder), price and stop
        price; one command does both, so exactly one of the two is live afterwards.

        Paper: nothing is locked here. The worker, the books' one writer, checks that the free balance plus
        what the old order's remainder frees covers the new reservation, then cancels, moves the lock and
        places in one transaction; if the new order cannot be placed the old one stays untouched and the new
        one is REJECTED. Affordability is checked here too (against the old order's remainder as stored), so
        an amend that cannot be afforded is a 422 at once. Testnet: the worker sends one Binance cancelReplace
        (STOP_ON_FAILURE) with the new order's id as its client order id.
        """
        old = await self.get_owned(user, order_id, for_update=True)
        if old.status not in (Status.NEW, Status.PARTIALLY_FILLED) or old.external:
            raise Conflict(f"Only an open order placed here can be replaced; this one is {old.status}.")
        pending = await self.session.scalar(
            select(col(Order.id)).where(col(Order.replaces) == old.id, col(Order.status) == Status.PENDING)
        )
        if pending is not None:
            raise Conflict(f"Order {old.id} is already being replaced by {pending}.")
        rules = self.rules_for(old.symbol, old.mode)
        if body.price is not None and old.type not in PRICED_TYPES:
            raise InvalidInput(
                f"a {old.type} order has no price", errors=[{"field": "price", "message": "not allowed"}]
            )
        if body.stop_price is not None and old.type not in STOP_TYPES:
            raise InvalidInput(
                f"a {old.type} order has no stop price",
                errors=[{"field": "stop_price", "message": "not allowed"}],
            )
        quantity = body.quantity if body.quantity is not None else old.quantity - old.filled_quantity
        price = body.price if body.price is not None else old.price
        stop_price = body.stop_price if body.stop_price is not None else old.stop_price
        check_order_rules(rules, old.type, quantity, price, stop_price)
        now = self.clock.now()
        new_order_id = new_id()
        client_id = body.client_order_id or new_order_id
        canon = "|".join(
            ["replace", old.id, format(quantity.normalize(), "f"), str(price or ""), str(stop_price or "")]
        )
        row: dict[str, Any] = {
            **_order_defaults(),
            "id": new_order_id,
            "user_id": user.id,
            "client_order_id": client_id,
            "request_hash": hashlib.sha256(canon.encode()).hexdigest(),
            "mode": old.mode,
            "symbol": old.symbol,
            "side": old.side,
            "type": old.type,
            "time_in_force": old.time_in_force,
            "quantity": quantity,
            "price": price,
            "stop_price": stop_price,
            "replaces": old.id,
            "status": Status.PENDING,
            "created_at": now,
            "updated_at": now,
        }
        if old.mode == "paper":
            is_buy = old.side == "BUY"
            if old.type == "MARKET":  # never open for long; kept for completeness
                raise Conflict("A MARKET order cannot be replaced.")
            need = required_reservation(
                rules,
                self.fees,
                is_buy,
                quantity,
                price if old.type in PRICED_TYPES else None,
                stop_price,
            )
            freed = Decimal(0)
            if old.reserved_asset == need.asset and old.reserved_amount and old.quantity:
                freed = old.reserved_amount * (old.quantity - old.filled_quantity) / old.quantity
            balance = await self.session.get(Balance, (user.id, need.asset))
            free = balance.free if balance is not None else Decimal(0)
            if free + freed < need.amount:
                raise InsufficientBalance(user.id, need.asset, need.amount, free + freed)
            row["reserved_asset"] = need.asset
            row["reserved_amount"] = need.amount
            row["reserved_price_cap"] = need.price_cap
        if not await self._insert(row):
            raise Conflict(
                "client_order_id was already used for a different order",
                errors=[{"field": "client_order_id", "message": "already used"}],
            )
        order = Order(**row)
        self.session.add(
            OrderEvent(order_id=order.id, status=order.status, filled_quantity=Decimal(0), ts=now)
        )
        add_outbox(
            self.session,
            self.routing.stream(order.mode, order.symbol),
            order_command("replace", order.id, order.mode),
            now=now,
        )
        self._event(order, now)
        await self.session.flush()
        return order

    async def detail(self, user: Owner, order_id: str) -> OrderDetail:
        order = await self.get_owned(user, order_id)
        fills = (
            await self.session.execute(
                select(Fill).where(col(Fill.order_id) == order.id).order_by(col(Fill.ts), col(Fill.id))
            )
        ).scalars()
        history = (
            await self.session.execute(
                select(OrderEvent).where(col(OrderEvent.order_id) == order.id).order_by(col(OrderEvent.id))
            )
        ).scalars()
        return OrderDetail(
            **order_out(order).model_dump(),
            fills=[fill_out(f) for f in fills],
            history=[
                OrderEventOut(status=e.status, filled_quantity=e.filled_quantity, reason=e.reason, ts=e.ts)
                for e in history
            ],
        )

    async def list(
        self,
        user: Owner,
        *,
        status: str,
        symbol: str | None,
        mode: str | None,
        limit: int,
        cursor: str | None,
    ) -> OrderPage:
        stmt = select(Order).where(col(Order.user_id) == user.id)
        if status == "open":
            stmt = stmt.where(col(Order.status).in_([Status.PENDING, *OPEN]))
        elif status == "closed":
            stmt = stmt.where(col(Order.status).in_(list(FINAL)))
        if symbol:
            stmt = stmt.where(col(Order.symbol) == self.rules_for(symbol).symbol)
        if mode:
            stmt = stmt.where(col(Order.mode) == mode)
        if cursor:
            stmt = stmt.where(col(Order.id) < decode_cursor(cursor))
        rows = list(
            (await self.session.execute(stmt.order_by(col(Order.id).desc()).limit(limit + 1))).scalars()
        )
        more = len(rows) > limit
        rows = rows[:limit]
        return OrderPage(
            items=[order_out(o) for o in rows], next_cursor=encode_cursor(rows[-1].id) if more else None
        )
