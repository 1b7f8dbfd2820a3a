"""Testnet checks: for every user with keys, TradeBridge's orders and fills against the exchange's (ccxt
against `BINANCE_TESTNET_URL`), and the exchange's balances for sanity.

The exchange is read through `ExchangeAccount` (raw Binance REST answers through ccxt's implicit API, so
every amount stays an exact string -> Decimal; ccxt's unified layer would turn them into floats)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.reconciliation.findings import CheckOutcome, Finding, fmt
from gateway.services.keys import PlainKeys
from shared.models import Fill, Order
from shared.orders import Status

ZERO = Decimal(0)
CLOSED_BY_RECONCILIATION = "(reconciliation)"
PAGE = 1000
_STATUS = {"EXPIRED_IN_MATCH": "EXPIRED", "PENDING_NEW": "NEW"}


@dataclass(frozen=True, slots=True)
class ExOrder:
    venue_order_id: str
    client_order_id: str
    symbol: str
    side: str
    type: str
    time_in_force: str
    status: str
    quantity: Decimal
    price: Decimal | None
    filled: Decimal
    cum_quote: Decimal
    time_ms: int


@dataclass(frozen=True, slots=True)
class ExTrade:
    trade_id: str
    venue_order_id: str
    symbol: str
    side: str
    price: Decimal
    quantity: Decimal
    quote_quantity: Decimal
    fee: Decimal
    fee_asset: str
    is_maker: bool
    time_ms: int


class ExchangeAccount(Protocol):
    async def orders(self, symbol: str, since_ms: int) -> list[ExOrder]: ...

    async def trades(self, symbol: str, since_ms: int) -> list[ExTrade]: ...

    async def order(
        self, symbol: str, venue_order_id: str | None, client_order_id: str
    ) -> ExOrder | None: ...

    async def balances(self) -> dict[str, tuple[Decimal, Decimal]]: ...

    async def close(self) -> None: ...


ExchangeFactory = Callable[[PlainKeys], ExchangeAccount]


def _d(v: Any) -> Decimal:
    return Decimal(str(v)) if v not in (None, "") else ZERO


def parse_order(row: dict[str, Any]) -> ExOrder:
    status = str(row.get("status", ""))
    price = _d(row.get("price"))
    return ExOrder(
        venue_order_id=str(row["orderId"]),
        client_order_id=str(row.get("clientOrderId", "")),
        symbol=str(row["symbol"]),
        side=str(row.get("side", "")),
        type=str(row.get("type", "")),
        time_in_force=str(row.get("timeInForce") or "GTC"),
        status=_STATUS.get(status, status),
        quantity=_d(row.get("origQty")),
        price=price if price else None,
        filled=_d(row.get("executedQty")),
        cum_quote=_d(row.get("cummulativeQuoteQty")),
        time_ms=int(row.get("time") or row.get("transactTime") or 0),
    )


def parse_trade(row: dict[str, Any]) -> ExTrade:
    price, qty = _d(row.get("price")), _d(row.get("qty"))
    return ExTrade(
        trade_id=str(row.get("id", row.get("tradeId"))),
        venue_order_id=str(row["orderId"]),
        symbol=str(row["symbol"]),
        side="BUY" if row.get("isBuyer") else "SELL",
        price=price,
        quantity=qty,
        quote_quantity=_d(row["quoteQty"]) if row.get("quoteQty") is not None else price * qty,
        fee=_d(row.get("commission")),
        fee_asset=str(row.get("commissionAsset", "")),
        is_maker=bool(row.get("isMaker")),
        time_ms=int(row.get("time") or 0),
    )


class CcxtExchangeAccount:
    """`ExchangeAccount` over the ccxt client `make_binance_client` builds (spot only, pointed at base_url)."""

    def __init__(self, keys: PlainKeys, base_url: str) -> None:
        from execution.testnet.client import make_binance_client

        self.client = make_binance_client(keys.api_key, keys.api_secret, base_url=base_url)

    async def orders(self, symbol: str, since_ms: int) -> list[ExOrder]:
        rows = await self._paged(self.client.private_get_allorders, symbol, since_ms, cursor=("orderId", "orderId"))
        return [parse_order(r) for r in rows]

    async def trades(self, symbol: str, since_ms: int) -> list[ExTrade]:
        rows = await self._paged(self.client.private_get_mytrades, symbol, since_ms, cursor=("fromId", "id"))
        return [parse_trade(r) for r in rows]

    @staticmethod
    async def _paged(fetch: Any, symbol: str, since_ms: int, *, cursor: tuple[str, str]) -> list[dict[str, Any]]:
        """Every row since `since_ms`, page by page: the next page starts after the last row's id
        (`cursor` = the request parameter and the row field that carry it)."""
        param, field = cursor
        out: list[dict[str, Any]] = []
        params: dict[str, Any] = {"symbol": symbol, "startTime": since_ms, "limit": PAGE}
        while True:
            rows = await fetch(params)
            out += rows
            if len(rows) < PAGE:
                return out
            params = {"symbol": symbol, param: int(rows[-1][field]) + 1, "limit": PAGE}

    async def order(self, symbol: str, venue_order_id: str | None, client_order_id: str) -> ExOrder | None:
        import ccxt

        params: dict[str, Any] = {"symbol": symbol}
        if venue_order_id:
            params["orderId"] = venue_order_id
        else:
            params["origClientOrderId"] = client_order_id
        try:
            return parse_order(await self.client.private_get_order(params))
        except ccxt.OrderNotFound:
            return None

    async def balances(self) -> dict[str, tuple[Decimal, Decimal]]:
        account = await self.client.private_get_account()
        return {str(b["asset"]): (_d(b["free"]), _d(b["locked"])) for b in account.get("balances", [])}

    async def close(self) -> None:
        await self.client.close()


def ccxt_factory(base_url: str) -> ExchangeFactory:
    return lambda keys: CcxtExchangeAccount(keys, base_url)


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


def order_snapshot(e: ExOrder) -> dict[str, Any]:
    return {
        "venue_order_id": e.venue_order_id,
        "client_order_id": e.client_order_id,
        "symbol": e.symbol,
        "side": e.side,
        "type": e.type,
        "time_in_force": e.time_in_force,
        "status": e.status,
        "quantity": fmt(e.quantity),
        "price": fmt(e.price),
        "filled": fmt(e.filled),
        "cum_quote": fmt(e.cum_quote),
        "time_ms": e.time_ms,
    }


def trade_snapshot(t: ExTrade) -> dict[str, Any]:
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
        "time_ms": t.time_ms,
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
            await session.execute(select(Order).where(Order.user_id == user_id, Order.mode == "testnet"))
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
            await session.execute(select(Fill).where(Fill.user_id == user_id, Fill.mode == "testnet"))
        ).scalars()
        if f.ts >= since
    ]
    symbols = sorted(set(cfg.symbols) | {o.symbol for o in known})
    ex_orders: list[ExOrder] = []
    ex_trades: list[ExTrade] = []
    for symbol in symbols:
        ex_orders += await exchange.orders(symbol, _ms(since))
        ex_trades += await exchange.trades(symbol, _ms(since))
    by_vid = {e.venue_order_id: e for e in ex_orders}
    by_cid = {e.client_order_id: e for e in ex_orders if e.client_order_id}

    def match(o: Order) -> ExOrder | None:
        if o.venue_order_id and o.venue_order_id in by_vid:
            return by_vid[o.venue_order_id]
        return by_cid.get(o.id) or (by_cid.get(o.client_order_id) if o.client_order_id else None)

    # A Binance testnet reset: most known orders vanished and the trade history is empty (or ids restarted).
    at_venue = [o for o in known if o.venue_order_id and not o.external]
    vanished = [o for o in at_venue if match(o) is None]
    if len(at_venue) >= cfg.reset_min_orders and len(vanished) >= cfg.reset_missing_ratio * len(at_venue):
        max_ex_id = max((int(e.venue_order_id) for e in ex_orders), default=0)
        min_known = min(
            (int(o.venue_order_id) for o in vanished if (o.venue_order_id or "").isdigit()), default=0
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
            e = await exchange.order(o.symbol, o.venue_order_id, o.id)
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

    trades_by_order: dict[str, list[ExTrade]] = {}
    for t in ex_trades:
        trades_by_order.setdefault(t.venue_order_id, []).append(t)
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

    balances = await exchange.balances()
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
    except Exception as exc:  # ccxt errors, network errors: reported, the other users still checked
        out = CheckOutcome(f"testnet:{user_id}", checked=1)
        out.add(
            Finding(
                "exchange_unreachable",
                "testnet",
                "exchange",
                None,
                type(exc).__name__,
                user_id=user_id,
                details={"error": str(exc)[:200]},
            )
        )
        return out


__all__ = [
    "CcxtExchangeAccount",
    "ExOrder",
    "ExTrade",
    "ExchangeAccount",
    "ExchangeFactory",
    "TestnetCheckConfig",
    "_dt",
    "ccxt_factory",
    "check_user",
    "check_user_safely",
    "parse_order",
    "parse_trade",
]
