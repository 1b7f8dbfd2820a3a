"""Testnet checks: for every user with keys, TradeBridge's orders and fills against the exchange's (the
binance-testnet adapter at `BINANCE_TESTNET_URL`), and the exchange's balances for sanity.

The exchange is read through `ExchangeAccount`, a slice of the adapter's session (shared.exchanges): its
records carry exact Decimals and our order statuses, from the adapter's one parser and status map."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from reconciliation.findings import CheckOutcome, Finding, fmt
from shared.credentials import PlainKeys
from shared.exchanges import (
    ExchangeBalance,
    ExchangeCallFailed,
    ExchangeOrder,
    ExchangeTrade,
    get_adapter,
)
from shared.models import Fill, Order
from shared.orders import Status

CLOSED_BY_RECONCILIATION = "(reconciliation)"
EXCHANGE = "binance-testnet"


class ExchangeAccount(Protocol):
    """What the checks read (shared.exchanges.ExchangeSession fits)."""

    async def all_orders(self, symbol: str, since_ms: int) -> list[ExchangeOrder]: ...

    async def all_trades(self, symbol: str, since_ms: int) -> list[ExchangeTrade]: ...

    async def find_order(
        self, symbol: str, *, venue_order_id: str | None = None, client_order_id: str | None = None
    ) -> ExchangeOrder | None: ...

    async def balances(self) -> list[ExchangeBalance]: ...

    async def close(self) -> None: ...


ExchangeFactory = Callable[[PlainKeys], ExchangeAccount]


def exchange_sessions(base_url: str) -> ExchangeFactory:
    """Sessions of the binance-testnet adapter at `base_url`, one per user's keys."""
    adapter = get_adapter(EXCHANGE, base_url=base_url)
    return lambda keys: adapter.session(keys.api_key, keys.api_secret)


@dataclass(frozen=True, slots=True)
class TestnetCheckConfig:
    since: datetime  # orders and fills newer than this are compared (older open orders are, too)
    symbols: Sequence[str]
    reset_min_orders: int = 3  # a "reset" needs at least this many known orders...
    reset_missing_ratio: float = 0.8  # ...of which at least this share vanished


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def order_snapshot(e: ExchangeOrder) -> dict[str, Any]:
    return {
        "venue_order_id": e.venue_order_id,
        "client_order_id": e.client_order_id or "",
        "symbol": e.symbol,
        "side": e.side,
        "type": e.type,
        "time_in_force": e.time_in_force,
        "status": e.status,
        "exchange_status": e.exchange_status,
        "quantity": fmt(e.quantity),
        "price": fmt(e.price),
        "filled": fmt(e.filled),
        "cum_quote": fmt(e.cum_quote),
        "time_ms": e.time_ms or 0,
    }


def trade_snapshot(t: ExchangeTrade) -> dict[str, Any]:
    return {
        "trade_id": t.trade_id,
        "venue_order_id": t.venue_order_id,
        "symbol": t.symbol,
        "side": t.side,
        "price": fmt(t.price),
        "quantity": fmt(t.quantity),
        "quote_quantity": fmt(t.quote_quantity),
        "fee": fmt(t.fee),
        "fee_asset": t.fee_asset,
        "is_maker": t.is_maker,
        "time_ms": t.time_ms or 0,
    }


async def check_user(
    session: AsyncSession,
    user_id: str,
    exchange: ExchangeAccount,
    cfg: TestnetCheckConfig,
    *,
    reset_acknowledged_at: datetime | None = None,
    balances_out: dict[str, dict[str, str]] | None = None,
) -> CheckOutcome:
    out = CheckOutcome(f"testnet:{user_id}")
    since = max(cfg.since, reset_acknowledged_at) if reset_acknowledged_at else cfg.since
    known = [
        o
        for o in (
            await session.execute(
                select(Order).where(col(Order.user_id) == user_id, col(Order.mode) == "testnet")
            )
        ).scalars()
        if o.created_at >= since
        or (
            o.status not in _FINAL
            and (reset_acknowledged_at is None or o.created_at >= reset_acknowledged_at)
        )
    ]
    local_fills = [
        f
        for f in (
            await session.execute(
                select(Fill).where(col(Fill.user_id) == user_id, col(Fill.mode) == "testnet")
            )
        ).scalars()
        if f.ts >= since
    ]
    symbols = sorted(set(cfg.symbols) | {o.symbol for o in known})
    ex_orders: list[ExchangeOrder] = []
    ex_trades: list[ExchangeTrade] = []
    for symbol in symbols:
        ex_orders += await exchange.all_orders(symbol, _ms(since))
        ex_trades += await exchange.all_trades(symbol, _ms(since))
    by_vid = {e.venue_order_id: e for e in ex_orders}
    by_cid = {e.client_order_id: e for e in ex_orders if e.client_order_id}

    def match(o: Order) -> ExchangeOrder | None:
        if o.venue_order_id and o.venue_order_id in by_vid:
            return by_vid[o.venue_order_id]
        return by_cid.get(o.id) or (by_cid.get(o.client_order_id) if o.client_order_id else None)

    # A Binance testnet reset: most known orders vanished and the trade history is empty (or ids restarted).
    at_venue = [o for o in known if o.venue_order_id and not o.external]
    vanished = [o for o in at_venue if match(o) is None]
    if len(at_venue) >= cfg.reset_min_orders and len(vanished) >= cfg.reset_missing_ratio * len(at_venue):
        max_ex_id = max((int(e.venue_order_id) for e in ex_orders), default=0)
        min_known = min(
            (int(vid) for vid in (o.venue_order_id or "" for o in vanished) if vid.isdigit()), default=0
        )
        if not ex_trades or max_ex_id < min_known:
            out.checked += 1
            out.add(
                Finding(
                    "testnet_reset",
                    "testnet",
                    "exchange",
                    f"{len(at_venue)} known orders",
                    f"{len(vanished)} missing, {len(ex_trades)} trades",
                    user_id=user_id,
                    details={
                        "known": len(at_venue),
                        "missing": len(vanished),
                        "exchange_trades": len(ex_trades),
                        "local_fills": len(local_fills),
                    },
                )
            )
            return out

    matched: set[str] = set()
    tb_by_vid: dict[str, Order] = {}
    for o in known:
        out.checked += 1
        e = match(o)
        if e is None and not (o.venue_order_id is None and o.status in _NEVER_PLACED):
            e = await exchange.find_order(o.symbol, venue_order_id=o.venue_order_id, client_order_id=o.id)
        if e is None:
            if o.status in _NEVER_PLACED and o.venue_order_id is None:
                continue
            if o.status in _FINAL and (o.reason or "").endswith(CLOSED_BY_RECONCILIATION):
                continue  # an admin already closed it as missing
            out.add(
                Finding(
                    "exchange_order_missing",
                    "testnet",
                    "exchange",
                    o.status,
                    "absent",
                    user_id=user_id,
                    symbol=o.symbol,
                    order_id=o.id,
                    details={"venue_order_id": o.venue_order_id},
                )
            )
            continue
        matched.add(e.venue_order_id)
        tb_by_vid[e.venue_order_id] = o
        if o.status in (Status.PENDING, Status.PENDING_CANCEL):
            continue  # in flight: the stuck-order check watches these
        snap = order_snapshot(e)
        if o.status != e.status:
            out.add(
                Finding(
                    "order_status_drift",
                    "testnet",
                    "exchange",
                    o.status,
                    e.status,
                    user_id=user_id,
                    symbol=o.symbol,
                    order_id=o.id,
                    details={"exchange": snap},
                )
            )
        if o.filled_quantity != e.filled:
            out.add(
                Finding(
                    "order_fill_drift",
                    "testnet",
                    "exchange",
                    fmt(o.filled_quantity),
                    fmt(e.filled),
                    user_id=user_id,
                    symbol=o.symbol,
                    order_id=o.id,
                    details={"exchange": snap},
                )
            )

    trades_by_order: dict[str, list[ExchangeTrade]] = {}
    for trade in ex_trades:
        trades_by_order.setdefault(trade.venue_order_id, []).append(trade)
    for e in ex_orders:
        if e.venue_order_id in matched:
            continue
        out.checked += 1
        out.add(
            Finding(
                "unknown_exchange_order",
                "testnet",
                "exchange",
                "absent",
                f"{e.status} {e.side} {fmt(e.quantity)}",
                user_id=user_id,
                symbol=e.symbol,
                order_id=e.venue_order_id,
                details={
                    "exchange": order_snapshot(e),
                    "trades": [trade_snapshot(t) for t in trades_by_order.get(e.venue_order_id, [])],
                },
            )
        )

    local = {(f.symbol, f.trade_id): f for f in local_fills}
    remote = {(t.symbol, t.trade_id): t for t in ex_trades}
    for key in sorted(set(local) | set(remote)):
        f, t = local.get(key), remote.get(key)
        if t is not None and t.venue_order_id not in tb_by_vid:
            continue  # its order is unknown to TradeBridge: adopted (with its trades) through that finding
        out.checked += 1
        if f is None and t is not None:
            o = tb_by_vid[t.venue_order_id]
            out.add(
                Finding(
                    "fill_missing",
                    "testnet",
                    "exchange",
                    "absent",
                    f"{fmt(t.quantity)}@{fmt(t.price)}",
                    user_id=user_id,
                    symbol=t.symbol,
                    order_id=o.id,
                    trade_id=t.trade_id,
                    details={"exchange": trade_snapshot(t)},
                )
            )
        elif f is not None and t is None:
            out.add(
                Finding(
                    "fill_extra",
                    "testnet",
                    "exchange",
                    f"{fmt(f.quantity)}@{fmt(f.price)}",
                    "absent",
                    user_id=user_id,
                    symbol=f.symbol,
                    order_id=f.order_id,
                    trade_id=f.trade_id,
                )
            )
        elif f is not None and t is not None:
            if (f.price, f.quantity) != (t.price, t.quantity):
                out.add(
                    Finding(
                        "fill_price_mismatch",
                        "testnet",
                        "exchange",
                        f"{fmt(f.quantity)}@{fmt(f.price)}",
                        f"{fmt(t.quantity)}@{fmt(t.price)}",
                        user_id=user_id,
                        symbol=f.symbol,
                        order_id=f.order_id,
                        trade_id=f.trade_id,
                    )
                )
            if (f.fee, f.fee_asset) != (t.fee, t.fee_asset):
                out.add(
                    Finding(
                        "fill_fee_mismatch",
                        "testnet",
                        "exchange",
                        f"{fmt(f.fee)} {f.fee_asset}",
                        f"{fmt(t.fee)} {t.fee_asset}",
                        user_id=user_id,
                        symbol=f.symbol,
                        order_id=f.order_id,
                        trade_id=f.trade_id,
                    )
                )

    balances = {b.asset: (b.free, b.locked) for b in await exchange.balances()}
    if balances_out is not None:
        balances_out[user_id] = {
            a: fmt(fr + lk) or "0" for a, (fr, lk) in sorted(balances.items()) if fr or lk
        }
    for asset, (free, locked) in sorted(balances.items()):
        out.checked += 1
        if free < 0 or locked < 0:
            out.add(
                Finding(
                    "exchange_negative_balance",
                    "testnet",
                    "exchange",
                    None,
                    f"{fmt(free)}/{fmt(locked)}",
                    user_id=user_id,
                    asset=asset,
                )
            )
    return out


_FINAL = frozenset({Status.FILLED, Status.CANCELED, Status.REJECTED, Status.EXPIRED})
_NEVER_PLACED = frozenset(
    {Status.PENDING, Status.REJECTED, Status.CANCELED, Status.EXPIRED, Status.PENDING_CANCEL}
)


async def check_user_safely(run: Callable[[], Awaitable[CheckOutcome]], user_id: str) -> CheckOutcome:
    """An exchange that can't be read is one finding for that user, not a failed report."""
    try:
        return await run()
    except Exception as exc:  # exchange refusals, network errors: reported, the other users still checked
        what = exc.error.kind.value if isinstance(exc, ExchangeCallFailed) else type(exc).__name__
        out = CheckOutcome(f"testnet:{user_id}", checked=1)
        out.add(
            Finding(
                "exchange_unreachable",
                "testnet",
                "exchange",
                None,
                what,
                user_id=user_id,
                details={"error": str(exc)[:200]},
            )
        )
        return out


__all__ = [
    "ExchangeAccount",
    "ExchangeFactory",
    "TestnetCheckConfig",
    "_dt",
    "check_user",
    "check_user_safely",
    "exchange_sessions",
]
