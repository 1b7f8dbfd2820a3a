"""TradeBridge-issued API keys: the store (issue, list, revoke, look up) and Binance's request signing rules
(HMAC-SHA256 over the request's payload, timestamp and recvWindow, scopes, IP allow-list).

Shared by the Binance-compatible REST API (``gateway.binance_api``) and, later, its WebSocket API: both
answer with Binance's error codes, so the refusals here carry them (``KeyRefused``). Nothing here logs or
returns a secret; ``ResolvedKey``'s repr hides it."""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import secrets
import string
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from sqlalchemy import Select, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from shared.clock import Clock
from shared.errors import InvalidInput, NotFound
from shared.ids import new_id
from shared.models import ApiKey, User
from shared.security.crypto import KeyRing, key_aad, mask_secret

SCOPES = ("read", "trade")
KEY_LENGTH = 64  # Binance's API keys and secrets are 64 alphanumeric characters; ours too
MAX_RECV_WINDOW_MS = 60_000  # Binance's ceiling
DEFAULT_RECV_WINDOW_MS = 5_000
FUTURE_TOLERANCE_MS = 1_000  # a timestamp this far ahead of the server's clock is still accepted
_ALPHABET = string.ascii_letters + string.digits


class KeyRefused(Exception):
    """An authentication refusal with Binance's error code, message and HTTP status."""

    def __init__(self, code: int, msg: str, status: int = 401) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status


INVALID_KEY = (-2014, "API-key format invalid.")
REJECTED_KEY = (-2015, "Invalid API-key, IP, or permissions for action.")
BAD_SIGNATURE = (-1022, "Signature for this request is not valid.")


def _refuse(pair: tuple[int, str], status: int = 401) -> KeyRefused:
    return KeyRefused(pair[0], pair[1], status)


def key_hash(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def _secret_aad(user_id: str, key_id: str) -> str:
    return key_aad(user_id, "tradebridge-api", f"api_secret:{key_id}")


def _random_token() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(KEY_LENGTH))


def normalize_scopes(scopes: Iterable[str]) -> str:
    chosen = {s.strip().lower() for s in scopes if s.strip()}
    unknown = chosen - set(SCOPES)
    if unknown or not chosen:
        raise InvalidInput(
            f"scopes must be a non-empty subset of {', '.join(SCOPES)}",
            errors=[{"field": "scopes", "message": f"unknown or empty: {sorted(unknown)}"}],
        )
    return ",".join(s for s in SCOPES if s in chosen)


def normalize_allowlist(entries: Iterable[str]) -> list[str]:
    """IP addresses or networks (``203.0.113.7``, ``10.0.0.0/8``), normalised; a bad entry is a 422."""
    out = []
    for entry in entries:
        try:
            out.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
        except ValueError:
            raise InvalidInput(
                f"{entry!r} is not an IP address or network",
                errors=[{"field": "ip_allowlist", "message": "not an IP address or network"}],
            ) from None
    if len(out) > 20:
        raise InvalidInput("at most 20 ip_allowlist entries", errors=[{"field": "ip_allowlist"}])
    return out


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """What creating a key answers, once: the API key and secret in plain text."""

    row: ApiKey
    api_key: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    """A live key with its owner, as a request needs it."""

    key_id: str
    user_id: str
    mode: str
    scopes: frozenset[str]
    ip_allowlist: tuple[str, ...]
    secret: str = field(repr=False)

    def allows(self, scope: str, address: str | None) -> None:
        """Raise ``KeyRefused`` (-2015) unless the key has ``scope`` and ``address`` is on its allow-list."""
        if scope not in self.scopes:
            raise _refuse(REJECTED_KEY)
        if self.ip_allowlist:
            try:
                ip = ipaddress.ip_address(address or "")
            except ValueError:
                raise _refuse(REJECTED_KEY) from None
            if not any(ip in ipaddress.ip_network(n) for n in self.ip_allowlist):
                raise _refuse(REJECTED_KEY)


async def issue_key(
    session: AsyncSession,
    keyring: KeyRing,
    clock: Clock,
    user_id: str,
    *,
    label: str = "",
    scopes: Iterable[str] = SCOPES,
    ip_allowlist: Iterable[str] = (),
) -> IssuedKey:
    """A new key for ``user_id``: the plain API key and secret are in the result only."""
    api_key, secret = _random_token(), _random_token()
    key_id = new_id()
    row = ApiKey(
        id=key_id,
        user_id=user_id,
        label=label[:64],
        key_hash=key_hash(api_key),
        key_hint=mask_secret(api_key),
        secret_ciphertext=keyring.encrypt(secret, _secret_aad(user_id, key_id)),
        scopes=normalize_scopes(scopes),
        ip_allowlist=normalize_allowlist(ip_allowlist),
        created_at=clock.now(),
    )
    session.add(row)
    await session.flush()
    return IssuedKey(row, api_key, secret)


async def list_keys(session: AsyncSession, user_id: str, *, include_revoked: bool = False) -> list[ApiKey]:
    stmt = select(ApiKey).where(col(ApiKey.user_id) == user_id)
    if not include_revoked:
        stmt = stmt.where(col(ApiKey.revoked_at).is_(None))
    return list((await session.execute(stmt.order_by(col(ApiKey.created_at), col(ApiKey.id)))).scalars())


async def revoke_key(session: AsyncSession, clock: Clock, user_id: str, key_id: str) -> ApiKey:
    """Revoke one of the user's keys (it stops working at once); an unknown or another user's key is 404,
    an already revoked one stays as it is."""
    row = (
        await session.execute(select(ApiKey).where(col(ApiKey.id) == key_id, col(ApiKey.user_id) == user_id))
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"No API key {key_id}.")
    if row.revoked_at is None:
        await session.execute(update(ApiKey).where(col(ApiKey.id) == key_id).values(revoked_at=clock.now()))
        await session.refresh(row)
    return row


@functools.cache
def _live_key_statement() -> Select[Any]:
    """The look-up of a live key and its active owner, built once (on first use): building a select and its
    cache key costs more than running it, on every signed request."""
    u = User.__table__  # type: ignore[attr-defined]
    k = ApiKey.__table__  # type: ignore[attr-defined]
    return (
        select(k.c.id, k.c.user_id, k.c.scopes, k.c.ip_allowlist, k.c.secret_ciphertext, u.c.mode)
        .join(u, u.c.id == k.c.user_id)
        .where(k.c.key_hash == bindparam("key_hash"), k.c.revoked_at.is_(None), u.c.is_active.is_(True))
    )


async def resolve_key(session: AsyncSession, keyring: KeyRing, api_key: str | None) -> ResolvedKey:
    """The live key and its active owner for an ``X-MBX-APIKEY`` header, else ``KeyRefused``: -2014 for a
    missing or malformed key, -2015 for an unknown, revoked or deactivated one (as Binance answers)."""
    if not api_key or len(api_key) != KEY_LENGTH or not api_key.isalnum():
        raise _refuse(INVALID_KEY)
    row = (await session.execute(_live_key_statement(), {"key_hash": key_hash(api_key)})).first()
    if row is None:
        raise _refuse(REJECTED_KEY)
    return ResolvedKey(
        key_id=row.id,
        user_id=row.user_id,
        mode=row.mode,
        scopes=frozenset(s for s in row.scopes.split(",") if s),
        ip_allowlist=tuple(row.ip_allowlist or ()),
        secret=keyring.decrypt(row.secret_ciphertext, _secret_aad(row.user_id, row.id)),
    )


def _strip_signature(raw: str) -> tuple[str, str | None]:
    """``raw`` without its ``signature=`` parameter, and that signature."""
    kept, signature = [], None
    for part in raw.split("&") if raw else []:
        if part.startswith("signature="):
            signature = part[len("signature=") :]
        else:
            kept.append(part)
    return "&".join(kept), signature


def signed_payload(query: str, body: str) -> tuple[str, str | None]:
    """Binance's ``totalParams``: the query string then the body, each as sent, without ``signature``."""
    q, sig_q = _strip_signature(query)
    b, sig_b = _strip_signature(body)
    return q + b, sig_q or sig_b


def verify_signature(secret: str, payload: str, signature: str | None) -> None:
    """HMAC-SHA256 of the payload, hex, as Binance checks it (``KeyRefused`` -1022 otherwise).

    Binance's current rule (since 2026-01-15) signs the payload as sent, percent-encoded: what ccxt signs.
    Clients that sign the values before encoding them (python-binance signs its parameters unencoded, then
    its HTTP library encodes the form body) sign the decoded payload: that is accepted too; both are
    HMACs under the same secret, so neither is weaker."""
    if not signature:
        raise KeyRefused(
            -1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.", 400
        )
    given = unquote_plus(signature).lower()
    key = secret.encode()
    for candidate in dict.fromkeys((payload, unquote_plus(payload))):
        expected = hmac.new(key, candidate.encode(), hashlib.sha256).hexdigest()
        if hmac.compare_digest(expected, given):
            return
    raise _refuse(BAD_SIGNATURE, 400)


def check_timestamp(timestamp: str | None, recv_window: str | None, now_ms: int) -> None:
    """Binance's timing rule: ``timestamp`` is mandatory, at most 1 s ahead of the server, and no older than
    ``recvWindow`` ms (default 5000, at most 60000). A request replayed after its window is refused (-1021)."""
    if timestamp is None or timestamp == "":
        raise KeyRefused(
            -1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.", 400
        )
    try:
        ts = int(timestamp)
    except ValueError:
        raise KeyRefused(
            -1100, "Illegal characters found in parameter 'timestamp'; legal range is '^[0-9]{1,20}$'.", 400
        ) from None
    window = DEFAULT_RECV_WINDOW_MS
    if recv_window not in (None, ""):
        try:
            window = int(_recv_window_ms(recv_window))
        except ValueError:
            raise KeyRefused(-1100, "Illegal characters found in parameter 'recvWindow'.", 400) from None
        if window <= 0 or window > MAX_RECV_WINDOW_MS:
            raise KeyRefused(-1131, f"recvWindow must be less than {MAX_RECV_WINDOW_MS}.", 400)
    if ts >= now_ms + FUTURE_TOLERANCE_MS:
        raise KeyRefused(-1021, "Timestamp for this request was 1000ms ahead of the server's time.", 400)
    if now_ms - ts > window:
        raise KeyRefused(-1021, "Timestamp for this request is outside of the recvWindow.", 400)


def _recv_window_ms(value: str) -> float:
    """recvWindow in ms; Binance accepts up to three decimals (microseconds)."""
    text = value.strip()
    if not text or any(c not in "0123456789." for c in text) or text.count(".") > 1:
        raise ValueError(value)
    return float(text)
