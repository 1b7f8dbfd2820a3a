"""Benchmark: the paper matching book vs liquibook (C++), and the full PaperExchange with ledger.

A seeded stream of mixed operations (60% GTC limit adds around the mid, 25% cancels of previously added
orders, 15% marketable IOC orders) is run through
  1. ``execution.paper.book.OrderBook`` (integer hot path; compiled by mypyc if the extension is built),
  2. liquibook's ``DepthOrderBook`` through its SWIG binding, with a Python ``OrderListener`` counting
     fills (needed to cross-check traded quantity) and, for reference, without any listener,
  3. ``PaperExchange`` as production runs it (validation, reservations, settlement with fees, releases):
     the paper venue's own exchange and ledger (``PaperVenue(...).exchange``, whose ledger holds the system
     accounts), on the same stream turned into Decimal requests from 200 accounts, one in ten a system
     account (a market maker: funded by ``ledger.load`` as the worker does, its orders reserved by the
     exchange) and the rest users (their orders carry the reservation the gateway made,
     ``required_reservation``, as the venue passes it on). Twice: with the reports left unread (their events
     and journal entries are built lazily, on first read) and with every field of every report and every
     posting read, as the execution worker does. For comparison, the same stream on an exchange whose
     ``Ledger`` holds every account (all orders reserved by the exchange), reports unread.
Each operation is timed with ``time.perf_counter_ns``; each engine runs ``--repeat`` times and the best run
is shown (the machine is shared). Both books must trade the same total quantity.

When the mypyc extensions are built (``python -m execution.paper.build_accel``) the script also re-runs
itself with ``--pure`` (extensions ignored) so both variants are printed side by side.

    .venv/bin/python benchmarks/paper_book.py [--ops 200000] [--seed 7] [--repeat 3] [--pure]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


if "--pure" in sys.argv:  # the paper group's own switch (shared.paper._accel), read when it is imported
    os.environ["TRADEBRIDGE_PURE_PYTHON"] = "1"

from execution.paper import book as bk  # noqa: E402
from execution.paper.exchange import (  # noqa: E402
    FINAL_STATUSES,
    OrderRequest,
    OrderType,
    PaperExchange,
    Side,
    TimeInForce,
)
from execution.venues.paper import PaperVenue  # noqa: E402
from shared.clock import SystemClock  # noqa: E402
from shared.paper.ledger import FeeSchedule, Ledger, Reservation, required_reservation  # noqa: E402
from shared.paper.rules import build_rules  # noqa: E402

ADD, CANCEL, TAKE = 0, 1, 2
Op = tuple[int, int, bool, int, int]  # kind, order number, is_buy, price ticks, qty lots


def make_stream(n: int, seed: int) -> list[Op]:
    rnd = random.Random(seed)
    mid = 100_000
    live: list[int] = []
    out: list[Op] = []
    next_id = 1
    for _ in range(n):
        r = rnd.random()
        if r < 0.01:
            mid += rnd.choice((-5, 5))
        if r < 0.60 or (r < 0.85 and not live):
            is_buy = rnd.random() < 0.5
            off = rnd.randint(1, 60)
            price = mid - off if is_buy else mid + off
            out.append((ADD, next_id, is_buy, price, rnd.randint(1, 100)))
            live.append(next_id)
            next_id += 1
        elif r < 0.85:
            i = rnd.randrange(len(live))
            live[i], live[-1] = live[-1], live[i]
            out.append((CANCEL, live.pop(), False, 0, 0))
        else:
            is_buy = rnd.random() < 0.5
            price = mid + 40 if is_buy else mid - 40
            out.append((TAKE, next_id, is_buy, price, rnd.randint(1, 300)))
            next_id += 1
    return out


def pct(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1000.0


def run_paper_book(stream: list[Op]) -> tuple[list[int], int]:
    book = bk.OrderBook()
    ids = [""] + [str(i) for i in range(1, len(stream) + 2)]
    lat = [0] * len(stream)
    traded = 0
    clock = time.perf_counter_ns
    submit = book.submit
    cancel = book.cancel
    gtc, ioc = bk.GTC, bk.IOC
    for i, (kind, num, is_buy, price, qty) in enumerate(stream):
        oid = ids[num]
        t0 = clock()
        if kind == ADD:
            fills, _, _ = submit(oid, oid, is_buy, price, qty, gtc)
        elif kind == CANCEL:
            cancel(oid)
            fills = []
        else:
            fills, _, _ = submit(oid, oid, is_buy, price, qty, ioc)
        lat[i] = clock() - t0
        for f in fills:
            traded += f[2]
    return lat, traded


def run_liquibook(stream: list[Op], listen: bool) -> tuple[list[int], int]:
    import liquibook as lb

    class Listener(lb.OrderListener):
        def __init__(self) -> None:
            lb.OrderListener.__init__(self)
            self.traded = 0

        def on_accept(self, order: object) -> None:
            pass

        def on_reject(self, order: object, reason: object) -> None:
            pass

        def on_fill(self, order: object, matched: object, qty: int, cost: int) -> None:
            self.traded += qty

        def on_cancel(self, order: object) -> None:
            pass

        def on_cancel_reject(self, order: object, reason: object) -> None:
            pass

        def on_replace(self, order: object, a: object, b: object) -> None:
            pass

        def on_replace_reject(self, order: object, reason: object) -> None:
            pass

    book = lb.DepthOrderBook("BENCH")
    listener = Listener()
    if listen:
        book.set_order_listener(listener)
    orders: dict[int, object] = {}
    lat = [0] * len(stream)
    clock = time.perf_counter_ns
    new_order = lb.SimpleOrder
    ioc = lb.oc_immediate_or_cancel
    add = book.add
    cancel = book.cancel
    for i, (kind, num, is_buy, price, qty) in enumerate(stream):
        t0 = clock()
        if kind == ADD:
            o = new_order(is_buy, price, qty)
            add(o)
            orders[num] = o
        elif kind == CANCEL:
            cancel(orders.pop(num))
        else:
            add(new_order(is_buy, price, qty, 0, ioc), ioc)
        lat[i] = clock() - t0
    return lat, listener.traded


def run_exchange(stream: list[Op], read: bool = False, production: bool = True) -> tuple[list[int], int]:
    """``production``: the paper venue's exchange and ledger, users' orders reserved upstream (see the module
    docstring); else a ``Ledger`` holding every account, every order reserved by the exchange."""
    rules = build_rules(["BTCUSDT"])
    r = rules["BTCUSDT"]
    fees = FeeSchedule()
    accounts = [f"system/mm-{i}" if i % 10 == 0 else f"user-{i}" for i in range(200)]
    if production:
        venue = PaperVenue(rules, fees, SystemClock())
        ex = venue.exchange
        venue.ledger.load(  # the market makers' balances, as the worker loads them from the database
            {
                (a, asset): amount
                for a in accounts
                if a.startswith("system/")
                for asset, amount in (("USDT", Decimal("1e12")), ("BTC", Decimal("1e7")))
            }
        )
    else:
        ex = PaperExchange(rules, fees, Ledger(keep_journal=False))
        for a in accounts:
            ex.deposit(a, "USDT", Decimal("1e12"))
            ex.deposit(a, "BTC", Decimal("1e7"))
    reqs: list[tuple[int, object, Reservation | None]] = []
    for kind, num, is_buy, price, qty in stream:
        oid = f"o{num}"
        if kind == CANCEL:
            reqs.append((CANCEL, oid, None))
            continue
        side = Side.BUY if is_buy else Side.SELL
        account = accounts[num % len(accounts)]
        quantity, limit = r.lots_to_qty(qty * 1000), r.ticks_to_price(price)
        req = OrderRequest(
            oid,
            account,
            "BTCUSDT",
            side,
            OrderType.LIMIT,
            quantity,
            limit,
            TimeInForce.GTC if kind == ADD else TimeInForce.IOC,
        )
        upstream = production and not account.startswith("system/")
        reservation = required_reservation(r, fees, is_buy, quantity, limit) if upstream else None
        reqs.append((kind, req, reservation))
    lat = [0] * len(reqs)
    traded = 0
    clock = time.perf_counter_ns
    is_open = ex.is_open
    gc.collect()
    gc.freeze()  # the prepared requests are input, not exchange state: keep them out of the collector's way
    for i, (kind, payload, reservation) in enumerate(reqs):
        t0 = clock()
        if kind == CANCEL:
            # As the paper venue calls it: a cancel of an order that is no longer on the book (filled
            # meanwhile) is answered from ``is_open`` rather than by raising and catching ``Conflict``.
            if not is_open(payload):  # type: ignore[arg-type]
                lat[i] = clock() - t0
                continue
            rep = ex.cancel(payload)  # type: ignore[arg-type]
        else:
            rep = ex.place(payload, reservation)  # type: ignore[arg-type]
        if read:
            traded += len(rep.trades)
            for e in rep.journal:
                e.postings  # noqa: B018
            for u in (rep.order, *rep.maker_updates):  # and, as the venue does, drop finished orders
                if u.status in FINAL_STATUSES:
                    ex.forget(u.order_id)
        lat[i] = clock() - t0
    gc.unfreeze()
    return lat, traded


def summarize(name: str, lat: list[int]) -> tuple[str, float, float, float, float]:
    total_s = sum(lat) / 1e9
    s = sorted(lat)
    return name, len(lat) / total_s, pct(s, 0.5), pct(s, 0.99), statistics.fmean(lat) / 1000.0


def best(runs: list[tuple[str, float, float, float, float]]) -> tuple[str, float, float, float, float]:
    return max(runs, key=lambda r: r[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ops", type=int, default=200_000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, default=3, help="runs per engine; the best is shown")
    ap.add_argument("--skip-exchange", action="store_true")
    ap.add_argument("--pure", action="store_true", help="ignore the compiled extensions")
    args = ap.parse_args()
    stream = make_stream(args.ops, args.seed)
    from execution.paper.build_accel import compiled_modules

    compiled = compiled_modules()
    variant = f"mypyc-compiled ({', '.join(compiled)})" if compiled else "pure Python"
    print(
        f"ops={args.ops} seed={args.seed} repeat={args.repeat} python={sys.version.split()[0]} "
        f"paper modules: {variant}"
    )
    rows = []
    gc.collect()
    gc.disable()
    traded_paper = traded_lb = 0
    runs = []
    for _ in range(args.repeat):
        lat, traded_paper = run_paper_book(stream)
        runs.append(summarize("paper book", lat))
    rows.append(best(runs))
    runs = []
    for _ in range(args.repeat):
        lat, traded_lb = run_liquibook(stream, listen=True)
        runs.append(summarize("liquibook + py listener", lat))
    rows.append(best(runs))
    runs = []
    for _ in range(args.repeat):
        lat, _ = run_liquibook(stream, listen=False)
        runs.append(summarize("liquibook, no listener", lat))
    rows.append(best(runs))
    gc.enable()
    if not args.skip_exchange:
        cases = (
            (False, True, "PaperExchange, as the venue"),
            (True, True, "  + every report read"),
            (False, False, "PaperExchange, full Ledger"),
        )
        for read, production, name in cases:
            runs = []
            for _ in range(args.repeat):
                lat, _ = run_exchange(stream, read, production)
                runs.append(summarize(name, lat))
            rows.append(best(runs))
    print(f"{'engine':<30}{'ops/s':>12}{'p50 us':>9}{'p99 us':>9}{'mean us':>9}")
    for name, ops, p50, p99, mean in rows:
        print(f"{name:<30}{ops:>12,.0f}{p50:>9.2f}{p99:>9.2f}{mean:>9.2f}")
    print(f"traded qty: paper book={traded_paper} liquibook={traded_lb}")
    print(
        f"paper book / liquibook(listener) = {rows[0][1] / rows[1][1]:.2f}x; "
        f"/ liquibook(no listener) = {rows[0][1] / rows[2][1]:.2f}x"
    )
    assert traded_paper == traded_lb, "engines disagree on traded quantity"
    if compiled and not args.pure:
        print("\n-- the same, pure Python (compiled extensions ignored) --", flush=True)
        subprocess.run([sys.executable, __file__, *sys.argv[1:], "--pure"], check=True)


if __name__ == "__main__":
    main()
