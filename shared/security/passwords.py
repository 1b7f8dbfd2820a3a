"""Password hashing with bcrypt behind an HMAC-SHA256 pre-hash, plus the password policy.

Why the pre-hash: bcrypt only looks at the first 72 bytes of its input (older releases silently
truncate, bcrypt>=5 raises) and C implementations stop at the first NUL byte, so two long
passwords sharing a 72-byte prefix, or ``"a\\0b"`` and ``"a\\0c"``, would hash alike. We feed bcrypt
``base64(HMAC-SHA256(key, NFKC(password)))`` instead: always 44 ASCII bytes, never a NUL, and every
character of the password counts. The HMAC key is a fixed, public domain-separation constant (not a
secret pepper), so the stored hash is not a bare SHA-256 that could be matched against other leaks.

NFKC normalisation makes the same password typed on different keyboards/OSes (composed ``é`` vs
``e`` + combining accent) verify alike, as NIST SP 800-63B recommends.

bcrypt is deliberately slow (~0.25 s at cost 12): async code must use the ``*_async`` wrappers, which
run it in a worker thread instead of blocking the event loop.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import secrets
import unicodedata

import bcrypt

from shared.errors import InvalidInput

DEFAULT_ROUNDS = 12
MIN_LENGTH = 8
MAX_LENGTH = 1024
_PREHASH_KEY = b"tradebridge/password-prehash/v1"


def _prehash(password: str) -> bytes:
    """44 ASCII bytes with no NUL, safe to give bcrypt whatever the password's length or content."""
    normalized = unicodedata.normalize("NFKC", password)
    digest = hmac.new(_PREHASH_KEY, normalized.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()
    return base64.b64encode(digest)


def hash_password(password: str, *, rounds: int = DEFAULT_ROUNDS) -> str:
    """Return a bcrypt hash string (``$2b$<rounds>$...``) to store."""
    if not isinstance(password, str):
        raise TypeError("password must be a str")
    return bcrypt.hashpw(_prehash(password), bcrypt.gensalt(rounds=rounds)).decode("ascii")


def verify_password(password: str, hashed: str) -> bool:
    """True only if ``password`` matches; any malformed or foreign hash is simply False, never an error."""
    if not isinstance(password, str) or not isinstance(hashed, str):
        return False
    try:
        return bcrypt.checkpw(_prehash(password), hashed.encode("ascii"))
    except (ValueError, TypeError, UnicodeError):
        return False


def needs_rehash(hashed: str, *, rounds: int = DEFAULT_ROUNDS) -> bool:
    """True if the stored hash uses a lower cost than wanted (rehash it after a successful login)."""
    parts = hashed.split("$") if isinstance(hashed, str) else []
    if len(parts) != 4 or parts[1] not in {"2a", "2b", "2y"} or not parts[2].isdigit():
        return True
    return int(parts[2]) < rounds


@functools.lru_cache(maxsize=8)
def _dummy_hash(rounds: int) -> bytes:
    """A hash of a random password at the given cost, made once (lazily: no work at import time)."""
    return bcrypt.hashpw(_prehash(secrets.token_urlsafe(16)), bcrypt.gensalt(rounds=rounds))


def dummy_verify(*, rounds: int = DEFAULT_ROUNDS) -> None:
    """Spend the time of one real verification, so an unknown email can't be told apart by timing.

    ``rounds`` must match the cost real hashes use.
    """
    bcrypt.checkpw(_prehash(secrets.token_urlsafe(16)), _dummy_hash(rounds))


async def hash_password_async(password: str, *, rounds: int = DEFAULT_ROUNDS) -> str:
    return await asyncio.to_thread(hash_password, password, rounds=rounds)


async def verify_password_async(password: str, hashed: str) -> bool:
    return await asyncio.to_thread(verify_password, password, hashed)


async def dummy_verify_async(*, rounds: int = DEFAULT_ROUNDS) -> None:
    await asyncio.to_thread(dummy_verify, rounds=rounds)


def password_policy_violation(password: str) -> str | None:
    """The reason ``password`` is unacceptable, or None if it is fine.

    Length is counted in characters (after NFKC), as users count them; the upper bound keeps a
    request from making us hash megabytes.
    """
    if not isinstance(password, str):
        return "Password must be a string."
    length = len(unicodedata.normalize("NFKC", password))
    if length < MIN_LENGTH:
        return f"Password must be at least {MIN_LENGTH} characters long."
    if length > MAX_LENGTH:
        return f"Password must be at most {MAX_LENGTH} characters long."
    return None


def validate_password(password: str, *, field: str = "password") -> None:
    """Raise ``InvalidInput`` (422) with a clear message if the password breaks the policy."""
    problem = password_policy_violation(password)
    if problem is not None:
        raise InvalidInput(problem, errors=[{"loc": [field], "msg": problem, "type": "password_policy"}])
