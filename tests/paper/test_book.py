import pytest

from execution.paper.book import (
    EXPIRED,
    FILLED,
    FOK,
    GTC,
    IOC,
    KILLED,
    RESTED,
    STP_EXPIRED,
    DuplicateOrderId,
    OrderBook,
    RestingOrder,
)


def _get(book: OrderBook, order_id: str) -> RestingOrder:
    """``book.get`` of an order the test knows rests."""
    o = book.get(order_id)
    assert o is not None, f"{order_id} does not rest"
    return o


def fills_of(result):
    fills, _, _ = result
    return [(m.order_id, p, q) for m, p, q, _ in fills]


def test_rest_and_depth() -> None:
    b = OrderBook()
    assert b.submit("b1", "A", True, 100, 5, GTC) == ([], 5, RESTED)
    b.submit("b2", "A", True, 100, 3, GTC)
    b.submit("b3", "A", True, 99, 1, GTC)
    b.submit("s1", "B", False, 102, 4, GTC)
    assert b.depth(5) == ([(100, 8), (99, 1)], [(102, 4)])
    assert (b.best_bid(), b.best_ask()) == (100, 102)
    assert len(b) == 4


def test_price_then_time_priority_and_partial_fills() -> None:
    b = OrderBook()
    b.submit("s1", "A", False, 101, 5, GTC)
    b.submit("s2", "B", False, 100, 5, GTC)
    b.submit("s3", "C", False, 100, 5, GTC)
    res = b.submit("t", "T", True, 101, 12, GTC)
    assert fills_of(res) == [("s2", 100, 5), ("s3", 100, 5), ("s1", 101, 2)]
    assert res[1:] == (0, FILLED)
    assert _get(b, "s1").remaining == 3 and "s2" not in b
    assert [f[3] for f in res[0]] == [1, 2, 3]  # sequential trade ids
    assert b.last_price == 101


def test_never_trades_through_limit_and_rests_remainder() -> None:
    b = OrderBook()
    b.submit("s1", "A", False, 100, 2, GTC)
    b.submit("s2", "A", False, 105, 2, GTC)
    res = b.submit("t", "T", True, 103, 5, GTC)
    assert fills_of(res) == [("s1", 100, 2)]
    assert res[1:] == (3, RESTED)
    assert b.depth() == ([(103, 3)], [(105, 2)])


def test_ioc_never_rests_fok_all_or_nothing() -> None:
    b = OrderBook()
    b.submit("s1", "A", False, 100, 2, GTC)
    assert b.submit("f", "T", True, 100, 3, FOK) == ([], 3, KILLED)
    assert _get(b, "s1").remaining == 2
    res = b.submit("i", "T", True, 100, 3, IOC)
    assert fills_of(res) == [("s1", 100, 2)] and res[1:] == (1, EXPIRED)
    assert "i" not in b and b.depth() == ([], [])
    b.submit("s2", "A", False, 100, 2, GTC)
    b.submit("s3", "B", False, 101, 2, GTC)
    res = b.submit("f2", "T", True, 101, 4, FOK)
    assert res[1:] == (0, FILLED) and len(res[0]) == 2


def test_self_trade_prevention_expires_taker() -> None:
    b = OrderBook()
    b.submit("s1", "B", False, 100, 1, GTC)
    b.submit("own", "T", False, 100, 5, GTC)
    b.submit("s2", "B", False, 100, 5, GTC)
    res = b.submit("t", "T", True, 100, 4, GTC)
    assert fills_of(res) == [("s1", 100, 1)]
    assert res[1:] == (3, STP_EXPIRED)
    assert "t" not in b and _get(b, "own").remaining == 5  # resting own order untouched
    # FOK counts only liquidity ahead of its own order: 1 lot is not enough for 2
    b.submit("s0", "B", False, 99, 1, GTC)
    assert b.submit("f", "T", True, 100, 2, FOK)[2] == KILLED
    assert b.submit("f", "T", True, 100, 1, FOK)[2] == FILLED


def test_cancel_is_exact_and_lazy_entries_are_skipped() -> None:
    b = OrderBook()
    for i in range(5):
        b.submit(f"s{i}", "A", False, 100, 1, GTC)
    assert b.cancel("s0") == 1 and b.cancel("s3") == 1
    assert b.cancel("s0") == 0 and b.cancel("nope") == 0
    assert [o.order_id for o in b.level_orders(False, 100)] == ["s1", "s2", "s4"]
    res = b.submit("t", "T", True, 100, 3, GTC)
    assert fills_of(res) == [("s1", 100, 1), ("s2", 100, 1), ("s4", 100, 1)]
    b.submit("x", "A", False, 100, 1, GTC)
    assert b.cancel("x") == 1 and b.best_ask() is None  # empty level disappears at once


def test_many_cancels_behind_a_resting_order_compact_the_fifo() -> None:
    b = OrderBook()
    b.submit("head", "A", False, 100, 1, GTC)
    for i in range(1000):
        b.submit(f"x{i}", "A", False, 100, 1, GTC)
        b.cancel(f"x{i}")
    lvl = b._asks[100]
    assert len(lvl.queue) < 100 and lvl.live == 1 and lvl.qty == 1


def test_duplicate_ids_and_bad_input() -> None:
    b = OrderBook()
    b.submit("a", "A", True, 100, 1, GTC)
    with pytest.raises(DuplicateOrderId):
        b.submit("a", "A", True, 100, 1, GTC)
    with pytest.raises(ValueError):
        b.submit("z", "A", True, 100, 0, GTC)


def test_restore_in_priority_order_rebuilds_identical_behaviour() -> None:
    b = OrderBook()
    for i, (side, price, qty) in enumerate(
        [(True, 99, 3), (True, 100, 2), (False, 103, 4), (True, 100, 7), (False, 102, 1), (False, 102, 6)]
    ):
        b.submit(f"o{i}", f"acct{i}", side, price, qty, GTC)
    snapshot = list(b.resting_orders())
    assert [o.order_id for o in snapshot] == ["o1", "o3", "o0", "o4", "o5", "o2"]
    c = OrderBook(next_trade_id=b.next_trade_id)
    c.restore(snapshot)
    for book in (b, c):
        assert book.depth() == ([(100, 9), (99, 3)], [(102, 7), (103, 4)])
    r1 = [(m.order_id, p, q, t) for m, p, q, t in b.submit("t", "T", True, 103, 9, GTC)[0]]
    r2 = [(m.order_id, p, q, t) for m, p, q, t in c.submit("t", "T", True, 103, 9, GTC)[0]]
    assert r1 == r2 == [("o4", 102, 1, 1), ("o5", 102, 6, 2), ("o2", 103, 2, 3)]
    with pytest.raises(ValueError):
        c.rest("cross", "X", True, 200, 1)
