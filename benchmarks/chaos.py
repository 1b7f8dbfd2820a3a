"""Chaos run: the distributed deployment under a mixed workload while everything fails, then its invariants.

The deployment (benchmarks/_cluster.py): gateway x2, execution, events x2, pricefeed as `tradebridge` processes
on a private PostgreSQL cluster and a private Redis, testnet orders at the Binance double (its own process).

Workload (`--orders` from `--users`, spread over `--duration` seconds): paper and testnet users; MARKET and
LIMIT (GTC, some IOC, some marketable) orders; cancels of resting orders; every order has a client order id
and is retried with it (same body) after a lost answer, a 5xx or a 429, on the other gateway; a share is
sent twice on purpose. WebSocket clients (one per watched user) read their private events from the two
events processes, disconnect at random and resume with `last_event_id`, on the other instance.

Faults, at seeded random moments over the same window: SIGKILL of every service `--kills` times each
(restarted after a short pause), Redis killed and restarted with its data and once without it, PostgreSQL
crashed (immediate stop) and restarted; at the double: 503 and 429 on placements, placements answered after
the client's timeout, placements and cancels carried out whose answer is lost, 500s on order lookups, the
user data streams cut and terminated.

Then it settles (faults cleared, every service up) and checks, printing each as a figure:
  accepted orders lost                        (0)  a 2xx order id the database does not have, or a client
                                                   order id that got two order ids
  orders placed twice at the exchange         (0)  client order ids with more than one order at the double
  orders stuck non-final past the bound       (0)  PENDING / PENDING_CANCEL after `--stuck-bound` s, or a
                                                   testnet order whose status differs from the double's
  ledger mismatches                           (0)  balance rows != their postings, unbalanced entries,
                                                   per-asset journal sums != 0
  WebSocket gaps / duplicates                 (0)  per client and order version: a version published and
                                                   never received, or received twice
  reconciliation mismatches left              (0)  after repairing what the first report found
plus the orders/s sustained while the faults ran and the longest wait of any accepted order for its final
state (market and IOC orders from acceptance, cancels from the request). Exits 1 if an invariant fails.

    .venv/bin/python benchmarks/chaos.py --seed 1 --orders 10000 --users 200 --duration 600
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import random
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import websockets
from _cluster import ADMIN_EMAIL, ADMIN_PASSWORD, ROOT, Cluster, export_head

PASSWORD = "chaos-password-1"
SYMBOLS = ("BTCUSDT", "ETHUSDT")
TESTNET_SYMBOL = "BTCUSDT"
TRANSITIONAL = ("PENDING", "PENDING_CANCEL")
FINAL = {"FILLED", "CANCELED", "REJECTED", "EXPIRED"}
SERVICES = ("gateway-1", "gateway-2", "execution", "events-1", "events-2", "pricefeed")


# ---------------------------------------------------------------------------------------------- records


@dataclass
class User:
    email: str
    token: str
    testnet: bool
    api_key: str | None = None


@dataclass
class Accepted:
    order_id: str
    client_order_id: str
    user: int
    mode: str
    kind: str  # MARKET, IOC, GTC
    version: int
    accepted_at: float  # epoch seconds
    cancel_requested_at: float | None = None


@dataclass
class WsRecord:
    """What one WebSocket client received: (order id, version) per ORDER_UPDATE, every event id."""

    user: int
    versions: Counter[tuple[str, int]] = field(default_factory=Counter)
    event_ids: Counter[str] = field(default_factory=Counter)
    baseline: dict[str, int] = field(default_factory=dict)  # from a REST snapshot after RESYNC_REQUIRED
    connections: int = 0
    resumes: int = 0
    resyncs: int = 0
    snapshots: int = 0
    last_id: str | None = None


@dataclass
class Run:
    args: argparse.Namespace
    cluster: Cluster
    rng: random.Random
    users: list[User] = field(default_factory=list)
    accepted: dict[str, Accepted] = field(default_factory=dict)  # by client order id
    ids_by_client: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    refused: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    duplicates_sent: int = 0
    duplicate_answers_differ: int = 0
    cancels: int = 0
    ws: list[WsRecord] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    fault_log: list[tuple[float, str]] = field(default_factory=list)
    rules: dict[str, dict[str, Decimal]] = field(default_factory=dict)
    mids: dict[str, Decimal] = field(default_factory=dict)
    double_price: Decimal = Decimal("60000")
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    t0: float = 0.0

    def gateway(self, attempt: int) -> str:
        urls = self.cluster.gateway_urls
        return urls[attempt % len(urls)]


# ---------------------------------------------------------------------------------------------- setup


async def prepare(run: Run, http: httpx.AsyncClient) -> None:
    c = run.cluster
    control = c.control
    base = run.gateway(0)
    markets = (await http.get(f"{base}/api/markets")).json()
    for m in markets:
        run.rules[m["symbol"]] = {k: Decimal(m[k]) for k in ("tick_size", "step_size", "min_notional")}
    run.double_price = Decimal(
        (await http.get(f"{c.double_url}/api/v3/ticker/price", params={"symbol": TESTNET_SYMBOL})).json()[
            "price"
        ]
    )
    sem = asyncio.Semaphore(8)

    async def call(method: str, url: str, ok: int, **kw: Any) -> httpx.Response:
        """Set-up calls on a loaded machine: retried after a timeout or a 5xx (register's 409 is a retry's)."""
        for attempt in range(20):
            try:
                r = await http.request(method, url, timeout=60, **kw)
            except httpx.HTTPError:
                await asyncio.sleep(1 + attempt)
                continue
            if r.status_code == ok or (attempt and r.status_code == 409 and url.endswith("/register")):
                return r
            if r.status_code < 500:
                raise RuntimeError(f"{method} {url}: {r.status_code} {r.text[:300]}")
            await asyncio.sleep(1 + attempt)
        raise RuntimeError(f"{method} {url}: no answer")

    async def one(i: int) -> User:
        testnet = i % max(1, round(1 / run.args.testnet_share)) == 0 if run.args.testnet_share > 0 else False
        email = f"chaos{i}@example.com"
        async with sem:
            creds = {"email": email, "password": PASSWORD}
            await call("POST", f"{base}/auth/register", 201, json=creds)
            token = (await call("POST", f"{base}/auth/login", 200, json=creds)).json()["access_token"]
            user = User(email, token, testnet)
            if testnet:
                account = await asyncio.to_thread(
                    control.create_account, {"USDT": "100000000", "BTC": "100000", "ETH": "100000"}
                )
                user.api_key = account.api_key
                auth = {"Authorization": f"Bearer {token}"}
                keys = {"api_key": account.api_key, "api_secret": account.api_secret}
                await call("PUT", f"{base}/api/keys/binance-testnet", 200, json=keys, headers=auth)
                await call("PUT", f"{base}/api/me/mode", 200, json={"mode": "testnet"}, headers=auth)
            return user

    run.users = list(await asyncio.gather(*(one(i) for i in range(run.args.users))))


def quantize(value: Decimal, step: Decimal) -> Decimal:
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step


async def follow_prices(run: Run, http: httpx.AsyncClient) -> None:
    """Paper mids from the gateways' tickers; the double's price walks (so resting testnet orders fill)."""
    control = run.cluster.control
    rng = random.Random(run.args.seed * 7 + 1)
    while not run.stop.is_set():
        for sym in SYMBOLS:
            with contextlib.suppress(Exception):
                r = await http.get(f"{run.gateway(rng.randrange(2))}/api/markets/{sym}/ticker", timeout=2)
                if r.status_code == 200:
                    run.mids[sym] = Decimal(r.json()["price"])
        step = run.double_price * Decimal(rng.uniform(-0.0008, 0.0008))
        run.double_price = quantize(run.double_price + step, run.rules[TESTNET_SYMBOL]["tick_size"])
        with contextlib.suppress(Exception):
            await asyncio.to_thread(control.set_price, TESTNET_SYMBOL, str(run.double_price))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(run.stop.wait(), 1.0)


# ---------------------------------------------------------------------------------------------- workload


def order_body(run: Run, rng: random.Random, user: User) -> tuple[dict[str, str], str]:
    sym = TESTNET_SYMBOL if user.testnet else rng.choice(SYMBOLS)
    rules = run.rules[sym]
    mid = run.double_price if user.testnet else run.mids.get(sym)
    side = rng.choice(("BUY", "SELL"))
    roll = rng.random()
    if mid is None or roll < 0.35:
        kind = "MARKET"
    elif roll < 0.45:
        kind = "IOC"
    else:
        kind = "GTC"
    mid = mid or Decimal(1)
    notional = Decimal(rng.uniform(15, 120))
    qty = max(quantize(notional / mid, rules["step_size"]), rules["step_size"])
    body = {
        "symbol": sym,
        "side": side,
        "type": "MARKET" if kind == "MARKET" else "LIMIT",
        "quantity": str(qty),
    }
    if kind != "MARKET":
        off = Decimal(rng.uniform(-0.001, 0.003))  # a quarter or so marketable, the rest resting near the mid
        price = mid * (1 - off) if side == "BUY" else mid * (1 + off)
        body["price"] = str(quantize(price, rules["tick_size"]))
        body["time_in_force"] = "IOC" if kind == "IOC" else "GTC"
    return body, kind


async def post_order(
    run: Run, http: httpx.AsyncClient, user_ix: int, body: dict[str, str], attempt0: int
) -> httpx.Response | None:
    """POST until a final answer (2xx or a 4xx other than 429), the same body and client order id each time."""
    user = run.users[user_ix]
    headers = {"Authorization": f"Bearer {user.token}"}
    deadline = time.monotonic() + run.args.retry_for
    attempt = attempt0
    while time.monotonic() < deadline:
        try:
            r = await http.post(f"{run.gateway(attempt)}/api/orders", json=body, headers=headers)
        except httpx.HTTPError:
            r = None
        if r is not None and (r.status_code < 500 and r.status_code != 429):
            return r
        attempt += 1
        run.retries += 1
        await asyncio.sleep(min(2.0, 0.1 * attempt))
    return None


async def cancel_later(run: Run, http: httpx.AsyncClient, acc: Accepted, delay: float) -> None:
    await asyncio.sleep(delay)
    headers = {"Authorization": f"Bearer {run.users[acc.user].token}"}
    deadline = time.monotonic() + run.args.retry_for
    attempt = 0
    acc.cancel_requested_at = time.time()
    while time.monotonic() < deadline:
        try:
            r = await http.delete(f"{run.gateway(attempt)}/api/orders/{acc.order_id}", headers=headers)
        except httpx.HTTPError:
            r = None
        if r is not None and r.status_code in (202, 409):
            run.cancels += r.status_code == 202
            if r.status_code == 409:
                acc.cancel_requested_at = None  # already final: nothing to wait for
            return
        attempt += 1
        run.retries += 1
        await asyncio.sleep(min(2.0, 0.1 * attempt))


async def workload(run: Run, http: httpx.AsyncClient) -> tuple[float, float]:
    """Places `--orders` at an even pace over `--duration`; returns (start, end) wall times of the window."""
    args = run.args
    interval = args.duration / args.orders
    queue: asyncio.Queue[int] = asyncio.Queue()
    tasks: list[asyncio.Task[None]] = []

    async def worker() -> None:
        while True:
            i = await queue.get()
            try:
                await one(i)
            finally:
                queue.task_done()

    async def one(i: int) -> None:
        local = random.Random(args.seed * 1_000_003 + i)
        user_ix = local.randrange(len(run.users))
        user = run.users[user_ix]
        body, kind = order_body(run, local, user)
        coid = f"c{args.seed}-{i}"
        body["client_order_id"] = coid
        r = await post_order(run, http, user_ix, body, attempt0=i)
        if r is None:
            run.refused["no answer"] += 1
            return
        if r.status_code not in (200, 202):
            detail = r.json().get("detail", "") if r.content else ""
            run.refused[f"{r.status_code} {str(detail)[:100]}"] += 1
            return
        out = r.json()
        run.ids_by_client[coid].add(out["order_id"])
        acc = Accepted(out["order_id"], coid, user_ix, out["mode"], kind, out.get("version", 0), time.time())
        run.accepted.setdefault(coid, acc)
        if local.random() < args.resend_share:  # the client never saw the answer: sends it again
            run.duplicates_sent += 1
            again = await post_order(run, http, user_ix, body, attempt0=i + 1)
            if again is None:  # no answer within --retry-for: nothing learnt (counted, not a failure)
                run.refused["resend: no answer"] += 1
            elif again.status_code not in (200, 202) or again.json()["order_id"] != acc.order_id:
                run.duplicate_answers_differ += 1
            if again is not None and again.status_code in (200, 202):
                run.ids_by_client[coid].add(again.json()["order_id"])
        if kind == "GTC" and local.random() < args.cancel_share:
            tasks.append(asyncio.create_task(cancel_later(run, http, acc, local.uniform(0.2, 4.0))))

    workers = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
    start = time.time()
    t0 = time.monotonic()
    for i in range(args.orders):
        delay = t0 + i * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        queue.put_nowait(i)
        if i % 500 == 0:
            print(
                f"  [{time.monotonic() - t0:6.1f}s] queued {i}, accepted {len(run.accepted)}, "
                f"retries {run.retries}",
                flush=True,
            )
    await queue.join()
    end = time.time()
    for w in workers:
        w.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return start, end


# ---------------------------------------------------------------------------------------------- WebSockets


async def rest_snapshot(run: Run, http: httpx.AsyncClient, rec: WsRecord) -> None:
    """After RESYNC_REQUIRED: what a client does, read its orders over REST; versions up to these are known."""
    headers = {"Authorization": f"Bearer {run.users[rec.user].token}"}
    cursor: str | None = None
    for attempt in range(1000):
        params: dict[str, Any] = {"status": "all", "limit": 500}
        if cursor:
            params["cursor"] = cursor
        try:
            r = await http.get(f"{run.gateway(attempt)}/api/orders", params=params, headers=headers)
        except httpx.HTTPError:
            await asyncio.sleep(0.5)
            continue
        if r.status_code != 200:
            await asyncio.sleep(0.5)
            continue
        page = r.json()
        for o in page["items"]:
            rec.baseline[o["order_id"]] = max(rec.baseline.get(o["order_id"], -1), o["version"])
        cursor = page.get("next_cursor")
        if not cursor:
            return


async def ws_client(
    run: Run, http: httpx.AsyncClient, rec: WsRecord, rng: random.Random, calm: asyncio.Event
) -> None:
    """Reads private events; drops the connection every few seconds (until `calm`) and resumes elsewhere."""
    token = run.users[rec.user].token
    k = rec.user
    while not run.stop.is_set():
        url = run.cluster.events_urls[k % len(run.cluster.events_urls)] + f"?token={token}"
        k += 1
        if rec.last_id:
            url += f"&last_event_id={rec.last_id}"
            rec.resumes += 1
        try:
            async with websockets.connect(url, open_timeout=5, close_timeout=1, max_size=None) as sock:
                if rec.last_id is None and rec.connections:
                    # Nothing received yet, so no point to resume from: like a real client, read the orders
                    # over REST once connected (what happened while it was away is in that snapshot).
                    rec.snapshots += 1
                    await rest_snapshot(run, http, rec)
                rec.connections += 1
                until = time.monotonic() + rng.uniform(2, 12)
                while not run.stop.is_set():
                    timeout = 1.0 if calm.is_set() else max(0.05, until - time.monotonic())
                    try:
                        raw = await asyncio.wait_for(sock.recv(), timeout)
                    except TimeoutError:
                        if calm.is_set():
                            continue
                        break  # the client goes away on its own
                    msg = json.loads(raw)
                    typ = msg.get("type")
                    if typ == "RESYNC_REQUIRED":
                        rec.resyncs += 1
                        await rest_snapshot(run, http, rec)
                        continue
                    if msg.get("id") is None:
                        continue
                    rec.event_ids[msg["id"]] += 1
                    rec.last_id = msg["id"]
                    if typ == "ORDER_UPDATE":
                        d = msg["data"]
                        rec.versions[(d["order_id"], int(d["version"]))] += 1
        except (TimeoutError, OSError, websockets.exceptions.WebSocketException):
            await asyncio.sleep(rng.uniform(0.1, 0.5))


# ---------------------------------------------------------------------------------------------- faults


def fault_schedule(run: Run, window: float) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
    """Two lanes of (moment, fault): the processes and servers (one at a time), and the double."""
    rng = random.Random(run.args.seed * 31 + 7)
    infra = [s for s in SERVICES for _ in range(run.args.kills)]
    infra += ["redis-keep", "redis-empty", "postgres"]
    rng.shuffle(infra)
    slot = window / (len(infra) + 1)
    lane1 = [(slot * (i + 0.5) + rng.uniform(0, slot * 0.5), f) for i, f in enumerate(infra)]
    exch = [
        "503",
        "429",
        "timeout",
        "lost-ack",
        "lost-cancel-ack",
        "lookup-500",
        "stream-cut",
        "stream-terminated",
    ] * max(1, run.args.kills)
    rng.shuffle(exch)
    slot2 = window / (len(exch) + 1)
    lane2 = [(slot2 * (i + 0.5) + rng.uniform(0, slot2 * 0.5), f) for i, f in enumerate(exch)]
    return lane1, lane2


async def infra_fault(run: Run, name: str, rng: random.Random) -> None:
    c = run.cluster
    down = rng.uniform(0.3, 3.0)
    if name in c.services:
        await asyncio.to_thread(c.kill, name)
        await asyncio.sleep(down)
        await asyncio.to_thread(c.start_service, name)
    elif name == "redis-keep":
        await asyncio.to_thread(c.redis.restart, keep_data=True, down_s=down)
    elif name == "redis-empty":
        await asyncio.to_thread(c.redis.restart, keep_data=False, down_s=down)
    elif name == "postgres":
        await asyncio.to_thread(c.pg.restart, "immediate", down)


def exchange_fault(run: Run, name: str) -> None:
    control = run.cluster.control
    n = 3
    if name == "503":
        control.inject_fault("POST", "/api/v3/order", "status", times=n, status=503)
    elif name == "429":
        control.inject_fault("POST", "/api/v3/order", "status", times=n, status=429, retry_after=1)
    elif name == "timeout":  # carried out, answered after the client gave up
        control.inject_fault("POST", "/api/v3/order", "delay", times=2, delay=12)
    elif name == "lost-ack":
        control.inject_fault("POST", "/api/v3/order", "drop", times=n, after_processing=True)
    elif name == "lost-cancel-ack":
        control.inject_fault("DELETE", "/api/v3/order", "drop", times=n, after_processing=True)
    elif name == "lookup-500":
        control.inject_fault("GET", "/api/v3/order", "status", times=n, status=500)
    elif name == "stream-cut":
        control.reset_ws("api")
    elif name == "stream-terminated":
        control.terminate_user_streams()


async def run_lane(
    run: Run, lane: list[tuple[float, str]], act: Callable[[str], Awaitable[None]], start: float
) -> None:
    for at, name in lane:
        delay = start + at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if run.stop.is_set():
            return
        t = time.monotonic() - start
        try:
            await act(name)
            run.faults[name] += 1
            run.fault_log.append((t, name))
            print(f"  [{t:6.1f}s] fault: {name}", flush=True)
        except Exception as exc:  # a fault that could not be carried out is reported, not fatal
            run.faults[f"{name} (failed: {type(exc).__name__})"] += 1
            print(f"  [{t:6.1f}s] fault {name} failed: {exc}", flush=True)


# ---------------------------------------------------------------------------------------------- settling


async def settle(run: Run, db: asyncpg.Connection) -> float:
    """Until no order is PENDING / PENDING_CANCEL and every testnet order agrees with the double, or the
    bound. Returns the seconds it took."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < run.args.stuck_bound:
        transitional = await db.fetchval(
            "SELECT count(*) FROM orders WHERE status = ANY($1::text[])", list(TRANSITIONAL)
        )
        if transitional == 0 and not await testnet_disagreements(run, db):
            break
        await asyncio.sleep(1.0)
    return time.monotonic() - t0


async def testnet_disagreements(run: Run, db: asyncpg.Connection) -> list[str]:
    control = run.cluster.control
    ours = {
        r["id"]: r
        for r in await db.fetch(
            "SELECT id, status, filled_quantity FROM orders WHERE mode = 'testnet' AND NOT external"
        )
    }
    theirs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for u in run.users:
        if u.api_key:
            for o in await asyncio.to_thread(control.orders, u.api_key):
                theirs[o["client_order_id"]].append(o)
    out = []
    for oid, row in ours.items():
        exch = theirs.get(oid, [])
        if not exch:  # never sent (refused, or not sent in time): fine if it says so and has no fills
            if row["status"] not in ("REJECTED", "EXPIRED", "CANCELED") or row["filled_quantity"] != 0:
                out.append(f"{oid}: ours {row['status']}, none at the exchange")
            continue
        last = max(exch, key=lambda o: o["order_id"])
        if last["status"] != row["status"] or Decimal(last["executed_qty"]) != row["filled_quantity"]:
            out.append(
                f"{oid}: ours {row['status']} {row['filled_quantity']}, exchange {last['status']} {last['executed_qty']}"
            )
    return out


# ---------------------------------------------------------------------------------------------- invariants


async def reconciliation(run: Run, http: httpx.AsyncClient) -> dict[str, Any]:
    """Report; repair what it found; report again. Returns both counts and the kinds found."""
    base = run.gateway(0)
    r = await http.post(f"{base}/auth/login", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
    headers = {"Authorization": f"Bearer {r.json()['access_token']}"}

    async def report() -> dict[str, Any]:
        rid = (await http.post(f"{base}/api/admin/reconciliation", headers=headers)).json()["report_id"]
        for _ in range(600):
            rep = (
                await http.get(f"{base}/api/admin/reconciliation/{rid}", headers=headers, timeout=60)
            ).json()
            if rep["status"] not in ("pending", "running"):
                return rep
            await asyncio.sleep(0.5)
        raise RuntimeError("reconciliation report did not finish")

    first = await report()
    kinds = Counter(m["kind"] for m in first["mismatches"])
    repaired: Any = None
    second = first
    if first["mismatches"]:
        rr = await http.post(
            f"{base}/api/admin/reconciliation/{first['id']}/repair",
            json={"kinds": sorted(kinds)},
            headers=headers,
            timeout=120,
        )
        repaired = rr.json() if rr.status_code == 200 else f"{rr.status_code} {rr.text[:200]}"
        await asyncio.sleep(3)
        second = await report()
    return {
        "first_status": first["status"],
        "first_error": first.get("error"),
        "found": len(first["mismatches"]),
        "found_kinds": dict(kinds),
        "repaired": repaired,
        "left": len(second["mismatches"]),
        "left_kinds": dict(Counter(m["kind"] for m in second["mismatches"])),
        "found_examples": [_mismatch(m) for m in first["mismatches"][:5]],
        "left_examples": [_mismatch(m) for m in second["mismatches"][:5]],
    }


def _mismatch(m: dict[str, Any]) -> dict[str, Any]:
    keys = ("kind", "scope", "order_id", "trade_id", "user_id", "symbol", "asset")
    return {k: m.get(k) for k in (*keys, "tradebridge_value", "reference_value") if m.get(k) is not None}


async def ledger_mismatches(db: asyncpg.Connection) -> dict[str, int]:
    rows = await db.fetch(
        """
        WITH j AS (
            SELECT account_id, asset,
                   sum(amount) FILTER (WHERE bucket = 'free') AS free,
                   sum(amount) FILTER (WHERE bucket <> 'free') AS locked
            FROM ledger_postings GROUP BY account_id, asset)
        SELECT count(*) AS n FROM balances b FULL JOIN j USING (account_id, asset)
        WHERE coalesce(b.free, 0) <> coalesce(j.free, 0) OR coalesce(b.locked, 0) <> coalesce(j.locked, 0)
        """
    )
    unbalanced_entries = await db.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM ledger_postings GROUP BY entry_kind, ref, asset "
        "HAVING sum(amount) <> 0) x"
    )
    unbalanced_assets = await db.fetchval(
        "SELECT count(*) FROM (SELECT 1 FROM ledger_postings GROUP BY asset HAVING sum(amount) <> 0) x"
    )
    negative = await db.fetchval(  # the external account is the deposits' counterpart: negative by design
        "SELECT count(*) FROM balances WHERE (free < 0 OR locked < 0) AND account_id NOT LIKE 'external/%'"
    )
    return {
        "balance_vs_postings": int(rows[0]["n"]),
        "unbalanced_entries": int(unbalanced_entries),
        "unbalanced_assets": int(unbalanced_assets),
        "negative_balances": int(negative),
    }


def ws_figures(run: Run, orders: dict[str, asyncpg.Record]) -> dict[str, Any]:
    """Per client and order: a duplicate is an (order, version) received twice; a gap is an order whose last
    version the client never received (after the REST snapshot it took when it had to resynchronise). Versions
    skipped in between are not gaps: one applied result publishes one ORDER_UPDATE per order even when it moved
    the order through several states (PENDING to FILLED is one event at the final version), and a version
    published late (by the relay, after a writer died) may arrive after a newer one: both are counted only."""
    by_user: dict[int, list[Accepted]] = defaultdict(list)
    for acc in run.accepted.values():
        by_user[acc.user].append(acc)
    gaps = dups = id_dups = skipped = 0
    examples: list[str] = []
    for rec in run.ws:
        id_dups += sum(n - 1 for n in rec.event_ids.values() if n > 1)
        dups += sum(n - 1 for n in rec.versions.values() if n > 1)
        seen: dict[str, set[int]] = defaultdict(set)
        for oid, version in rec.versions:
            seen[oid].add(version)
        for acc in by_user[rec.user]:
            row = orders.get(acc.order_id)
            if row is None:
                continue
            final = row["version"]
            if rec.baseline.get(acc.order_id, -1) >= final:
                continue  # the snapshot after a resync already showed its final state
            if final not in seen[acc.order_id]:
                gaps += 1
                if len(examples) < 5:
                    got = sorted(seen[acc.order_id])
                    examples.append(f"user {rec.user} order {acc.order_id}: final v{final}, received {got}")
            low = max(acc.version, rec.baseline.get(acc.order_id, -1) + 1)
            skipped += sum(1 for v in range(low, final) if v not in seen[acc.order_id])
    return {
        "clients": len(run.ws),
        "connections": sum(r.connections for r in run.ws),
        "resumes": sum(r.resumes for r in run.ws),
        "resyncs": sum(r.resyncs for r in run.ws),
        "snapshots": sum(r.snapshots for r in run.ws),
        "order_updates": sum(r.versions.total() for r in run.ws),
        "gaps": gaps,
        "duplicates": dups,
        "duplicate_event_ids": id_dups,
        "versions_skipped_in_between": skipped,
        "gap_examples": examples,
    }


async def wait_ws_caught_up(run: Run, db: asyncpg.Connection, within_s: float) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        orders = {r["id"]: r for r in await db.fetch("SELECT id, version FROM orders")}
        if ws_figures(run, orders)["gaps"] == 0:
            return
        await asyncio.sleep(1)


async def check(
    run: Run, http: httpx.AsyncClient, db: asyncpg.Connection, window: tuple[float, float], settle_s: float
) -> dict[str, Any]:
    orders = {r["id"]: r for r in await db.fetch("SELECT id, status, version, mode, created_at FROM orders")}
    lost = [a.order_id for a in run.accepted.values() if a.order_id not in orders]
    two_ids = sum(1 for ids in run.ids_by_client.values() if len(ids) > 1)
    control = run.cluster.control
    per_coid: Counter[str] = Counter()
    for u in run.users:
        if u.api_key:
            for o in await asyncio.to_thread(control.orders, u.api_key):
                per_coid[o["client_order_id"]] += 1
    twice = sum(1 for n in per_coid.values() if n > 1)
    transitional = await db.fetch(
        "SELECT id, status FROM orders WHERE status = ANY($1::text[])", list(TRANSITIONAL)
    )
    disagree = await testnet_disagreements(run, db)
    finals = {
        r["order_id"]: r["ts"]
        for r in await db.fetch(
            "SELECT order_id, min(ts) AS ts FROM order_events WHERE status = ANY($1::text[]) GROUP BY order_id",
            sorted(FINAL),
        )
    }
    longest, longest_what = 0.0, ""
    for a in run.accepted.values():
        ts = finals.get(a.order_id)
        if a.kind in ("MARKET", "IOC"):
            since = a.accepted_at
        elif a.cancel_requested_at is not None:
            since = a.cancel_requested_at
        else:
            continue
        if ts is None:
            continue  # counted as stuck if it is not final
        wait = ts.timestamp() - since
        if wait > longest:
            longest, longest_what = wait, f"{a.kind} {a.mode} {a.order_id}"
    not_final_market = [
        a.order_id for a in run.accepted.values() if a.kind in ("MARKET", "IOC") and a.order_id not in finals
    ]
    ledger = await ledger_mismatches(db)
    ws = ws_figures(run, orders)
    recon = await reconciliation(run, http)
    start, end = window
    in_window = sum(1 for a in run.accepted.values() if start <= a.accepted_at <= end)
    return {
        "accepted": len(run.accepted),
        "accepted_paper": sum(a.mode == "paper" for a in run.accepted.values()),
        "accepted_testnet": sum(a.mode == "testnet" for a in run.accepted.values()),
        "refused": dict(run.refused),
        "retries": run.retries,
        "resent_on_purpose": run.duplicates_sent,
        "resend_answered_other_order": run.duplicate_answers_differ,
        "cancels": run.cancels,
        "faults": dict(run.faults),
        "kills": dict(run.cluster.kills),
        "settle_s": round(settle_s, 1),
        "orders_per_s_during_faults": round(in_window / max(end - start, 1e-9), 1),
        "longest_wait_for_final_s": round(longest, 2),
        "longest_wait_order": longest_what,
        "invariants": {
            "accepted_orders_lost": len(lost) + two_ids + run.duplicate_answers_differ,
            "orders_placed_twice_at_exchange": twice,
            "orders_stuck_non_final": len(
                {r["id"] for r in transitional}
                | {d.split(":", 1)[0] for d in disagree}
                | set(not_final_market)
            ),
            "ledger_mismatches": sum(ledger.values()),
            "ws_gaps_or_duplicates": ws["gaps"] + ws["duplicates"] + ws["duplicate_event_ids"],
            "reconciliation_mismatches_left": recon["left"],
        },
        "details": {
            "lost": lost[:5],
            "client_ids_with_two_orders": two_ids,
            "stuck": [f"{r['id']} {r['status']}" for r in transitional[:5]]
            + disagree[:5]
            + not_final_market[:5],
            "ledger": ledger,
            "ws": ws,
            "reconciliation": recon,
        },
    }


# ---------------------------------------------------------------------------------------------- main


async def chaos(run: Run) -> dict[str, Any]:
    args = run.args
    limits = httpx.Limits(max_connections=args.concurrency * 2 + 20)
    async with httpx.AsyncClient(timeout=args.request_timeout, limits=limits) as http:
        await prepare(run, http)
        prices = asyncio.create_task(follow_prices(run, http))
        while len(run.mids) < len(SYMBOLS):  # noqa: ASYNC110 - filled by follow_prices' first reads
            await asyncio.sleep(0.2)
        calm = asyncio.Event()
        ws_users = list(range(0, len(run.users), max(1, len(run.users) // args.ws_clients)))[
            : args.ws_clients
        ]
        run.ws = [WsRecord(u) for u in ws_users]
        ws_tasks = [
            asyncio.create_task(ws_client(run, http, rec, random.Random(args.seed * 101 + rec.user), calm))
            for rec in run.ws
        ]
        await asyncio.sleep(1.0)
        lane1, lane2 = fault_schedule(run, args.duration)
        rng = random.Random(args.seed * 13)
        start = time.monotonic()
        exch = lambda name: asyncio.to_thread(exchange_fault, run, name)  # noqa: E731
        lanes = [
            asyncio.create_task(run_lane(run, lane1, lambda n: infra_fault(run, n, rng), start)),
            asyncio.create_task(run_lane(run, lane2, exch, start)),
        ]
        print(f"workload: {args.orders} orders from {args.users} users over {args.duration:g} s", flush=True)
        window = await workload(run, http)
        await asyncio.gather(*lanes)
        print("workload done; settling", flush=True)
        # Settle: the double behaves, every service runs.
        await asyncio.to_thread(run.cluster.control.clear_faults)
        for name, c in run.cluster.services.items():
            if not c.alive():
                print(f"  {name} is down (exited by itself?): starting it", flush=True)
                await asyncio.to_thread(run.cluster.start_service, name)
        await asyncio.to_thread(run.cluster.wait_ready)
        calm.set()
        db = await asyncpg.connect(run.cluster.pg.dsn)
        try:
            settle_s = await settle(run, db)
            await wait_ws_caught_up(run, db, within_s=30)
            run.stop.set()
            await asyncio.gather(prices, *ws_tasks, return_exceptions=True)
            return await check(run, http, db, window, settle_s)
        finally:
            await db.close()


def print_figures(out: dict[str, Any], command: str) -> None:
    print(f"\n== chaos: {command}")
    for key in (
        "accepted",
        "accepted_paper",
        "accepted_testnet",
        "refused",
        "retries",
        "resent_on_purpose",
        "cancels",
        "faults",
        "kills",
        "settle_s",
    ):
        print(f"  {key:<40} {out[key]}")
    print(f"  {'orders/s sustained during faults':<40} {out['orders_per_s_during_faults']}")
    print(
        f"  {'longest wait for a final state (s)':<40} {out['longest_wait_for_final_s']}  ({out['longest_wait_order']})"
    )
    ws = out["details"]["ws"]
    print(
        f"  {'websocket clients':<40} {ws['clients']} clients, {ws['connections']} connections, "
        f"{ws['resumes']} resumes, {ws['resyncs']} resyncs"
    )
    print("  invariants (all must be 0):")
    for name, value in out["invariants"].items():
        print(f"    {name:<40} {value}{'' if value == 0 else '   <-- FAILED'}")
    if any(out["invariants"].values()):
        print("  details: " + json.dumps(out["details"], indent=2, default=str))
    else:
        print(f"  reconciliation: {json.dumps(out['details']['reconciliation'], default=str)}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--orders", type=int, default=10_000)
    p.add_argument("--users", type=int, default=200)
    p.add_argument("--duration", type=float, default=600, help="seconds the workload and the faults span")
    p.add_argument("--kills", type=int, default=3, help="SIGKILLs of each service")
    p.add_argument("--testnet-share", type=float, default=0.2, help="share of users trading on the testnet")
    p.add_argument("--ws-clients", type=int, default=20)
    p.add_argument("--concurrency", type=int, default=24)
    p.add_argument("--cancel-share", type=float, default=0.4, help="of resting (GTC) orders")
    p.add_argument("--resend-share", type=float, default=0.05, help="orders sent twice on purpose")
    p.add_argument("--retry-for", type=float, default=180, help="how long a client retries one request")
    p.add_argument("--request-timeout", type=float, default=10)
    p.add_argument("--stuck-bound", type=float, default=120, help="seconds after the faults end")
    p.add_argument("--json", action="store_true", help="print the figures as JSON (last line)")
    p.add_argument("--keep", action="store_true", help="keep the cluster's folder (logs) afterwards")
    p.add_argument(
        "--from-head",
        action="store_true",
        help="run the services from the committed tree (HEAD), not the working tree others may be editing",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    command = "benchmarks/chaos.py " + " ".join(sys.argv[1:] if argv is None else argv)
    root = None
    if args.from_head:
        root = export_head(Path(tempfile.mkdtemp(prefix="tb_chaos_src_")))
    cluster = Cluster(keep=args.keep, root=root or ROOT)
    t = time.monotonic()
    try:
        cluster.start()
        print(f"cluster up in {time.monotonic() - t:.1f} s ({cluster.dir})", flush=True)
        run = Run(args, cluster, random.Random(args.seed))
        out = asyncio.run(chaos(run))
    finally:
        cluster.close()
        if root is not None:
            import shutil

            shutil.rmtree(root, ignore_errors=True)
    print_figures(out, command)
    if args.json:
        print(json.dumps(out, default=str))
    return 1 if any(out["invariants"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
