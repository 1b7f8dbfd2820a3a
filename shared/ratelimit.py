"""Rate limiting on the ``limits`` library: per-user order limits and login throttling.

Storage is Redis (shared by every gateway process) when a URL is given, else process memory (the
embedded single-process mode). Every Redis key lives under ``<prefix>ratelimit:``.

The strategy is the moving window: exact ("5/minute" means at most 5 in any 60 s), and Retry-After
is exact too (when the oldest hit in the window leaves it).

Failure policy, decided: if the store is unreachable we **fail open** and log a warning. A Redis
outage must not turn every login and order into a 5xx, and login stays expensive anyway (bcrypt).
``fail_open=False`` instead raises ``Unavailable`` (503 with Retry-After) for callers that prefer
refusing. After a failure the store is not tried again for ``cooldown_s`` (a small circuit breaker),
so an outage costs one connection attempt per cooldown rather than one per request.

Note: the library reads ``time.time()`` itself, so window arithmetic here uses the wall clock too; the
injected ``Clock`` only drives the circuit breaker.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import math
import time
from typing import Any

import structlog
from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError
from limits.util import WindowStats

from shared.clock import Clock, SystemClock
from shared.errors import Throttled, Unavailable
from shared.redis_bounds import bounded

log = structlog.get_logger(__name__)

_STORE_ERRORS: tuple[type[BaseException], ...] = (StorageError, ConnectionError, TimeoutError, OSError)
try:  # redis-py's errors don't all derive from the builtin ones
    from redis.exceptions import RedisError

    _STORE_ERRORS = (*_STORE_ERRORS, RedisError)
except ImportError:  # pragma: no cover - redis is a project dependency
    pass


class _MemoryStorage(MemoryStorage):
    """The library's process-memory store, its expiry swept in the event loop at most once per ``SWEEP_S``.

    limits (5.8.0, its latest release) starts an expiry sweep on every hit whose last sweep has ended, and the
    sweep awaits a thread (``asyncio.to_thread``) per key for one ``bisect``: under steady orders on the embedded
    default a sweep over every user's key ran back to back, 9% of the process's GIL time at 50 orders/s, and
    two thread hand-offs per key (issue #16). Here the due sweep runs inline, without an await, so no hit sees a
    key half swept and no ``clear`` can race it (the library's ``clear`` deleted ``events[key]`` while its
    sweep, which had listed the keys, was about to read it: a ``KeyError``). Expired entries stay at most
    ``SWEEP_S`` longer; the moving window counts only the entries inside it, so limits are exact as before.
    """

    SWEEP_S = 1.0

    def __init__(self) -> None:
        super().__init__()
        self._next_sweep = 0.0

    async def _MemoryStorage__schedule_expiry(self) -> None:  # the library's hook, called on every hit
        now = time.time()
        if now >= self._next_sweep:
            self._next_sweep = now + self.SWEEP_S
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """The library's sweep, synchronously: entries are newest first, so the expired ones are a tail."""
        for key, events in list(self.events.items()):
            cutoff = bisect.bisect_left(events, -now, key=lambda entry: -entry.expiry)
            if cutoff:
                del events[cutoff:]
            else:
                del self.events[key]
                self.locks.pop(key, None)
        for key, expiry in list(self.expirations.items()):
            if expiry <= now:
                self.storage.pop(key, None)
                self.expirations.pop(key, None)
                self.locks.pop(key, None)

    async def clear(self, key: str) -> None:
        if key in self.events:
            self.events[key] = []
        self.storage.pop(key, None)
        self.expirations.pop(key, None)


@functools.lru_cache(maxsize=256)
def parse_rule(rule: str) -> RateLimitItem:
    """``"5/minute"``, ``"10 per second"``, ``"100/5 minutes"``...; a bad rule is a ValueError."""
    return parse(rule)


def _storage_uri(redis_url: str) -> str:
    for scheme in ("redis://", "rediss://"):
        if redis_url.startswith(scheme):
            return "async+" + redis_url
    if redis_url.startswith("unix://"):
        return "async+redis+unix://" + redis_url.removeprefix("unix://")
    raise ValueError("redis_url must start with redis://, rediss:// or unix://")


class RateLimiter:
    """Counts hits per (rule, key); raises ``Throttled`` with a Retry-After when a rule is exhausted."""

    def __init__(
        self,
        redis_url: str | None,
        prefix: str,
        *,
        fail_open: bool = True,
        cooldown_s: float = 5.0,
        socket_timeout_s: float = 0.5,
        clock: Clock | None = None,
    ) -> None:
        if prefix and not prefix.endswith(":"):
            prefix += ":"
        self.prefix = prefix
        self.fail_open = fail_open
        self._cooldown_s = cooldown_s
        self._clock: Clock = clock or SystemClock()
        self._down_until = -math.inf
        self._storage: Storage
        if redis_url is None:
            self._storage = _MemoryStorage()
        else:
            self._storage = RedisStorage(
                _storage_uri(redis_url),
                implementation="redispy",
                key_prefix=f"{prefix}ratelimit",
                wrap_exceptions=True,
                socket_connect_timeout=socket_timeout_s,
                **bounded(redis_url, socket_timeout_s),  # passed on to redis-py
            )
        self._strategy = MovingWindowRateLimiter(self._storage)

    @property
    def backend(self) -> str:
        return "memory" if isinstance(self._storage, MemoryStorage) else "redis"

    async def aclose(self) -> None:
        client = getattr(getattr(self._storage, "bridge", None), "storage", None)
        if client is not None:
            await client.aclose()

    # -- raw operations: None means "store unavailable, policy applied" ---------------------------

    def _unavailable(self, exc: BaseException | None) -> None:
        """Apply the failure policy: remember the outage, then log (open) or raise 503 (closed)."""
        if exc is not None:
            self._down_until = self._clock.monotonic() + self._cooldown_s
            log.warning("ratelimit.store_unavailable", error=type(exc).__name__, fail_open=self.fail_open)
        if not self.fail_open:
            retry = max(1, math.ceil(self._down_until - self._clock.monotonic()))
            raise Unavailable(
                "Rate limiting is temporarily unavailable; try again shortly",
                headers={"Retry-After": str(retry)},
            )

    async def _call(self, op: Any, *args: Any) -> Any:
        if self._clock.monotonic() < self._down_until:
            self._unavailable(None)
            return None
        try:
            return await op(*args)
        except _STORE_ERRORS as exc:
            self._unavailable(exc)
            return None

    async def _retry_after(self, item: RateLimitItem, key: str) -> int:
        stats: WindowStats | None = await self._call(self._strategy.get_window_stats, item, key)
        if stats is None:
            return int(item.get_expiry())
        return max(1, math.ceil(stats.reset_time - time.time()))

    # -- public API -------------------------------------------------------------------------------

    async def consume(self, rule: str, key: str) -> bool:
        """Count one hit; False if the rule was already exhausted (nothing is counted then)."""
        ok = await self._call(self._strategy.hit, parse_rule(rule), key)
        return True if ok is None else bool(ok)

    async def hit(self, rule: str, key: str) -> None:
        """Count one hit, or raise ``Throttled`` (429, Retry-After) if the rule is exhausted."""
        item = parse_rule(rule)
        ok = await self._call(self._strategy.hit, item, key)
        if ok is False:
            raise Throttled("Too many requests; slow down", retry_after=await self._retry_after(item, key))

    async def spend(self, rule: str, key: str, cost: int) -> tuple[bool, int, int]:
        """Count ``cost`` hits at once (a request's weight): (allowed, used in the window, Retry-After s).
        Nothing is counted when refused; with the store down, the failure policy applies (open: allowed)."""
        item = parse_rule(rule)
        ok = await self._call(functools.partial(self._strategy.hit, cost=cost), item, key)
        stats: WindowStats | None = await self._call(self._strategy.get_window_stats, item, key)
        used = 0 if stats is None else item.amount - stats.remaining
        if ok is False:
            return False, used, await self._retry_after(item, key)
        return True, used, 0

    async def allowed(self, rule: str, key: str) -> bool:
        """Whether one more hit would be allowed, without counting it."""
        ok = await self._call(self._strategy.test, parse_rule(rule), key)
        return True if ok is None else bool(ok)

    async def retry_after(self, rule: str, key: str) -> int:
        """Whole seconds (>= 1) until the rule admits another hit for ``key``."""
        return await self._retry_after(parse_rule(rule), key)

    async def check(self, rule: str, key: str) -> None:
        """Raise ``Throttled`` if the rule is exhausted, without counting a hit."""
        if not await self.allowed(rule, key):
            raise Throttled("Too many requests; slow down", retry_after=await self.retry_after(rule, key))

    async def reset(self, rule: str, key: str) -> None:
        """Forget every hit of ``key`` under ``rule``."""
        await self._call(self._strategy.clear, parse_rule(rule), key)


def _digest(kind: str, value: str) -> str:
    """Keys carry a hash, not the email or IP itself: no personal data in Redis key names."""
    return kind + ":" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]


class LoginThrottle:
    """Login attempts, limited three ways so that a guesser is stopped without locking the owner out:

    - per account *and* address (``per_account_address``, tight): someone guessing one account's password
      from one address is refused there, while the owner still logs in from anywhere else;
    - per address (``per_address``): one address spraying many accounts;
    - per account, all addresses together (``per_account``, loose): a guesser spread over many addresses. Keep
      it well above the pair limit: then no single address can exhaust it (only a distributed attack can,
      and locking the account is the lesser evil there).

    Two ways to use it:

    - ``check`` before verifying, ``failed`` after a wrong password, ``succeeded`` after a right one.
      Simple, but check-then-count is not atomic: N concurrent attempts can all pass ``check`` before
      any ``failed`` lands, so a burst can exceed the limit by its concurrency.
    - ``attempt`` before verifying (counts the attempt up front, atomically in Redis), then
      ``succeeded`` on success. No burst bypass; successful logins also count against the address.
      Prefer this one on a public endpoint.

    ``succeeded`` clears the account-and-address counter only (the owner's own typos): a valid login must not
    wipe the address counter, or an attacker holding one account could reset it between guesses at others;
    nor the account-wide one, which would hand a distributed guesser a fresh allowance whenever the owner
    logs in.
    """

    def __init__(
        self,
        limiter: RateLimiter,
        per_account: str = "50/minute",
        per_address: str = "30/minute",
        per_account_address: str = "5/minute",
    ) -> None:
        for rule in (per_account, per_address, per_account_address):
            parse_rule(rule)
        self._limiter = limiter
        self.per_account = per_account
        self.per_address = per_address
        self.per_account_address = per_account_address

    @staticmethod
    def _account_key(email: str) -> str:
        return _digest("login:account", email.strip().lower())

    @staticmethod
    def _address_key(address: str) -> str:
        return _digest("login:address", address.strip())

    @staticmethod
    def _pair_key(email: str, address: str) -> str:
        return _digest("login:account-address", email.strip().lower() + "\n" + address.strip())

    def _rules(self, email: str, address: str | None) -> list[tuple[str, str]]:
        """(rule, key) in the order ``attempt`` counts them: a hit refused by one rule is not counted by the
        later ones, so an address's refused guesses never eat into the account's allowances."""
        if not address:
            return [(self.per_account, self._account_key(email))]
        return [
            (self.per_address, self._address_key(address)),
            (self.per_account_address, self._pair_key(email, address)),
            (self.per_account, self._account_key(email)),
        ]

    async def check(self, email: str, address: str | None) -> None:
        """Raise ``Throttled`` if any of the limits has no attempts left; counts nothing."""
        waits = [
            await self._limiter.retry_after(rule, key)
            for rule, key in self._rules(email, address)
            if not await self._limiter.allowed(rule, key)
        ]
        if waits:
            raise Throttled("Too many failed login attempts; try again later", retry_after=max(waits))

    async def failed(self, email: str, address: str | None) -> None:
        """Record one failed attempt against every limit."""
        for rule, key in self._rules(email, address):
            await self._limiter.consume(rule, key)

    async def attempt(self, email: str, address: str | None) -> None:
        """Count an attempt up front; raise ``Throttled`` (with Retry-After) at the first exhausted limit."""
        for rule, key in self._rules(email, address):
            if not await self._limiter.consume(rule, key):
                retry = await self._limiter.retry_after(rule, key)
                raise Throttled("Too many failed login attempts; try again later", retry_after=retry)

    async def succeeded(self, email: str, address: str | None) -> None:
        """Clear the failures of this account from this address after a correct password."""
        if address:
            await self._limiter.reset(self.per_account_address, self._pair_key(email, address))


class Admission:
    """Load shedding: at most ``limit`` requests of one kind in progress in this process. Past it a request is
    refused at once (503 with Retry-After) instead of queueing behind the others: under overload the
    accepted requests keep their latency and clients learn to back off, where an unbounded queue would make
    every request slow and time out, and drop the throughput with it."""

    __slots__ = ("_inflight", "limit", "retry_after_s")

    def __init__(self, limit: int, retry_after_s: int = 1) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self.limit = limit
        self.retry_after_s = retry_after_s
        self._inflight = 0

    @property
    def inflight(self) -> int:
        return self._inflight

    def enter(self) -> None:
        """Take a slot, or raise ``Unavailable`` (503, Retry-After) when all are taken."""
        if self._inflight >= self.limit:
            raise Unavailable(
                "The gateway is at capacity; retry shortly.", headers={"Retry-After": str(self.retry_after_s)}
            )
        self._inflight += 1

    def leave(self) -> None:
        self._inflight -= 1
