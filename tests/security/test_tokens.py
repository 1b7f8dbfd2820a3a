"""Access tokens: everything that is not a fresh HS256 token of ours is refused, with one message."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.clock import ManualClock
from shared.errors import Unauthorized
from shared.security.tokens import TokenService, hash_refresh_token, new_refresh_token

SECRET = "test-secret-" + "k" * 60  # >= 64 bytes, so HS512 signing below raises no key-length warning
GENERIC = "Invalid or expired access token"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def svc(clock: ManualClock) -> TokenService:
    return TokenService(SECRET, clock=clock)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def claims(clock: ManualClock, **overrides: Any) -> dict[str, Any]:
    now = int(clock.now().timestamp())
    base: dict[str, Any] = {
        "iss": "tradebridge",
        "aud": "tradebridge-api",
        "sub": "user-1",
        "role": "user",
        "jti": "jti-1",
        "iat": now,
        "exp": now + 900,
        "typ": "access",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def assert_refused(svc: TokenService, token: Any) -> None:
    with pytest.raises(Unauthorized) as exc_info:
        svc.decode_access(token)
    err = exc_info.value
    assert err.detail == GENERIC
    assert err.status == 401
    assert err.headers == {"WWW-Authenticate": "Bearer"}
    if isinstance(token, str) and token:
        assert token not in str(err)
    assert err.__cause__ is None  # the pyjwt reason is not carried along


def test_valid_token_round_trip(svc: TokenService, clock: ManualClock) -> None:
    issued = svc.issue_access("user-42", "admin")
    assert issued.expires_in == 900
    assert issued.expires_at == clock.now() + timedelta(seconds=900)
    got = svc.decode_access(issued.token)
    assert (got.sub, got.role, got.jti) == ("user-42", "admin", issued.jti)
    assert got.iat == clock.now()
    assert got.exp == issued.expires_at
    header = jwt.get_unverified_header(issued.token)
    assert header["alg"] == "HS256"


def test_each_token_has_its_own_jti(svc: TokenService) -> None:
    assert len({svc.issue_access("u", "user").jti for _ in range(50)}) == 50


def test_a_hand_made_token_with_our_secret_is_accepted(svc: TokenService, clock: ManualClock) -> None:
    """The positive control for the crafted-token tests below: they fail for their one defect only."""
    token = jwt.encode(claims(clock), SECRET, algorithm="HS256")
    assert svc.decode_access(token).sub == "user-1"


def test_tampered_signature(svc: TokenService) -> None:
    token = svc.issue_access("user-1", "user").token
    head, payload, sig = token.split(".")
    mid = len(sig) // 2
    flipped = sig[:mid] + ("A" if sig[mid] != "A" else "B") + sig[mid + 1 :]
    assert_refused(svc, f"{head}.{payload}.{flipped}")
    assert_refused(svc, f"{head}.{payload}.")
    assert_refused(svc, f"{head}.{payload}")


def test_tampered_payload_keeps_old_signature(svc: TokenService, clock: ManualClock) -> None:
    token = svc.issue_access("user-1", "user").token
    head, _, sig = token.split(".")
    forged = b64url(json.dumps(claims(clock, role="admin")).encode())
    assert_refused(svc, f"{head}.{forged}.{sig}")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_alg_none_is_refused(svc: TokenService, clock: ManualClock, alg: str) -> None:
    header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims(clock)).encode())
    assert_refused(svc, f"{header}.{payload}.")
    real_sig = svc.issue_access("user-1", "user").token.split(".")[2]
    assert_refused(svc, f"{header}.{payload}.{real_sig}")


def test_other_key_is_refused(svc: TokenService, clock: ManualClock) -> None:
    other = TokenService("another-secret-" + "z" * 40, clock=clock)
    assert_refused(svc, other.issue_access("user-1", "user").token)
    assert_refused(svc, jwt.encode(claims(clock), "another-secret-" + "z" * 40, algorithm="HS256"))


def test_hs512_with_the_same_secret_is_refused(svc: TokenService, clock: ManualClock) -> None:
    token = jwt.encode(claims(clock), SECRET, algorithm="HS512")
    valid_hs512 = jwt.decode(
        token, SECRET, algorithms=["HS512"], audience="tradebridge-api", options={"verify_exp": False}
    )
    assert valid_hs512["sub"] == "user-1"
    assert_refused(svc, token)


def test_rs256_is_refused(svc: TokenService, clock: ManualClock) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    assert_refused(svc, jwt.encode(claims(clock), private, algorithm="RS256"))


def test_expiry_follows_the_injected_clock(svc: TokenService, clock: ManualClock) -> None:
    token = svc.issue_access("user-1", "user").token
    clock.advance(899)
    assert svc.decode_access(token).sub == "user-1"
    clock.advance(1 + 5)  # exp plus the 5 s leeway
    assert_refused(svc, token)


def test_leeway_is_small(svc: TokenService, clock: ManualClock) -> None:
    token = svc.issue_access("user-1", "user").token
    clock.advance(900 + 4)
    assert svc.decode_access(token).sub == "user-1"
    clock.advance(2)
    assert_refused(svc, token)


def test_a_token_from_the_future_is_refused(svc: TokenService, clock: ManualClock) -> None:
    now = int(clock.now().timestamp())
    assert_refused(svc, jwt.encode(claims(clock, iat=now + 60, exp=now + 960), SECRET, algorithm="HS256"))
    assert_refused(svc, jwt.encode(claims(clock, nbf=now + 60), SECRET, algorithm="HS256"))


def test_wrong_audience_and_issuer(clock: ManualClock) -> None:
    svc = TokenService(SECRET, clock=clock)
    other_aud = TokenService(SECRET, clock=clock, audience="tradebridge-admin")
    other_iss = TokenService(SECRET, clock=clock, issuer="evil")
    assert_refused(svc, other_aud.issue_access("user-1", "user").token)
    assert_refused(svc, other_iss.issue_access("user-1", "user").token)
    # An audience list that merely contains ours is not our token either.
    token = jwt.encode(claims(clock, aud=["tradebridge-api", "other"]), SECRET, algorithm="HS256")
    assert_refused(svc, token)


@pytest.mark.parametrize("missing", ["exp", "iat", "sub", "jti", "iss", "aud", "role", "typ"])
def test_missing_claims(svc: TokenService, clock: ManualClock, missing: str) -> None:
    assert_refused(svc, jwt.encode(claims(clock, **{missing: None}), SECRET, algorithm="HS256"))


@pytest.mark.parametrize(
    "override",
    [
        {"exp": True},
        {"exp": "2099-01-01"},
        {"exp": float("inf")},
        {"exp": 10**30},
        {"iat": float("nan")},
        {"iat": -5},
        {"iat": "now"},
        {"sub": 42},
        {"sub": ""},
        {"role": ["admin"]},
        {"jti": 7},
        {"typ": "refresh"},
    ],
)
def test_ill_typed_claims(svc: TokenService, clock: ManualClock, override: dict[str, Any]) -> None:
    assert_refused(svc, jwt.encode(claims(clock, **override), SECRET, algorithm="HS256"))


@pytest.mark.parametrize("junk", ["", "abc", "a.b.c", "...", "x" * 10_000, None, 123, b"bytes"])
def test_junk(svc: TokenService, junk: Any) -> None:
    assert_refused(svc, junk)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300) | st.builds(lambda a, b, c: f"{a}.{b}.{c}", st.text(), st.text(), st.text()))
def test_property_arbitrary_input_only_ever_raises_unauthorized(junk: str) -> None:
    svc = TokenService(SECRET, clock=ManualClock())
    with pytest.raises(Unauthorized):
        svc.decode_access(junk)


def test_constructor_guards(clock: ManualClock) -> None:
    with pytest.raises(ValueError, match="at least 32 bytes"):
        TokenService("short", clock=clock)
    with pytest.raises(ValueError):
        TokenService(SECRET, clock=clock, access_ttl_s=0)
    assert SECRET not in repr(TokenService(SECRET, clock=clock))


def test_refresh_tokens() -> None:
    token, digest = new_refresh_token()
    raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert len(raw) >= 32
    assert set(token) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert digest == hashlib.sha256(token.encode()).hexdigest() == hash_refresh_token(token)
    assert token not in digest
    tokens = {new_refresh_token()[0] for _ in range(100)}
    assert len(tokens) == 100
    assert hash_refresh_token(token + "x") != digest
    assert secrets.compare_digest(hash_refresh_token(token), digest)


def test_a_verified_token_is_remembered_but_its_times_are_checked_at_every_use(
    svc: TokenService, clock: ManualClock
) -> None:
    """The signature is verified once per token string (the second use does no JWT work); expiry, a future
    iat and nbf still follow the clock at every use."""
    token = svc.issue_access("user-1", "user").token
    first = svc.decode_access(token)
    assert svc.decode_access(token) is first  # remembered: the same claims, not decoded again
    clock.advance(900 + 5)
    assert_refused(svc, token)  # expired although remembered
    now = int(clock.now().timestamp())
    later = jwt.encode(claims(clock, nbf=now + 60), SECRET, algorithm="HS256")
    assert_refused(svc, later)
    assert_refused(svc, later)  # refused for its time, not served from memory
    clock.advance(60)
    assert svc.decode_access(later).sub == "user-1"  # valid once its time has come


def test_only_verified_tokens_are_remembered_and_their_number_is_bounded(svc: TokenService) -> None:
    token = svc.issue_access("user-1", "user").token
    head, payload, sig = token.split(".")
    mid = len(sig) // 2
    forged = f"{head}.{payload}.{sig[:mid]}{'A' if sig[mid] != 'A' else 'B'}{sig[mid + 1 :]}"
    for _ in range(2):
        assert_refused(svc, forged)
    assert forged not in svc._verified
    tokens = [svc.issue_access(f"user-{i}", "user").token for i in range(4100)]
    for t in tokens:
        svc.decode_access(t)
    assert len(svc._verified) == 4096
    assert tokens[0] not in svc._verified and tokens[-1] in svc._verified
    assert svc.decode_access(tokens[0]).sub == "user-0"  # forgotten, verified again
