"""Password hashing: correctness at the edges bcrypt gets wrong on its own (72 bytes, NUL, unicode)."""

from __future__ import annotations

import unicodedata

import bcrypt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import InvalidInput
from shared.security import passwords
from shared.security.passwords import (
    dummy_verify,
    dummy_verify_async,
    hash_password,
    hash_password_async,
    needs_rehash,
    password_policy_violation,
    validate_password,
    verify_password,
    verify_password_async,
)

FAST = 4  # bcrypt cost for tests: same code path, ~1 ms instead of ~250 ms


def test_round_trip_and_wrong_password() -> None:
    hashed = hash_password("correct horse battery staple", rounds=FAST)
    assert hashed.startswith("$2b$04$")
    assert verify_password("correct horse battery staple", hashed)
    assert not verify_password("correct horse battery stapl", hashed)
    assert not verify_password("Correct horse battery staple", hashed)
    assert not verify_password("", hashed)


def test_same_password_gets_a_new_salt_each_time() -> None:
    a, b = hash_password("samesame", rounds=FAST), hash_password("samesame", rounds=FAST)
    assert a != b
    assert verify_password("samesame", a) and verify_password("samesame", b)


def test_passwords_differing_only_after_byte_72_do_not_collide() -> None:
    prefix = "x" * 72
    hashed = hash_password(prefix + "A-tail", rounds=FAST)
    assert verify_password(prefix + "A-tail", hashed)
    assert not verify_password(prefix + "B-tail", hashed)
    assert not verify_password(prefix, hashed)
    # Multi-byte characters: 40 'é' are 80 UTF-8 bytes, so the difference is past byte 72 too.
    long_unicode = "é" * 40
    hashed_u = hash_password(long_unicode + "1", rounds=FAST)
    assert not verify_password(long_unicode + "2", hashed_u)


def test_raw_bcrypt_would_have_been_unsafe_here() -> None:
    """Guards the premise: without the pre-hash bcrypt can't take these inputs as-is."""
    with pytest.raises(ValueError):
        bcrypt.hashpw(("x" * 73).encode(), bcrypt.gensalt(rounds=FAST))
    assert len(passwords._prehash("x" * 5000)) == 44
    assert b"\x00" not in passwords._prehash("a\x00b")


def test_nul_bytes_are_significant() -> None:
    hashed = hash_password("pass\x00word-1", rounds=FAST)
    assert verify_password("pass\x00word-1", hashed)
    assert not verify_password("pass\x00word-2", hashed)
    assert not verify_password("pass", hashed)


def test_unicode_round_trip_and_normalization() -> None:
    pw = "pässwörd-🔑-密码"
    hashed = hash_password(pw, rounds=FAST)
    assert verify_password(pw, hashed)
    assert not verify_password("passwörd-🔑-密码", hashed)
    composed = "café-crème"
    decomposed = unicodedata.normalize("NFD", composed)
    assert composed != decomposed
    assert verify_password(decomposed, hash_password(composed, rounds=FAST))


def test_lone_surrogates_do_not_crash() -> None:
    hashed = hash_password("abc\ud800defgh", rounds=FAST)
    assert verify_password("abc\ud800defgh", hashed)
    assert not verify_password("abc\ud801defgh", hashed)


@pytest.mark.parametrize(
    "bad_hash",
    [
        "",
        "not-a-hash",
        "$2b$04$short",
        "$2b$99$" + "a" * 53,
        "$1$abcdefgh$abcdefghijklmnopqrstuv",
        "é" * 60,
        "$2b$04$" + "\x00" * 53,
    ],
)
def test_malformed_hash_is_false_not_an_error(bad_hash: str) -> None:
    assert verify_password("whatever-password", bad_hash) is False


def test_non_string_inputs_are_false() -> None:
    hashed = hash_password("whatever-password", rounds=FAST)
    assert verify_password(None, hashed) is False  # type: ignore[arg-type]
    assert verify_password("whatever-password", None) is False  # type: ignore[arg-type]
    assert verify_password(b"whatever-password", hashed) is False  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(st.text(max_size=200), st.text(max_size=200))
def test_property_only_the_same_password_verifies(pw: str, other: str) -> None:
    hashed = hash_password(pw, rounds=FAST)
    assert verify_password(pw, hashed)
    same = unicodedata.normalize("NFKC", pw) == unicodedata.normalize("NFKC", other)
    assert verify_password(other, hashed) is same


def test_dummy_verify_uses_the_requested_cost() -> None:
    dummy_verify(rounds=FAST)
    assert passwords._dummy_hash(FAST).startswith(b"$2b$04$")
    assert passwords._dummy_hash(FAST) is passwords._dummy_hash(FAST)  # made once, reused


def test_needs_rehash() -> None:
    assert needs_rehash(hash_password("password-1", rounds=FAST), rounds=5)
    assert not needs_rehash(hash_password("password-1", rounds=FAST), rounds=FAST)
    assert needs_rehash("garbage")


async def test_async_wrappers() -> None:
    hashed = await hash_password_async("async-password", rounds=FAST)
    assert await verify_password_async("async-password", hashed)
    assert not await verify_password_async("async-passwore", hashed)
    await dummy_verify_async(rounds=FAST)


@pytest.mark.parametrize(
    ("pw", "ok"),
    [
        ("1234567", False),
        ("12345678", True),
        ("é" * 7, False),  # 14 bytes but 7 characters
        ("🔑" * 8, True),
        ("e\u0301" * 8, True),  # NFKC composes to 8 characters
        ("a" * 1024, True),
        ("a" * 1025, False),
        ("", False),
    ],
)
def test_policy(pw: str, ok: bool) -> None:
    problem = password_policy_violation(pw)
    assert (problem is None) is ok
    if ok:
        validate_password(pw)
    else:
        assert problem and "characters" in problem
        with pytest.raises(InvalidInput) as exc_info:
            validate_password(pw)
        assert exc_info.value.status == 422
        assert exc_info.value.detail == problem
        assert exc_info.value.errors and exc_info.value.errors[0]["loc"] == ["password"]
