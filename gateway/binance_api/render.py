"""Our rows in Binance's spot REST shapes: orders, fills, account, exchangeInfo filters. Amounts are strings
of plain digits with eight decimals, as Binance shows them; times are epoch milliseconds."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from shared.binance_compat import STATUS
from shared.binance_compat import amount as amount
from shared.binance_compat import millis as millis
from shared.models import Fill, Order
from shared.paper.rules import MarketRules
from shared.schemas.orders import STOP_TYPES

# exchangeInfo's orderTypes: what a new order may be (clients such as ccxt check a type against it)
ORDER_TYPES = ["LIMIT", "LIMIT_MAKER", "MARKET", *sorted(STOP_TYPES)]


def status(order: Order) -> str:
    return STATUS.get(order.status, order.status)


def _waiting(order: Order) -> bool:
    """A stop order whose trigger has not fired: off the book, not working yet."""
    return order.type in STOP_TYPES and order.triggered_at is None


def order_result(order: Order, order_id: int) -> dict[str, Any]:
    """The RESULT fields of a new order (and of a cancel, without the times); a stop order's ``stopPrice``,
    and ``workingTime`` -1 while its trigger has not fired, as Binance shows them."""
    out = {
        "symbol": order.symbol,
        "orderId": order_id,
        "orderListId": -1,
        "clientOrderId": order.client_order_id or order.id,
        "transactTime": millis(order.created_at),
        "price": amount(order.price),
        "origQty": amount(order.quantity),
        "executedQty": amount(order.filled_quantity),
        "origQuoteOrderQty": amount(Decimal(0)),
        "cummulativeQuoteQty": amount(order.cumulative_quote),
        "status": status(order),
        "timeInForce": order.time_in_force,
        "type": order.type,
        "side": order.side,
        "workingTime": -1 if _waiting(order) else millis(order.triggered_at or order.created_at),
        "selfTradePreventionMode": "NONE",
    }
    if order.type in STOP_TYPES:
        out["stopPrice"] = amount(order.stop_price)
    return out


def order_query(order: Order, order_id: int) -> dict[str, Any]:
    """GET /order, openOrders, allOrders."""
    out = order_result(order, order_id)
    del out["transactTime"]
    out.update(
        stopPrice=amount(order.stop_price),
        icebergQty=amount(Decimal(0)),
        time=millis(order.created_at),
        updateTime=millis(order.updated_at),
        isWorking=order.status in ("NEW", "PARTIALLY_FILLED", "PENDING") and not _waiting(order),
    )
    return out


def order_fill(fill: Fill) -> dict[str, Any]:
    return {
        "price": amount(fill.price),
        "qty": amount(fill.quantity),
        "commission": amount(fill.fee),
        "commissionAsset": fill.fee_asset,
        "tradeId": fill.id,
    }


def my_trade(fill: Fill, order_id: int) -> dict[str, Any]:
    return {
        "symbol": fill.symbol,
        "id": fill.id,
        "orderId": order_id,
        "orderListId": -1,
        "price": amount(fill.price),
        "qty": amount(fill.quantity),
        "quoteQty": amount(fill.price * fill.quantity),
        "commission": amount(fill.fee),
        "commissionAsset": fill.fee_asset,
        "time": millis(fill.ts),
        "isBuyer": fill.side == "BUY",
        "isMaker": fill.liquidity == "MAKER",
        "isBestMatch": True,
    }


def symbol_info(rules: MarketRules) -> dict[str, Any]:
    """One market of exchangeInfo with our real filters (what validation enforces)."""
    return {
        "symbol": rules.symbol,
        "status": "TRADING",
        "baseAsset": rules.base_asset,
        "baseAssetPrecision": 8,
        "quoteAsset": rules.quote_asset,
        "quotePrecision": 8,
        "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8,
        "quoteCommissionPrecision": 8,
        "orderTypes": ORDER_TYPES,
        "icebergAllowed": False,
        "ocoAllowed": False,
        "otoAllowed": False,
        "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False,
        "cancelReplaceAllowed": False,
        "amendAllowed": False,
        "isSpotTradingAllowed": True,
        "isMarginTradingAllowed": False,
        "filters": [
            {
                "filterType": "PRICE_FILTER",
                "minPrice": amount(rules.tick_size),
                "maxPrice": "1000000.00000000",
                "tickSize": amount(rules.tick_size),
            },
            {
                "filterType": "LOT_SIZE",
                "minQty": amount(rules.min_qty),
                "maxQty": amount(rules.max_qty),
                "stepSize": amount(rules.step_size),
            },
            {
                "filterType": "MARKET_LOT_SIZE",
                "minQty": amount(rules.min_qty),
                "maxQty": amount(rules.max_qty),
                "stepSize": amount(rules.step_size),
            },
            {
                "filterType": "NOTIONAL",
                "minNotional": amount(rules.min_notional),
                "applyMinToMarket": True,
                "maxNotional": "9000000.00000000",
                "applyMaxToMarket": False,
                "avgPriceMins": 5,
            },
        ],
        "permissions": [],
        "permissionSets": [["SPOT"]],
        "defaultSelfTradePreventionMode": "NONE",
        "allowedSelfTradePreventionModes": ["NONE"],
    }
