"""What `soak.py` samples and how it judges the samples. Nothing here runs at import.

Sampled (one `Sample` per interval): RSS and open file descriptors of every service process and of Redis, the
length of every Redis stream (user streams as their count and longest), pending entries of the command groups,
Redis memory and key count (keys without a TTL apart), outbox rows, processed-command marks, candles and orders, PostgreSQL table sizes, and
the sockets each events service's hub holds (its /healthz).

The rule (`judge`), per quantity that must stay bounded:
- "flat": over the second half of the samples (from the middle of the run on, at least 3 samples) a least-squares
  line is fitted; the quantity grows without bound when the growth it predicts across that half (slope x the
  half's duration) exceeds its tolerance, max(absolute, relative x the half's median). Warm-up (caches, pools,
  streams filling to their caps) is in the first half and not judged.
- "cap": every sample at or below a bound the configuration implies (a stream's MAXLEN plus one stream node of
  slack, since `MAXLEN ~` trims whole nodes; the connections the clients hold; the marks the retention keeps).
Quantities that grow with the business (orders, fills, ledger postings, candles: history kept on purpose) are
reported per order or per minute and not judged.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil

# `MAXLEN ~` removes whole radix-tree nodes (stream-node-max-entries, 100 by default), so a stream may hold up to
# one node's entries above its cap.
STREAM_SLACK = 100


@dataclass(frozen=True, slots=True)
class Sample:
    t: float  # seconds since the load started
    values: dict[str, float]


@dataclass(frozen=True, slots=True)
class Rule:
    """`kind` "flat": growth across the second half <= max(abs_tol, rel_tol x its median); "cap": every sample
    <= cap."""

    kind: str
    abs_tol: float = 0.0
    rel_tol: float = 0.0
    cap: float = 0.0


@dataclass(slots=True)
class Verdict:
    name: str
    rule: Rule
    first: float
    last: float
    peak: float
    slope_per_min: float  # second half, least squares
    growth: float  # slope x the second half's duration
    tolerance: float
    ok: bool
    reason: str = ""
    figures: dict[str, Any] = field(default_factory=dict)


def slope(points: Sequence[tuple[float, float]]) -> float:
    """Least-squares slope of (t, v) in units per second (0 for fewer than two distinct times)."""
    n = len(points)
    if n < 2:
        return 0.0
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    if den == 0:
        return 0.0
    return sum((t - mt) * (v - mv) for t, v in points) / den


def second_half(samples: Sequence[Sample]) -> list[Sample]:
    """The samples from the middle of the run on (at least the last three)."""
    if not samples:
        return []
    mid = samples[-1].t / 2
    half = [s for s in samples if s.t >= mid]
    return half if len(half) >= 3 else list(samples[-3:])


def judge_one(name: str, rule: Rule, samples: Sequence[Sample]) -> Verdict | None:
    series = [(s.t, s.values[name]) for s in samples if name in s.values]
    if not series:
        return None
    values = [v for _, v in series]
    half = [(s.t, s.values[name]) for s in second_half(samples) if name in s.values]
    b = slope(half)
    span = half[-1][0] - half[0][0] if len(half) >= 2 else 0.0
    growth = b * span
    v = Verdict(name, rule, values[0], values[-1], max(values), b * 60, growth, 0.0, True)
    if rule.kind == "cap":
        v.tolerance = rule.cap
        if v.peak > rule.cap:
            v.ok = False
            v.reason = f"{name} reached {v.peak:,.0f} > its bound {rule.cap:,.0f}"
        return v
    median = statistics.median(x for _, x in half)
    v.tolerance = max(rule.abs_tol, rule.rel_tol * abs(median))
    if growth > v.tolerance:
        v.ok = False
        v.reason = f"{name} grew {growth:,.1f} over the second half ({b * 60:+,.2f}/min; tolerance {v.tolerance:,.1f})"
    return v


def judge(rules: dict[str, Rule], samples: Sequence[Sample]) -> list[Verdict]:
    """Every rule whose quantity was sampled; a rule name ending in "*" applies to every sampled name it prefixes
    (without its own rule)."""
    names = sorted({k for s in samples for k in s.values})
    out: list[Verdict] = []
    for name in names:
        rule = rules.get(name) or next(
            (
                r
                for pat, r in sorted(rules.items(), key=lambda kv: -len(kv[0]))
                if pat.endswith("*") and name.startswith(pat[:-1])
            ),
            None,
        )
        if rule is None:
            continue
        v = judge_one(name, rule, samples)
        if v is not None:
            out.append(v)
    return out


# ---------------------------------------------------------------------------------------------- sampling


def process_figures(pids: dict[str, int]) -> dict[str, float]:
    """rss_mb:<name> and fds:<name> of each process (a process gone is left out: its absence is reported)."""
    out: dict[str, float] = {}
    for name, pid in pids.items():
        try:
            p = psutil.Process(pid)
            out[f"rss_mb:{name}"] = p.memory_info().rss / 2**20
            out[f"fds:{name}"] = float(p.num_fds())
        except psutil.Error:
            pass
    return out


async def redis_figures(redis: Any, prefix: str, groups: Sequence[str]) -> dict[str, float]:
    """Stream lengths (stream:<name>; user streams as user_streams and stream:events.user.* = the longest),
    pending entries of the `groups` streams' execution group, memory and keys."""
    out: dict[str, float] = {}
    user_lengths: list[int] = []
    async for key in redis.scan_iter(match=f"{prefix}*", count=1000, _type="stream"):
        k = key.decode() if isinstance(key, bytes) else key
        name = k[len(prefix) :]
        n = int(await redis.xlen(k))
        if name.startswith("events.user."):
            user_lengths.append(n)
        else:
            out[f"stream:{name}"] = float(n)
    out["user_streams"] = float(len(user_lengths))
    out["stream:events.user.*"] = float(max(user_lengths, default=0))
    for name in groups:
        try:
            info = await redis.xpending(prefix + name, "execution")
            out[f"pending:{name}"] = float(info["pending"])
        except Exception:  # the group is made by the worker; absent before it started
            pass
    mem = await redis.info("memory")
    out["redis_used_mb"] = mem["used_memory"] / 2**20
    # Keys with a TTL (the bus's publish-once marks, rate-limit windows) are bounded by rate x TTL; the ones
    # without are what could pile up.
    space = (await redis.info("keyspace")).get("db0") or {"keys": 0, "expires": 0}
    out["redis_keys"] = float(space["keys"])
    out["redis_keys_expiring"] = float(space["expires"])
    out["redis_keys_persistent"] = float(space["keys"] - space["expires"])
    return out


TABLES_COUNTED = ("outbox", "processed_commands", "orders", "candles")


async def database_figures(conn: Any) -> dict[str, float]:
    """rows:<table> for the counted tables, table_mb:<table> (pg_total_relation_size: heap, indexes, TOAST) of
    every table, database_mb."""
    out: dict[str, float] = {}
    for t in TABLES_COUNTED:
        out[f"rows:{t}"] = float(await conn.fetchval(f"SELECT count(*) FROM {t}"))  # fixed names
    rows = await conn.fetch(
        "SELECT c.relname, pg_total_relation_size(c.oid) AS bytes FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind = 'r' AND n.nspname = 'public'"
    )
    for r in rows:
        out[f"table_mb:{r['relname']}"] = r["bytes"] / 2**20
    out["database_mb"] = float(await conn.fetchval("SELECT pg_database_size(current_database())")) / 2**20
    return out
