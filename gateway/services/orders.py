"""Order commands and queries. Accepting an order writes, in the request's one transaction: the order, its
first status, the paper reservation (ledger) and the command in the outbox. The relay publishes after commit."""

from __future__ import annotations

import base64
import functools
import hashlib
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

import orjson
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from execution.paper.ledger import (
    FeeSchedule,
    InsufficientBalance,
    Reservation,
    deposit_entry,
    required_reservation,
    reserve_entry,
)
from execution.paper.rules import MarketRules, RuleViolation, normalize_symbol
from execution.store.ledger import BalanceView, SqlLedger, balance_payload
from gateway.services.accounts import has_testnet_keys
from shared.clock import Clock
from shared.db import upsert_insert
from shared.errors import Conflict, InvalidInput, NotFound, Throttled
from shared.ids import new_id
from shared.marketdata import MarketData
from shared.metrics import ORDERS_ACCEPTED
from shared.models import Balance, Fill, Order, OrderEvent, PaperAccount
from shared.orders import FINAL, OPEN, Status
from shared.outbox import (
    Committed,
    add_outbox,
    add_outbox_row,
    outbox_row,
    private_row,
    publish_after_commit,
    write_outbox,
)
from shared.ratelimit import RateLimiter
from shared.schemas.orders import FillOut, OrderDetail, OrderEventOut, OrderIn, OrderOut, OrderPage
from shared.streams import PRIVATE_EVENTS, command_stream, order_command, user_stream

# PostgreSQL: a paper order accepted in ONE statement (data-modifying CTEs, applied together or not at all):
# insert the order unless (user, client_order_id) exists; if it was inserted, move the reservation from free to
# locked only if the free balance covers it (the UPDATE's row lock serialises concurrent orders of the account
# and PostgreSQL re-checks the condition on the locked row); if both happened, add the ledger postings, the
# first status row and the outbox rows (BALANCE_UPDATE built from the updated row, the command, the
# ORDER_UPDATE), in that order, marked eager: the request publishes them after its commit (they come back in
# the result). The result says which of these happened; an order inserted without its
# reservation is undone by the caller raising (the request's transaction rolls back). One round trip instead
# of six: at the gateway's rates, round trips are its main cost.
_ACCEPT_PAPER_PG = text(
    """
WITH ins AS (
  INSERT INTO orders (id, user_id, client_order_id, request_hash, mode, symbol, side, type, time_in_force,
                      quantity, price, status, filled_quantity, cumulative_quote, reserved_asset, reserved_amount,
                      reserved_price_cap, external, version, created_at, updated_at)
  VALUES (:id, :user_id, :client_order_id, :request_hash, :mode, :symbol, :side, :type, :time_in_force,
          CAST(:quantity AS NUMERIC), CAST(:price AS NUMERIC), :status, 0, 0, :asset, CAST(:amount AS NUMERIC),
          CAST(:price_cap AS NUMERIC), false, 0, CAST(:now AS TIMESTAMPTZ), CAST(:now AS TIMESTAMPTZ))
  ON CONFLICT (user_id, client_order_id) DO NOTHING
  RETURNING id
), res AS (
  UPDATE balances
     SET free = free - CAST(:amount AS NUMERIC), locked = locked + CAST(:amount AS NUMERIC),
         updated_at = CAST(:now AS TIMESTAMPTZ)
   WHERE account_id = CAST(:user_id AS VARCHAR) AND asset = CAST(:asset AS VARCHAR)
     AND free >= CAST(:amount AS NUMERIC) AND EXISTS (SELECT FROM ins)
  RETURNING trim_scale(free) AS free, trim_scale(locked) AS locked
), post AS (
  INSERT INTO ledger_postings (entry_kind, ref, account_id, asset, bucket, amount, ts)
  SELECT 'RESERVE', CAST(:id AS VARCHAR), CAST(:user_id AS VARCHAR), CAST(:asset AS VARCHAR), b.bucket, b.amount,
         CAST(:now AS TIMESTAMPTZ)
    FROM res, (VALUES ('free', -CAST(:amount AS NUMERIC)), ('locked', CAST(:amount AS NUMERIC))) AS b(bucket, amount)
), ev AS (
  INSERT INTO order_events (order_id, status, filled_quantity, ts)
  SELECT ins.id, CAST(:status AS VARCHAR), 0, CAST(:now AS TIMESTAMPTZ) FROM ins, res
), ob AS (
  INSERT INTO outbox (stream, mirror_to, payload, created_at, eager)
  SELECT m.stream, m.mirror_to, m.payload, CAST(:now AS TIMESTAMPTZ), true FROM (
    SELECT 1 AS n, CAST(:private AS VARCHAR) AS stream, CAST(:mirror AS VARCHAR) AS mirror_to,
           json_build_object('type', 'BALANCE_UPDATE', 'user_id', CAST(:user_id AS VARCHAR),
                             'ts', CAST(:ts AS VARCHAR), 'data', json_build_object('mode', 'paper', 'balances',
               json_build_array(json_build_object('asset', CAST(:asset AS VARCHAR), 'free', res.free::text,
                                                  'locked', res.locked::text,
                                                  'total', trim_scale(res.free + res.locked)::text)))) AS payload
      FROM res
    UNION ALL
    SELECT 2, CAST(:commands AS VARCHAR), NULL, CAST(:command AS JSON) FROM res
    UNION ALL
    SELECT 3, CAST(:private AS VARCHAR), CAST(:mirror AS VARCHAR), CAST(:update AS JSON) FROM res
  ) AS m ORDER BY m.n
  RETURNING id, stream, mirror_to, payload
)
SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT free FROM res) AS free, (SELECT locked FROM res) AS locked,
       (SELECT json_agg(json_build_object('id', id, 'stream', stream, 'mirror_to', mirror_to, 'payload', payload)
                        ORDER BY id) FROM ob) AS outbox
"""
)


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


def order_out(o: Order) -> OrderOut:
    return OrderOut(
        order_id=o.id,
        client_order_id=o.client_order_id,
        mode=o.mode,  # type: ignore[arg-type]
        symbol=o.symbol,
        side=o.side,  # type: ignore[arg-type]
        type=o.type,  # type: ignore[arg-type]
        time_in_force=o.time_in_force,  # type: ignore[arg-type]
        quantity=o.quantity,
        price=o.price,
        status=o.status,
        filled_quantity=o.filled_quantity,
        cumulative_quote=o.cumulative_quote,
        avg_price=o.avg_price,
        reason=o.reason,
        external=o.external,
        version=o.version,
        created_at=o.created_at,
        updated_at=o.updated_at,
    )


def order_event_payload(o: Order) -> dict[str, Any]:
    return order_out(o).model_dump(mode="json")


def fill_out(f: Fill) -> FillOut:
    return FillOut(
        trade_id=f.trade_id,
        order_id=f.order_id,
        symbol=f.symbol,
        side=f.side,  # type: ignore[arg-type]
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
        ]
    )
    return hashlib.sha256(canon.encode()).hexdigest()


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
    funded: set[str] = field(default_factory=set)

    def rules_for(self, symbol: str) -> MarketRules:
        return rules_for(self.markets, symbol)

    async def place(self, user: Owner, body: OrderIn) -> tuple[Order, bool]:
        """Returns (order, created). An idempotent replay returns the existing order with created=False.

        Round trips are the cost of this path (each one is ~0.1 ms of CPU on either side here), so the common
        case makes few: the order row goes in with ``INSERT ... ON CONFLICT DO NOTHING`` (a replay is found by
        the conflict, not by a look-up first); on PostgreSQL a paper order's reservation, postings, status row
        and outbox rows go in the same statement (``_ACCEPT_PAPER_PG``), elsewhere as a ledger entry and
        multi-row inserts. The outbox rows are the request's to publish after its commit
        (``outbox_to_publish``). A replay that a check before the insert would refuse (rate limit, no reference
        price) still gets its existing order."""
        rules = self.rules_for(body.symbol)
        mode = body.mode or user.mode
        tif = body.time_in_force or ("GTC" if body.type == "LIMIT" else "IOC")
        digest = request_hash(body, rules.symbol, mode, tif)
        if body.type == "LIMIT":
            assert body.price is not None
            rules.limit_order(body.price, body.quantity)
        else:
            rules.qty_to_lots(body.quantity)
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
            "status": Status.PENDING,
            "created_at": now,
            "updated_at": now,
        }
        try:
            await self.limiter.hit(self.order_rate_limit, f"orders:{user.id}")
            if mode == "testnet" and not await has_testnet_keys(self.session, user.id):
                raise Conflict("Save Binance testnet API keys before placing testnet orders.")
            reservation = await self._reservation(row, rules) if mode == "paper" else None
        except (Conflict, Throttled):
            existing = (
                await self._by_client_id(user.id, body.client_order_id) if body.client_order_id else None
            )
            if existing is None:
                raise
            return self._replay(existing, digest), False
        if reservation is not None:
            row["reserved_asset"] = reservation.asset
            row["reserved_amount"] = reservation.amount
            row["reserved_price_cap"] = reservation.price_cap
        if reservation is not None and self.session.bind.dialect.name == "postgresql":  # type: ignore[union-attr]
            return await self._accept_paper_pg(user, row, reservation, digest)
        if not await self._insert(row):
            existing = await self._by_client_id(user.id, row["client_order_id"])
            if existing is None:  # the conflicting row vanished: cannot happen, orders are never deleted
                raise Conflict("client_order_id conflict; retry")
            return self._replay(existing, digest), False
        order = Order(**row)
        outbox: list[dict[str, Any]] = []
        if reservation is not None:
            views = await self._reserve(user.id, order, reservation)
            outbox.append(
                private_row(
                    "BALANCE_UPDATE", user.id, {"mode": "paper", "balances": balance_payload(views)}, now=now
                )
            )
        await self.session.execute(
            insert(OrderEvent.__table__),  # type: ignore[attr-defined]
            [{"order_id": order.id, "status": order.status, "filled_quantity": Decimal(0), "ts": now}],
        )
        outbox.append(
            outbox_row(
                command_stream(mode),
                order_command("place", order.id, mode),
                now=now,
            )
        )
        outbox.append(self._event_row(order, now))
        publish_after_commit(self.session)
        await write_outbox(self.session, outbox)
        ORDERS_ACCEPTED.labels(mode).inc()
        return order, True

    async def _accept_paper_pg(
        self, user: Owner, row: dict[str, Any], reservation: Reservation, digest: str
    ) -> tuple[Order, bool]:
        """The paper acceptance of ``place`` in one statement (``_ACCEPT_PAPER_PG``), with the same outcomes."""
        await self.ensure_paper_funded(user.id)
        order = Order(**row)
        now = row["created_at"]
        mode = row["mode"]
        params = {
            **{
                k: row[k]
                for k in ("id", "user_id", "client_order_id", "request_hash", "mode", "symbol", "side")
            },
            **{k: row[k] for k in ("type", "time_in_force", "quantity", "price", "status")},
            "asset": reservation.asset,
            "amount": reservation.amount,
            "price_cap": reservation.price_cap,
            "now": now,
            "ts": now.isoformat(),
            "private": PRIVATE_EVENTS,
            "mirror": user_stream(user.id),
            "commands": command_stream(mode),
            "command": orjson.dumps(order_command("place", order.id, mode)).decode(),
            "update": orjson.dumps(self._event_row(order, now)["payload"], default=str).decode(),
        }
        got = (await self.session.execute(_ACCEPT_PAPER_PG, params)).one()
        if not got.inserted:
            existing = await self._by_client_id(user.id, row["client_order_id"])
            if existing is None:  # the conflicting row vanished: cannot happen, orders are never deleted
                raise Conflict("client_order_id conflict; retry")
            return self._replay(existing, digest), False
        if got.free is None:  # inserted but not affordable: raising rolls the insert back with the request
            table = Balance.__table__  # type: ignore[attr-defined]
            free = (
                await self.session.execute(
                    select(table.c.free).where(
                        table.c.account_id == user.id, table.c.asset == reservation.asset
                    )
                )
            ).scalar_one_or_none()
            raise InsufficientBalance(user.id, reservation.asset, reservation.amount, free or Decimal(0))
        after_commit = publish_after_commit(self.session)
        for r in got.outbox:
            after_commit.append(Committed(int(r["id"]), r["stream"], r["payload"], r["mirror_to"]))
        ORDERS_ACCEPTED.labels(mode).inc()
        return order, True

    @property
    def outbox_to_publish(self) -> list[Committed]:
        """The outbox rows this request wrote for itself to publish once committed (see ``shared.outbox``)."""
        return publish_after_commit(self.session)

    async def _insert(self, row: dict[str, Any]) -> bool:
        """Insert the order unless (user, client_order_id) exists; True when inserted."""
        stmt = _insert_order(self.session.bind.dialect.name)  # type: ignore[union-attr]
        return (await self.session.execute(stmt, row)).first() is not None

    def _replay(self, existing: Order, digest: str) -> Order:
        if existing.request_hash != digest:
            raise Conflict(
                "client_order_id was already used for a different order",
                errors=[{"field": "client_order_id", "message": "already used with another body"}],
            )
        return existing

    async def _by_client_id(self, user_id: str, client_order_id: str) -> Order | None:
        result = await self.session.execute(
            select(Order).where(Order.user_id == user_id, Order.client_order_id == client_order_id)
        )
        return result.scalar_one_or_none()

    async def _reservation(self, row: dict[str, Any], rules: MarketRules) -> Reservation:
        """What a paper order locks (pure arithmetic, plus the reference price of a market buy)."""
        is_buy = row["side"] == "BUY"
        reference = None
        if row["type"] == "MARKET" and is_buy:
            reference = await self.reference_price(rules.symbol)
            if reference is None:
                raise Conflict(f"No market price for {rules.symbol} yet; use a LIMIT order or retry shortly.")
            rules.check_notional(reference, row["quantity"])
        return required_reservation(rules, self.fees, is_buy, row["quantity"], row["price"], reference)

    async def _reserve(self, user_id: str, order: Order, res: Reservation) -> list[BalanceView]:
        await self.ensure_paper_funded(user_id)
        return await SqlLedger(self.session, self.clock).apply(
            [reserve_entry(user_id, res.asset, res.amount, order.id)], check_funds=True
        )

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

    def _event_row(self, order: Order, now: Any) -> dict[str, Any]:
        return private_row("ORDER_UPDATE", order.user_id, order_event_payload(order), now=now)

    def _event(self, order: Order, now: Any) -> None:
        add_outbox_row(self.session, self._event_row(order, now))

    async def get_owned(self, user: Owner, order_id: str, *, for_update: bool = False) -> Order:
        stmt = select(Order).where(Order.id == order_id, Order.user_id == user.id)
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
            command_stream(order.mode),
            order_command("cancel", order.id, order.mode),
            now=now,
        )
        self._event(order, now)
        await self.session.flush()
        return order

    async def detail(self, user: Owner, order_id: str) -> OrderDetail:
        order = await self.get_owned(user, order_id)
        fills = (
            await self.session.execute(
                select(Fill).where(Fill.order_id == order.id).order_by(Fill.ts, Fill.id)
            )
        ).scalars()
        history = (
            await self.session.execute(
                select(OrderEvent).where(OrderEvent.order_id == order.id).order_by(OrderEvent.id)
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
        self, user: Owner, *, status: str, symbol: str | None, mode: str | None, limit: int, cursor: str | None
    ) -> OrderPage:
        stmt = select(Order).where(Order.user_id == user.id)
        if status == "open":
            stmt = stmt.where(Order.status.in_([Status.PENDING, *OPEN]))
        elif status == "closed":
            stmt = stmt.where(Order.status.in_(list(FINAL)))
        if symbol:
            stmt = stmt.where(Order.symbol == self.rules_for(symbol).symbol)
        if mode:
            stmt = stmt.where(Order.mode == mode)
        if cursor:
            stmt = stmt.where(Order.id < decode_cursor(cursor))
        rows = list((await self.session.execute(stmt.order_by(Order.id.desc()).limit(limit + 1))).scalars())
        more = len(rows) > limit
        rows = rows[:limit]
        return OrderPage(
            items=[order_out(o) for o in rows], next_cursor=encode_cursor(rows[-1].id) if more else None
        )
