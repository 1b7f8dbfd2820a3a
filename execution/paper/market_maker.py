"""Market maker: a system account quoting a ladder around a reference (live) price on the paper exchange.

``MarketMaker.plan(exchange, symbol, reference_price)`` returns the commands (cancels first, then places)
that move its resting orders to the desired ladder: ``levels`` bids and asks, the innermost at
least ``spread_bps / 2`` from the reference and each further one ``level_step_bps`` out (prices snapped to a
grid of that step, so small moves of the reference leave most levels in place), each of
``notional_per_level`` (quote asset) rounded down to the step size. Orders already resting at a desired price
with about the desired size (``size_tolerance``) are kept (no churn). It quotes only what it can afford: free balance plus what the
orders it is about to cancel release, innermost levels first. ``requote`` plans and applies in one go.

It is a normal account on the ledger, funded by ledgered deposits (``fund``), so its orders are reserved,
settled and charged fees like anyone's. ``enabled=False`` (``PAPER_MARKET_MAKER=off``, see
``market_maker_enabled``) makes ``plan`` pull every quote and place nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from shared.paper.ledger import JournalEntry, required_reservation

from .exchange import ExecutionReport, OrderRequest, OrderType, PaperExchange, Side, TimeInForce

__all__ = ["CancelCommand", "MarketMaker", "MarketMakerConfig", "PlaceCommand", "market_maker_enabled"]


def market_maker_enabled(value: str | None) -> bool:
    """Parse ``PAPER_MARKET_MAKER`` (default on; ``off``/``false``/``0``/``no`` turn it off)."""
    return (value or "on").strip().lower() not in {"off", "false", "0", "no", "disabled"}


@dataclass(frozen=True, slots=True)
class MarketMakerConfig:
    account: str = "system/market-maker"
    levels: int = 10
    spread_bps: Decimal = Decimal(10)  # best ask - best bid, relative to the reference price
    level_step_bps: Decimal = Decimal(5)
    notional_per_level: Decimal = Decimal(2000)  # quote asset per level
    size_tolerance: Decimal = Decimal("0.1")  # a resting order within 10% of the wanted size is kept
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class PlaceCommand:
    request: OrderRequest


@dataclass(frozen=True, slots=True)
class CancelCommand:
    order_id: str


Command = PlaceCommand | CancelCommand


class MarketMaker:
    def __init__(self, config: MarketMakerConfig | None = None) -> None:
        self.config = config or MarketMakerConfig()
        self._seq = 0

    def fund(self, exchange: PaperExchange, asset: str, amount: Decimal) -> JournalEntry:
        return exchange.deposit(self.config.account, asset, amount, ref=f"market-maker-funding-{asset}")

    def desired(
        self, exchange: PaperExchange, symbol: str, reference_price: Decimal
    ) -> list[tuple[Side, Decimal, Decimal]]:
        """The ladder (side, price, quantity), innermost levels first, alternating bid/ask."""
        cfg = self.config
        rules = exchange.market_rules(symbol)
        qty = (cfg.notional_per_level / reference_price / rules.step_size).to_integral_value(ROUND_FLOOR)
        quantity = qty * rules.step_size
        if quantity < rules.min_qty:
            return []
        tick = rules.tick_size
        # prices sit on a grid of the level step (2 significant digits, whole ticks) so small moves keep
        # most levels where they are instead of shifting every one of them
        g_raw = reference_price * cfg.level_step_bps / Decimal(10000)
        grid = max(tick, (Decimal(format(g_raw, ".2g")) / tick).to_integral_value(ROUND_FLOOR) * tick)
        half = reference_price * cfg.spread_bps / Decimal(20000)
        bid0 = ((reference_price - half) / grid).to_integral_value(ROUND_FLOOR) * grid
        ask0 = ((reference_price + half) / grid).to_integral_value(ROUND_CEILING) * grid
        out: list[tuple[Side, Decimal, Decimal]] = []
        for i in range(cfg.levels):
            bid = bid0 - grid * i
            ask = ask0 + grid * i
            if bid > 0 and bid * quantity >= rules.min_notional:
                out.append((Side.BUY, bid, quantity))
            if ask * quantity >= rules.min_notional:
                out.append((Side.SELL, ask, quantity))
        return out

    def plan(self, exchange: PaperExchange, symbol: str, reference_price: Decimal | None) -> list[Command]:
        cfg = self.config
        rules = exchange.market_rules(symbol)
        current = exchange.open_orders(cfg.account, rules.symbol)
        if not cfg.enabled or reference_price is None or reference_price <= 0:
            return [CancelCommand(o.order_id) for o in current]
        wanted = self.desired(exchange, rules.symbol, reference_price)
        keep: set[tuple[Side, Decimal, Decimal]] = set()
        cancels: list[Command] = []
        by_price = {(side, price): qty for side, price, qty in wanted}
        tol = cfg.size_tolerance
        budget = {
            rules.quote_asset: exchange.ledger.free(cfg.account, rules.quote_asset),
            rules.base_asset: exchange.ledger.free(cfg.account, rules.base_asset),
        }
        for o in current:
            price = o.price or Decimal(0)
            want = by_price.get((o.side, price))
            key = (o.side, price, want or Decimal(0))
            if want is not None and key not in keep and abs(o.remaining_quantity - want) <= want * tol:
                keep.add(key)
            else:
                cancels.append(CancelCommand(o.order_id))
                asset = rules.quote_asset if o.side is Side.BUY else rules.base_asset
                budget[asset] += exchange.locked_for(o.order_id)
        places: list[Command] = []
        exhausted: set[Side] = set()
        for side, price, qty in wanted:
            if (side, price, qty) in keep or side in exhausted:
                continue
            res = required_reservation(rules, exchange.fees, side is Side.BUY, qty, price)
            if res.amount > budget[res.asset]:
                exhausted.add(side)  # outer levels need at least as much; stop this side
                continue
            budget[res.asset] -= res.amount
            self._seq += 1
            places.append(
                PlaceCommand(
                    OrderRequest(
                        f"mm-{rules.symbol}-{self._seq}",
                        cfg.account,
                        rules.symbol,
                        side,
                        OrderType.LIMIT,
                        qty,
                        price,
                        TimeInForce.GTC,
                    )
                )
            )
        return cancels + places

    def requote(
        self, exchange: PaperExchange, symbol: str, reference_price: Decimal | None
    ) -> list[ExecutionReport]:
        reports: list[ExecutionReport] = []
        for cmd in self.plan(exchange, symbol, reference_price):
            if isinstance(cmd, CancelCommand):
                reports.append(exchange.cancel(cmd.order_id))
            else:
                reports.append(exchange.place(cmd.request))
        return reports
