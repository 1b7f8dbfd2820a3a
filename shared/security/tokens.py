"""JWT access tokens (HS256) and opaque refresh tokens.

Access tokens are short-lived, self-contained JWTs. Verification pins the algorithm to HS256 (so
``alg: none``, HS512 or RS256 tokens are refused whatever their signature), requires every claim we
rely on, and checks issuer and audience. Time is the injected ``Clock``: pyjwt compares ``exp`` and
``iat`` with the real wall clock, so we switch those two checks off in pyjwt (the claims stay
*required*) and do them ourselves against ``clock.now()``.

Every failure raises ``Unauthorized`` with one generic message: the reason (expired, bad signature,
wrong audience...) helps an attacker more than a client, and the token itself is never echoed.

Refresh tokens are opaque random strings; only their SHA-256 is stored. A keyed hash is not needed:
256 random bits cannot be brute-forced from the digest.
"""

from __future__ import annotations

import base64
import hashlib
import math
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import jwt

from shared.clock import Clock
from shared.errors import Unauthorized

ALGORITHM = "HS256"
ACCESS_TYP = "access"  # the "typ" claim: an access token, not any other JWT signed with this secret
_REQUIRED = ["exp", "iat", "sub", "jti", "iss", "aud"]
_GENERIC = "Invalid or expired access token"
_MAX_TOKEN_CHARS = 8192
MIN_SECRET_BYTES = 32
_MAX_EPOCH = 253402300800  # 10000-01-01: beyond it datetime can't represent the claim


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int
    jti: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class AccessClaims:
    sub: str
    role: str
    jti: str
    iat: datetime
    exp: datetime


def _epoch(value: Any) -> int:
    """A NumericDate as int; bools, non-numbers, NaN/inf and absurd years are refused."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Unauthorized(_GENERIC)
    if not (math.isfinite(value) and 0 <= value < _MAX_EPOCH):
        raise Unauthorized(_GENERIC)
    return int(value)


@dataclass(frozen=True, slots=True)
class _Verified:
    """A verified token's claims and its NumericDates (checked against the clock at every use)."""

    claims: AccessClaims
    iat: int
    exp: int
    nbf: int | None


_VERIFIED_MAX = 4096  # verified tokens remembered per process (a few MB at most)


class TokenService:
    """Issues and verifies access tokens; one instance per process, shared by gateway and events."""

    __slots__ = (
        "_audience",
        "_clock",
        "_issuer",
        "_leeway_s",
        "_secret",
        "_verified",
        "_verify_key",
        "access_ttl_s",
    )

    def __init__(
        self,
        secret: str,
        *,
        issuer: str = "tradebridge",
        audience: str = "tradebridge-api",
        access_ttl_s: int = 900,
        clock: Clock,
        leeway_s: int = 5,
    ) -> None:
        if len(secret.encode("utf-8")) < MIN_SECRET_BYTES:
            # An HS256 key shorter than the hash output is guessable offline from any token.
            raise ValueError(f"JWT secret must be at least {MIN_SECRET_BYTES} bytes long")
        if access_ttl_s <= 0:
            raise ValueError("access_ttl_s must be positive")
        if leeway_s < 0:
            raise ValueError("leeway_s must not be negative")
        self._secret = secret
        # The verification key, prepared once: given the raw secret, PyJWT re-checks on every decode that
        # it is not a PEM/DER key (a measurable share of each authenticated request).
        self._verify_key = jwt.PyJWK(
            {"kty": "oct", "k": base64.urlsafe_b64encode(secret.encode("utf-8")).rstrip(b"=").decode()},
            algorithm=ALGORITHM,
        )
        self._issuer = issuer
        self._audience = audience
        self.access_ttl_s = access_ttl_s
        self._clock = clock
        self._leeway_s = leeway_s
        # Tokens whose signature and claims were verified, by the exact token string: a client sends the same
        # token with every request, and its HMAC, base64 and JSON work was ~0.1-0.2 ms of each one. Only the
        # time checks depend on when a token is used; they run on every call (``_check_times``).
        self._verified: dict[str, _Verified] = {}

    def __repr__(self) -> str:
        return f"TokenService(issuer={self._issuer!r}, audience={self._audience!r}, ttl={self.access_ttl_s})"

    def issue_access(self, user_id: str, role: str) -> IssuedToken:
        if not user_id or not role:
            raise ValueError("user_id and role are required")
        iat = int(self._clock.now().timestamp())
        exp = iat + self.access_ttl_s
        jti = secrets.token_urlsafe(16)
        payload = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": user_id,
            "role": role,
            "jti": jti,
            "iat": iat,
            "exp": exp,
            "typ": ACCESS_TYP,
        }
        token = jwt.encode(payload, self._secret, algorithm=ALGORITHM)
        return IssuedToken(
            token=token,
            expires_in=self.access_ttl_s,
            jti=jti,
            expires_at=datetime.fromtimestamp(exp, UTC),
        )

    def decode_access(self, token: str) -> AccessClaims:
        """Verified claims of a valid access token, else ``Unauthorized`` (always the same message)."""
        if not isinstance(token, str) or not token or len(token) > _MAX_TOKEN_CHARS:
            raise Unauthorized(_GENERIC)
        known = self._verified.get(token)
        if known is None:
            known = self._verify(token)
            if len(self._verified) >= _VERIFIED_MAX:  # bounded: forget the oldest
                del self._verified[next(iter(self._verified))]
            self._verified[token] = known
        self._check_times(known)
        return known.claims

    def _verify(self, token: str) -> _Verified:
        """Signature, algorithm, issuer, audience and the claims' presence and types: what a token string
        always passes or always fails, whenever it is used."""
        try:
            payload = jwt.decode(
                token,
                self._verify_key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={
                    "require": _REQUIRED,
                    "verify_signature": True,
                    "verify_aud": True,
                    "verify_iss": True,
                    "strict_aud": True,
                    "verify_sub": True,
                    "verify_jti": True,
                    # Checked below against the injected clock instead of the wall clock.
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError:
            raise Unauthorized(_GENERIC) from None
        except Exception:  # malformed input of any kind must never become a 500
            raise Unauthorized(_GENERIC) from None

        exp = _epoch(payload.get("exp"))
        iat = _epoch(payload.get("iat"))
        if iat > exp:  # nonsense
            raise Unauthorized(_GENERIC)
        nbf = _epoch(payload["nbf"]) if "nbf" in payload else None
        sub, role, jti = payload.get("sub"), payload.get("role"), payload.get("jti")
        if payload.get("typ") != ACCESS_TYP:
            raise Unauthorized(_GENERIC)
        if not (isinstance(sub, str) and sub and isinstance(role, str) and role and isinstance(jti, str)):
            raise Unauthorized(_GENERIC)
        claims = AccessClaims(
            sub=sub,
            role=role,
            jti=jti,
            iat=datetime.fromtimestamp(iat, UTC),
            exp=datetime.fromtimestamp(exp, UTC),
        )
        return _Verified(claims, iat, exp, nbf)

    def _check_times(self, known: _Verified) -> None:
        """Expired, issued in the future or not yet valid, by the injected clock (with the leeway)."""
        now = self._clock.now().timestamp()
        if now >= known.exp + self._leeway_s:  # expired
            raise Unauthorized(_GENERIC)
        if known.iat > now + self._leeway_s:  # issued in the future
            raise Unauthorized(_GENERIC)
        if known.nbf is not None and known.nbf > now + self._leeway_s:
            raise Unauthorized(_GENERIC)


def new_refresh_token() -> tuple[str, str]:
    """A fresh opaque refresh token (256 random bits, url-safe) and the hash to store for it."""
    token = secrets.token_urlsafe(32)
    return token, hash_refresh_token(token)


def hash_refresh_token(token: str) -> str:
    """SHA-256 hex of the token: what the database keeps and looks up by."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()
