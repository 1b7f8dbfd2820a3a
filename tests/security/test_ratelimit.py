"""Rate limiting against real Redis and process memory: limits, Retry-After, isolation, outages."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from shared.clock import ManualClock
from shared.errors import Throttled, Unavailable
from shared.ratelimit import LoginThrottle, RateLimiter
from tests.support.eventually import eventually

UNREACHABLE = "redis://127.0.0.1:1"


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> tuple[str | None, str]:
    """(redis_url, prefix); the Redis fixtures are only set up (or skipped) for the Redis variant."""
    if request.param == "memory":
        return None, "mem"
    return request.getfixturevalue("redis_url"), request.getfixturevalue("redis_prefix")


@pytest.fixture
async def limiter(backend: tuple[str | None, str]) -> AsyncIterator[RateLimiter]:
    lim = RateLimiter(*backend)
    assert lim.backend == ("memory" if backend[0] is None else "redis")
    yield lim
    await lim.aclose()


def unique(kind: str = "k") -> str:
    return f"{kind}-{uuid.uuid4().hex}"


async def test_n_hits_allowed_then_throttled(limiter: RateLimiter) -> None:
    key = unique("orders")
    for _ in range(3):
        await limiter.hit("3/minute", key)
    with pytest.raises(Throttled) as exc_info:
        await limiter.hit("3/minute", key)
    err = exc_info.value
    assert err.status == 429
    assert 55 <= err.retry_after <= 60
    assert err.headers["Retry-After"] == str(err.retry_after)
    # A refused hit is not counted, and the rule stays exhausted.
    assert not await limiter.allowed("3/minute", key)
    with pytest.raises(Throttled):
        await limiter.check("3/minute", key)


async def test_keys_and_rules_are_independent(limiter: RateLimiter) -> None:
    a, b = unique("a"), unique("b")
    await limiter.hit("1/minute", a)
    with pytest.raises(Throttled):
        await limiter.hit("1/minute", a)
    await limiter.hit("1/minute", b)
    await limiter.hit("2/minute", a)  # another rule on the same key has its own count


async def test_window_reopens_after_retry_after(limiter: RateLimiter) -> None:
    key = unique()
    await limiter.hit("1/second", key)
    with pytest.raises(Throttled) as exc_info:
        await limiter.hit("1/second", key)
    assert exc_info.value.retry_after == 1

    async def reopened() -> bool:
        return await limiter.allowed("1/second", key)

    await eventually(reopened, timeout=3)
    await limiter.hit("1/second", key)


async def test_check_and_allowed_do_not_consume(limiter: RateLimiter) -> None:
    key = unique()
    for _ in range(10):
        await limiter.check("2/minute", key)
        assert await limiter.allowed("2/minute", key)
    assert await limiter.consume("2/minute", key)
    assert await limiter.consume("2/minute", key)
    assert not await limiter.consume("2/minute", key)


async def test_reset(limiter: RateLimiter) -> None:
    key = unique()
    await limiter.hit("1/minute", key)
    assert not await limiter.allowed("1/minute", key)
    await limiter.reset("1/minute", key)
    await limiter.hit("1/minute", key)


def test_bad_rule_and_url() -> None:
    with pytest.raises(ValueError):
        LoginThrottle(RateLimiter(None, "x"), per_account="lots")
    with pytest.raises(ValueError):
        RateLimiter("http://127.0.0.1:6379", "x")


# -- Redis specifics ----------------------------------------------------------------------------


async def test_redis_keys_stay_under_the_prefix(redis_url: str, redis_prefix: str) -> None:
    lim = RateLimiter(redis_url, redis_prefix)
    marker = unique("orders")
    await lim.hit("5/minute", marker)
    throttle = LoginThrottle(lim)
    await throttle.failed("alice@example.com", "203.0.113.9")
    client = aioredis.from_url(redis_url)
    try:
        ours = [k.decode() async for k in client.scan_iter(match=f"*{marker}*")]
        assert ours and all(k.startswith(redis_prefix) for k in ours)
        under_prefix = [k.decode() async for k in client.scan_iter(match=redis_prefix + "*")]
        assert len(under_prefix) == 4  # the marker; the account, the address, the account from the address
        # No personal data in key names.
        assert not any("alice" in k or "203.0.113.9" in k for k in under_prefix)
    finally:
        await client.aclose()
        await lim.aclose()


async def test_prefixes_isolate_and_same_prefix_shares(redis_url: str, redis_prefix: str) -> None:
    a1 = RateLimiter(redis_url, redis_prefix + "a")
    a2 = RateLimiter(redis_url, redis_prefix + "a")  # another process of the same deployment
    b = RateLimiter(redis_url, redis_prefix + "b")
    try:
        await a1.hit("2/minute", "user-1")
        await a2.hit("2/minute", "user-1")
        with pytest.raises(Throttled):
            await a1.hit("2/minute", "user-1")
        with pytest.raises(Throttled):
            await a2.hit("2/minute", "user-1")
        await b.hit("2/minute", "user-1")
        await b.hit("2/minute", "user-1")
    finally:
        for lim in (a1, a2, b):
            await lim.aclose()


async def test_memory_instances_are_separate() -> None:
    a, b = RateLimiter(None, "x"), RateLimiter(None, "x")
    await a.hit("1/minute", "k")
    await b.hit("1/minute", "k")


# -- login throttling ---------------------------------------------------------------------------


@pytest.fixture
def throttle(limiter: RateLimiter) -> LoginThrottle:
    return LoginThrottle(
        limiter, per_account="6/minute", per_address="5/minute", per_account_address="3/minute"
    )


async def test_a_guesser_is_stopped_at_their_address_not_the_owner(throttle: LoginThrottle) -> None:
    email, guesser, owner = unique("victim") + "@example.com", unique("guesser"), unique("owner")
    for _ in range(3):
        await throttle.check(email, guesser)
        await throttle.failed(email, guesser)
    with pytest.raises(Throttled) as exc_info:
        await throttle.check(email, guesser)
    assert 55 <= exc_info.value.retry_after <= 60
    with pytest.raises(Throttled):
        await throttle.check(email.upper(), guesser)  # changing the case of the email doesn't help
    await throttle.check(email, owner)  # the owner, elsewhere, is not locked out
    await throttle.check(unique("other") + "@example.com", guesser)  # nor the guesser's other accounts


async def test_per_account_limit_spans_addresses(throttle: LoginThrottle) -> None:
    """Guesses spread over many addresses, each under its own limits, still meet the account's."""
    email = unique("victim") + "@example.com"
    for i in range(6):
        await throttle.check(email, f"198.51.100.{i}-{email}")
        await throttle.failed(email, f"198.51.100.{i}-{email}")
    with pytest.raises(Throttled) as exc_info:
        await throttle.check(email, unique("fresh"))  # a fresh address doesn't help
    assert 55 <= exc_info.value.retry_after <= 60
    await throttle.check(unique("other") + "@example.com", "198.51.100.0-" + email)


async def test_per_address_limit_spans_accounts(throttle: LoginThrottle) -> None:
    address = f"203.0.113.{uuid.uuid4().int % 250}-{unique()}"
    for _ in range(5):
        email = unique("spray") + "@example.com"
        await throttle.check(email, address)
        await throttle.failed(email, address)
    with pytest.raises(Throttled):
        await throttle.check(unique("fresh") + "@example.com", address)
    await throttle.check(unique("fresh") + "@example.com", "192.0.2.1-" + unique())


async def test_check_does_not_consume(throttle: LoginThrottle) -> None:
    email, address = unique() + "@example.com", unique("addr")
    for _ in range(20):
        await throttle.check(email, address)
    await throttle.failed(email, address)
    await throttle.failed(email, address)
    await throttle.check(email, address)  # 2 of 3 used: still allowed


async def test_success_resets_the_account_from_that_address_only(throttle: LoginThrottle) -> None:
    email, address = unique() + "@example.com", unique("addr")
    for _ in range(3):
        await throttle.failed(email, address)
    with pytest.raises(Throttled):
        await throttle.check(email, address)
    await throttle.succeeded(email, address)  # the owner's own typos are forgiven...
    await throttle.check(email, address)
    for _ in range(2):
        await throttle.failed(unique() + "@example.com", address)  # ...but the address is at 5 of 5
    with pytest.raises(Throttled):
        await throttle.check(email, address)
    for i in range(3):  # and the account-wide count (3 + 3 of 6) is not reset either
        await throttle.failed(email, f"{i}-{address}")
    with pytest.raises(Throttled):
        await throttle.check(email, unique("fresh"))


async def test_attempt_counts_up_front(throttle: LoginThrottle) -> None:
    email, address = unique() + "@example.com", unique("addr")
    for _ in range(3):
        await throttle.attempt(email, address)
    with pytest.raises(Throttled) as exc_info:
        await throttle.attempt(email, address)
    assert 55 <= exc_info.value.retry_after <= 60
    await throttle.attempt(email, unique("elsewhere"))
    await throttle.succeeded(email, address)
    await throttle.attempt(email, address)


async def test_attempt_refused_by_address_spares_the_account(throttle: LoginThrottle) -> None:
    address, victim = unique("addr"), unique("victim") + "@example.com"
    for _ in range(5):
        await throttle.attempt(unique() + "@example.com", address)
    for _ in range(4):
        with pytest.raises(Throttled):
            await throttle.attempt(victim, address)
    await throttle.check(victim, unique("elsewhere"))  # the victim's own allowances are untouched
    for _ in range(3):
        await throttle.attempt(victim, unique("elsewhere"))


async def test_attempt_refused_at_one_address_spares_the_account_wide_allowance(
    throttle: LoginThrottle,
) -> None:
    """One address hammering one account spends 3 of the account's 6, however long it keeps trying: a single
    address can never exhaust the account-wide limit and lock the owner out."""
    email, guesser = unique("victim") + "@example.com", unique("guesser")
    await throttle.attempt(email, guesser)
    await throttle.attempt(email, guesser)
    await throttle.attempt(email, guesser)
    for _ in range(2):  # refused by the account-from-this-address limit, before the account's count
        with pytest.raises(Throttled):
            await throttle.attempt(email, guesser)
    for _ in range(3):
        await throttle.attempt(email, unique("owner"))


# -- store outage -------------------------------------------------------------------------------


async def test_unreachable_redis_fails_open_with_a_warning() -> None:
    lim = RateLimiter(UNREACHABLE, "down:")
    throttle = LoginThrottle(
        lim, per_account="1/minute", per_address="1/minute", per_account_address="1/minute"
    )
    with capture_logs() as logs:
        for _ in range(3):
            await lim.hit("1/minute", "k")
            await throttle.check("a@example.com", "192.0.2.1")
            await throttle.failed("a@example.com", "192.0.2.1")
            await throttle.attempt("a@example.com", "192.0.2.1")
            await throttle.succeeded("a@example.com", "192.0.2.1")
        assert await lim.allowed("1/minute", "k")
        assert await lim.retry_after("1/minute", "k") == 60
    warnings = [e for e in logs if e["event"] == "ratelimit.store_unavailable"]
    assert warnings and warnings[0]["log_level"] == "warning"
    await lim.aclose()


async def test_unreachable_redis_fail_closed_is_503() -> None:
    lim = RateLimiter(UNREACHABLE, "down:", fail_open=False)
    with pytest.raises(Unavailable) as exc_info:
        await lim.hit("1/minute", "k")
    assert exc_info.value.status == 503
    assert exc_info.value.headers["Retry-After"] == "5"
    with pytest.raises(Unavailable):
        await LoginThrottle(lim).check("a@example.com", "192.0.2.1")
    await lim.aclose()


async def test_outage_circuit_breaker_skips_the_store_during_cooldown() -> None:
    clock = ManualClock()
    lim = RateLimiter(UNREACHABLE, "down:", cooldown_s=5, clock=clock)

    async def failures_logged() -> int:
        with capture_logs() as logs:
            await lim.hit("1/minute", "k")
        return sum(e["event"] == "ratelimit.store_unavailable" for e in logs)

    assert await failures_logged() == 1  # tried the store, failed
    assert await failures_logged() == 0  # within cooldown: not even tried
    clock.advance(4.9)
    assert await failures_logged() == 0
    clock.advance(0.2)
    assert await failures_logged() == 1  # cooldown over: tried again
    await lim.aclose()


async def test_recovers_when_the_store_comes_back(redis_url: str, redis_prefix: str) -> None:
    """Breaker closes again: a limiter that saw an outage enforces limits once Redis answers."""
    clock = ManualClock()
    lim = RateLimiter(redis_url, redis_prefix, cooldown_s=5, clock=clock)
    lim._down_until = clock.monotonic() + 5  # as if a failure had just happened
    await lim.hit("1/minute", "k")
    await lim.hit("1/minute", "k")  # skipped: fail open during cooldown
    clock.advance(5)
    await lim.hit("1/minute", "k")
    with pytest.raises(Throttled):
        await lim.hit("1/minute", "k")
    await lim.aclose()
