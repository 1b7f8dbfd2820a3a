"""Quote: what a quantity would fill at on the current book, without changing it.

It walks the opposite side from the best price, FIFO/price order, up to the market protection band (the
same limit a MARKET order of that size would have), and reports the fillable quantity, the volume-weighted
average price and the worst price touched. Own resting orders are not excluded (a quote has no account).
"""

from __future__ import annotations

from decimal import Decimal

from shared.amounts import average
from shared.paper.rules import MarketRules

from .book import OrderBook
from .exchange import Quote, Side


def quote_book(book: OrderBook, rules: MarketRules, side: Side, quantity: Decimal) -> Quote:
    is_buy = side is Side.BUY
    need = rules.qty_to_lots(quantity)
    best = book.best_ask() if is_buy else book.best_bid()
    if best is None:
        return Quote(rules.symbol, side, quantity, Decimal(0), None, None)
    limit = rules.band_limit_ticks(best, is_buy)
    got = 0
    cum = 0
    worst = best
    for lvl in book.side_levels(not is_buy):
        if (lvl.price > limit) if is_buy else (lvl.price < limit):
            break
        take = min(lvl.qty, need - got)
        got += take
        cum += take * lvl.price
        worst = lvl.price
        if got >= need:
            break
    if got == 0:
        return Quote(rules.symbol, side, quantity, Decimal(0), None, None)
    avg = average(Decimal(cum) * rules.tick_size, Decimal(got))  # at the documented precision
    return Quote(rules.symbol, side, quantity, rules.lots_to_qty(got), avg, rules.ticks_to_price(worst))


def quote_levels(
    levels: list[tuple[Decimal, Decimal]], rules: MarketRules, side: Side | str, quantity: Decimal
) -> Quote:
    """The same walk over a depth snapshot (price, quantity levels, best first), as the gateway holds it."""
    side = Side(str(side).upper())
    book = OrderBook()
    is_buy = side is Side.BUY
    for i, (price, qty) in enumerate(levels):
        book.rest(
            f"level-{i}", "depth", not is_buy, rules.price_to_ticks(price), rules.qty_to_lots(qty), None
        )
    return quote_book(book, rules, side, quantity)
