"""Integer price-time-priority matching book for one symbol (the paper exchange's hot path).

Everything here is an ``int``: prices in ticks, quantities in lots (see ``rules.MarketRules`` for the
Decimal edge). No I/O, no clock, no randomness: the same command sequence always yields the same fills,
trade ids and book, so a book can be rebuilt by replaying commands, or by ``restore``-ing its resting
orders in their original priority order (``resting_orders()`` yields exactly that order).

Semantics
- ``submit`` takes a limit order (a MARKET order is submitted by the exchange as IOC at its protection-band
  price). It trades against the opposite side best price first, FIFO within a price, never through the
  limit price. Time in force: GTC rests the remainder, IOC expires it, FOK trades all or nothing.
- Self-trade prevention, EXPIRE_TAKER (Binance's default): when the taker reaches a resting order of its own
  ``account`` it stops there; fills made before that point stand, and the taker's remainder expires (even
  for GTC). The resting order is untouched. A FOK order counts only the liquidity ahead of its own first
  resting order, so it still trades all or nothing.
- ``cancel`` is O(1): the order is unlinked lazily (marked dead in its level's FIFO and skipped on match);
  a level with no live orders is dropped at once, and a FIFO with many dead entries is compacted.

Data structures: per side a dict price -> level (a deque FIFO plus live count and quantity) and a heap of
prices (lazy deletion) for the best price. Fills are returned as tuples ``(maker, price, qty, trade_id)``;
the maker is the ``RestingOrder`` (its ``remaining`` is already updated; 0 means fully filled).

``submit`` returns ``(fills, remaining, outcome)`` with outcome one of RESTED, FILLED, EXPIRED (IOC
remainder), KILLED (FOK not fillable: nothing traded), STP_EXPIRED (remainder expired by self-trade
prevention).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from heapq import heapify, heappop, heappush, nlargest, nsmallest
from typing import Final

GTC: Final = 0
IOC: Final = 1
FOK: Final = 2

RESTED: Final = 0
FILLED: Final = 1
EXPIRED: Final = 2
KILLED: Final = 3
STP_EXPIRED: Final = 4

OUTCOME_NAMES: Final = ("RESTED", "FILLED", "EXPIRED", "KILLED", "STP_EXPIRED")


class DuplicateOrderId(ValueError):
    """An order id that is already resting on this book."""


class RestingOrder:
    """A resting order; ``tag`` is the caller's opaque payload (the exchange keeps its order state there)."""

    __slots__ = ("account", "is_buy", "order_id", "price", "quantity", "remaining", "seq", "tag")

    def __init__(
        self, order_id: str, account: str, is_buy: bool, price: int, quantity: int, seq: int, tag: object
    ) -> None:
        self.order_id = order_id
        self.account = account
        self.is_buy = is_buy
        self.price = price
        self.quantity = quantity
        self.remaining = quantity
        self.seq = seq
        self.tag = tag

    def __repr__(self) -> str:
        side = "BUY" if self.is_buy else "SELL"
        return f"RestingOrder({self.order_id!r}, {self.account!r}, {side}, {self.price}, {self.remaining})"


class _Level:
    __slots__ = ("live", "price", "qty", "queue")

    def __init__(self, price: int) -> None:
        self.price = price
        self.queue: deque[RestingOrder] = deque()
        self.live = 0
        self.qty = 0


Fill = tuple[RestingOrder, int, int, int]
"""(maker, price in ticks, quantity in lots, trade id)."""


class OrderBook:
    """One symbol's book. Not thread-safe: drive it from one task (the exchange serialises commands)."""

    __slots__ = ("_ask_heap", "_asks", "_bid_heap", "_bids", "_orders", "_seq", "last_price", "next_trade_id")

    def __init__(self, next_trade_id: int = 1) -> None:
        self._bids: dict[int, _Level] = {}
        self._asks: dict[int, _Level] = {}
        self._bid_heap: list[int] = []  # negated prices
        self._ask_heap: list[int] = []
        self._orders: dict[str, RestingOrder] = {}
        self._seq = 0
        self.next_trade_id = next_trade_id
        self.last_price = 0  # 0 = no trade yet

    # -- commands ---------------------------------------------------------------------------------------

    def submit(
        self,
        order_id: str,
        account: str,
        is_buy: bool,
        price: int,
        qty: int,
        tif: int,
        tag: object = None,
        unique: bool = False,
    ) -> tuple[list[Fill], int, int]:
        """Match an incoming limit order, then rest (GTC) or expire (IOC/FOK/STP) what is left.

        ``unique=True``: the caller has already refused duplicate order ids, so the book need not look
        (``PaperExchange`` knows every id it accepted, a superset of the resting ones, and a lookup that
        misses in a big dict of string keys is one of the dearest steps of an order)."""
        if qty <= 0 or price <= 0:
            raise ValueError("price and quantity must be positive")
        orders = self._orders
        if not unique and order_id in orders:
            raise DuplicateOrderId(order_id)
        fills: list[Fill] = []
        if tif == FOK and self._fillable(account, is_buy, price, qty) < qty:
            return fills, qty, KILLED
        remaining = qty
        stp = False
        tid = self.next_trade_id
        if is_buy:
            levels = self._asks
            heap = self._ask_heap
            while heap:
                p = heap[0]
                lvl = levels.get(p)
                if lvl is None:
                    heappop(heap)
                    continue
                if p > price:
                    break
                q = lvl.queue
                while remaining:
                    o = q[0]
                    r = o.remaining
                    if r == 0:
                        q.popleft()
                        continue
                    if o.account == account:
                        stp = True
                        break
                    if r <= remaining:
                        remaining -= r
                        o.remaining = 0
                        q.popleft()
                        del orders[o.order_id]
                        lvl.qty -= r
                        fills.append((o, p, r, tid))
                        tid += 1
                        lvl.live -= 1
                        if lvl.live == 0:
                            break
                    else:
                        o.remaining = r - remaining
                        lvl.qty -= remaining
                        fills.append((o, p, remaining, tid))
                        tid += 1
                        remaining = 0
                if lvl.live == 0:
                    del levels[p]
                    heappop(heap)
                if stp or not remaining:
                    break
        else:
            levels = self._bids
            heap = self._bid_heap
            while heap:
                p = -heap[0]
                lvl = levels.get(p)
                if lvl is None:
                    heappop(heap)
                    continue
                if p < price:
                    break
                q = lvl.queue
                while remaining:
                    o = q[0]
                    r = o.remaining
                    if r == 0:
                        q.popleft()
                        continue
                    if o.account == account:
                        stp = True
                        break
                    if r <= remaining:
                        remaining -= r
                        o.remaining = 0
                        q.popleft()
                        del orders[o.order_id]
                        lvl.qty -= r
                        fills.append((o, p, r, tid))
                        tid += 1
                        lvl.live -= 1
                        if lvl.live == 0:
                            break
                    else:
                        o.remaining = r - remaining
                        lvl.qty -= remaining
                        fills.append((o, p, remaining, tid))
                        tid += 1
                        remaining = 0
                if lvl.live == 0:
                    del levels[p]
                    heappop(heap)
                if stp or not remaining:
                    break
        if tid != self.next_trade_id:
            self.next_trade_id = tid
            self.last_price = fills[-1][1]
        if remaining == 0:
            return fills, 0, FILLED
        if stp:
            return fills, remaining, STP_EXPIRED
        if tif != GTC:
            return fills, remaining, EXPIRED
        self._rest(order_id, account, is_buy, price, remaining, tag)
        return fills, remaining, RESTED

    def cancel(self, order_id: str) -> int:
        """Remove a resting order in O(1); return the lots it still had (0 if it was not resting)."""
        o = self._orders.pop(order_id, None)
        if o is None:
            return 0
        r = o.remaining
        o.remaining = 0
        levels = self._bids if o.is_buy else self._asks
        lvl = levels[o.price]
        lvl.live -= 1
        lvl.qty -= r
        if lvl.live == 0:
            del levels[o.price]
        elif len(lvl.queue) > 2 * lvl.live + 32:
            lvl.queue = deque([x for x in lvl.queue if x.remaining])
        return r

    def reduce(self, order_id: str, by: int) -> int:
        """Partial cancel keeping time priority (Nasdaq/LOBSTER type 2); returns the lots removed."""
        o = self._orders.get(order_id)
        if o is None or by <= 0:
            return 0
        if by >= o.remaining:
            return self.cancel(order_id)
        o.remaining -= by
        (self._bids if o.is_buy else self._asks)[o.price].qty -= by
        return by

    def rest(
        self, order_id: str, account: str, is_buy: bool, price: int, qty: int, tag: object = None
    ) -> RestingOrder:
        """Put an order on the book without matching (restore/seed); it must not cross the other side."""
        if qty <= 0 or price <= 0:
            raise ValueError("price and quantity must be positive")
        if order_id in self._orders:
            raise DuplicateOrderId(order_id)
        if is_buy:
            best = self.best_ask()
            if best is not None and price >= best:
                raise ValueError(f"restored bid {order_id} at {price} would cross the best ask {best}")
        else:
            best = self.best_bid()
            if best is not None and price <= best:
                raise ValueError(f"restored ask {order_id} at {price} would cross the best bid {best}")
        return self._rest(order_id, account, is_buy, price, qty, tag)

    def restore(self, orders: Iterable[RestingOrder]) -> None:
        """Re-insert resting orders given in original priority order (as ``resting_orders()`` yields)."""
        for o in orders:
            self.rest(o.order_id, o.account, o.is_buy, o.price, o.remaining, o.tag)

    def _rest(
        self, order_id: str, account: str, is_buy: bool, price: int, qty: int, tag: object
    ) -> RestingOrder:
        self._seq += 1
        o = RestingOrder(order_id, account, is_buy, price, qty, self._seq, tag)
        if is_buy:
            levels = self._bids
            lvl = levels.get(price)
            if lvl is None:
                lvl = levels[price] = _Level(price)
                heap = self._bid_heap
                heappush(heap, -price)
                if len(heap) > 2 * len(levels) + 64:
                    self._bid_heap = [-p for p in levels]
                    heapify(self._bid_heap)
        else:
            levels = self._asks
            lvl = levels.get(price)
            if lvl is None:
                lvl = levels[price] = _Level(price)
                heap = self._ask_heap
                heappush(heap, price)
                if len(heap) > 2 * len(levels) + 64:
                    self._ask_heap = list(levels)
                    heapify(self._ask_heap)
        lvl.queue.append(o)
        lvl.live += 1
        lvl.qty += qty
        self._orders[order_id] = o
        return o

    # -- queries (none of them change the book) --------------------------------------------------------

    def best_bid(self) -> int | None:
        heap = self._bid_heap
        levels = self._bids
        while heap:
            p = -heap[0]
            if p in levels:
                return p
            heappop(heap)
        return None

    def best_ask(self) -> int | None:
        heap = self._ask_heap
        levels = self._asks
        while heap:
            p = heap[0]
            if p in levels:
                return p
            heappop(heap)
        return None

    def get(self, order_id: str) -> RestingOrder | None:
        return self._orders.get(order_id)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    def __len__(self) -> int:
        return len(self._orders)

    def depth(self, limit: int = 10) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Top ``limit`` levels: (bids best first, asks best first) as (price, total lots)."""
        bids = [(p, self._bids[p].qty) for p in nlargest(limit, self._bids)]
        asks = [(p, self._asks[p].qty) for p in nsmallest(limit, self._asks)]
        return bids, asks

    def side_levels(self, bids: bool) -> list[_Level]:
        """All levels of one side, best first (for quotes and snapshots; O(L log L))."""
        if bids:
            return [self._bids[p] for p in sorted(self._bids, reverse=True)]
        return [self._asks[p] for p in sorted(self._asks)]

    def level_orders(self, bids: bool, price: int) -> list[RestingOrder]:
        """Live orders at one price in FIFO order."""
        lvl = (self._bids if bids else self._asks).get(price)
        if lvl is None:
            return []
        return [o for o in lvl.queue if o.remaining]

    def resting_orders(self) -> Iterator[RestingOrder]:
        """Every resting order in priority order: bids best first, then asks best first; FIFO per price."""
        for bids in (True, False):
            for lvl in self.side_levels(bids):
                for o in lvl.queue:
                    if o.remaining:
                        yield o

    def fillable(self, account: str, is_buy: bool, price: int, qty: int) -> int:
        """Lots an incoming order could trade now (up to ``qty``), honouring its limit and self-trade stop."""
        return self._fillable(account, is_buy, price, qty)

    def _fillable(self, account: str, is_buy: bool, price: int, qty: int) -> int:
        got = 0
        for lvl in self.side_levels(not is_buy):
            if (lvl.price > price) if is_buy else (lvl.price < price):
                break
            for o in lvl.queue:
                if o.remaining == 0:
                    continue
                if o.account == account:
                    return got
                got += o.remaining
                if got >= qty:
                    return got
        return got
