"""Exchange API keys encrypted at rest: AES-256-GCM with key ids and rotation.

Setting ``KEY_ENCRYPTION_KEYS`` is a comma-separated list; the first key encrypts, every key decrypts,
so rotating is "prepend a new key, re-encrypt rows where ``needs_rotation``, later drop the old key".
Each entry is either

- ``<url-safe base64 of 32 bytes>`` (what ``generate_key()`` prints); its key id is the first 8 hex
  chars of SHA-256 of the key bytes, or
- ``<kid>:<url-safe base64 of 32 bytes>`` with an explicit key id of 1-32 characters ``[A-Za-z0-9_-]``
  (``:`` never occurs in url-safe base64, so the two forms can't be confused).

Ciphertext format (ASCII, safe in any column or log line): ``v1.<kid>.<nonce>.<ciphertext+tag>``, the
last two url-safe base64 without padding. The nonce is 96 random bits per message (safe far beyond
any number of exchange keys we will ever store). The associated data is the caller's ``aad`` (use
``key_aad(user_id, exchange, field)``) prefixed with version and kid, so a ciphertext copied to
another user's row, another exchange or the other field, or relabelled with another kid, fails to
decrypt instead of yielding someone else's secret.

Errors never contain key material or plaintext; ``KeyRing``'s repr shows key ids only.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"
KEY_BYTES = 32
NONCE_BYTES = 12
_TAG_BYTES = 16
_KID_RE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class DecryptionError(Exception):
    """A ciphertext could not be decrypted (malformed, unknown key, tampered or bound to other data)."""


class KeyConfigError(ValueError):
    """The key setting is unusable; the message names the entry's position, never its value."""


def generate_key() -> str:
    """A new random key in the setting's format (url-safe base64 of 32 bytes)."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).decode("ascii")


def key_id(key: bytes) -> str:
    return hashlib.sha256(key).hexdigest()[:8]


def key_aad(user_id: str, exchange: str, field: str) -> str:
    """Associated data binding a ciphertext to its owner, exchange and field (``api_key``/``api_secret``)."""
    parts = (str(user_id), exchange, field)
    if any(not p or "|" in p for p in parts):
        # A "|" inside a part would make two different triples produce the same string.
        raise ValueError("aad parts must be non-empty and must not contain '|'")
    return "|".join(parts)


def mask_secret(secret: str) -> str:
    """A display hint such as ``****abcd``; secrets under 8 characters show nothing at all."""
    if len(secret) < 8:
        return "****"
    return "****" + secret[-4:]


def _b64decode(text: str) -> bytes:
    """Strict url-safe base64, padding optional."""
    if not text or not re.fullmatch(r"[A-Za-z0-9_-]+={0,2}", text):
        raise ValueError("not url-safe base64")
    stripped = text.rstrip("=")
    return base64.urlsafe_b64decode(stripped + "=" * (-len(stripped) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _full_aad(kid: str, aad: str) -> bytes:
    return f"{VERSION}.{kid}\x00".encode() + aad.encode("utf-8")


class KeyRing:
    """Encrypts with the primary key, decrypts with any key it holds."""

    __slots__ = ("_ciphers", "_primary")

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        """``keys`` are (kid, 32 key bytes), primary first."""
        if not keys:
            raise KeyConfigError("at least one encryption key is required")
        ciphers: dict[str, AESGCM] = {}
        for position, (kid, key) in enumerate(keys, start=1):
            if not _KID_RE.match(kid):
                raise KeyConfigError(f"key #{position}: key id must be 1-32 characters of [A-Za-z0-9_-]")
            if len(key) != KEY_BYTES:
                raise KeyConfigError(f"key #{position}: key must be {KEY_BYTES} bytes")
            if kid in ciphers:
                raise KeyConfigError(f"key #{position}: duplicate key id {kid!r}")
            ciphers[kid] = AESGCM(key)
        self._ciphers = ciphers
        self._primary = keys[0][0]

    @classmethod
    def from_setting(cls, value: str) -> KeyRing:
        """Parse ``KEY_ENCRYPTION_KEYS``; errors say which entry (1-based) is wrong, not what it holds."""
        if not value or not value.strip():
            raise KeyConfigError("KEY_ENCRYPTION_KEYS is empty: generate a key with generate_key()")
        keys: list[tuple[str, bytes]] = []
        for position, raw in enumerate(value.split(","), start=1):
            entry = raw.strip()
            if not entry:
                raise KeyConfigError(f"KEY_ENCRYPTION_KEYS entry #{position} is empty")
            explicit_kid, sep, material = entry.rpartition(":")
            if sep and not _KID_RE.match(explicit_kid):
                raise KeyConfigError(
                    f"KEY_ENCRYPTION_KEYS entry #{position}: key id must be 1-32 characters of [A-Za-z0-9_-]"
                )
            try:
                key = _b64decode(material)
            except (ValueError, binascii.Error):
                raise KeyConfigError(
                    f"KEY_ENCRYPTION_KEYS entry #{position} is not url-safe base64"
                ) from None
            if len(key) != KEY_BYTES:
                raise KeyConfigError(
                    f"KEY_ENCRYPTION_KEYS entry #{position} decodes to {len(key)} bytes, expected {KEY_BYTES}"
                )
            keys.append((explicit_kid if sep else key_id(key), key))
        try:
            return cls(keys)
        except KeyConfigError as exc:
            raise KeyConfigError(f"KEY_ENCRYPTION_KEYS {exc}") from None

    @property
    def primary_kid(self) -> str:
        return self._primary

    @property
    def kids(self) -> tuple[str, ...]:
        return tuple(self._ciphers)

    def __repr__(self) -> str:
        return f"KeyRing(primary={self._primary!r}, kids={list(self._ciphers)!r})"

    def encrypt(self, plaintext: str, aad: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self._primary].encrypt(
            nonce, plaintext.encode("utf-8"), _full_aad(self._primary, aad)
        )
        return f"{VERSION}.{self._primary}.{_b64encode(nonce)}.{_b64encode(sealed)}"

    def decrypt(self, token: str, aad: str) -> str:
        kid, nonce, sealed = self._parse(token)
        cipher = self._ciphers.get(kid)
        if cipher is None:
            raise DecryptionError(
                f"ciphertext uses unknown key id {kid!r}: is its key in KEY_ENCRYPTION_KEYS?"
            )
        try:
            plain = cipher.decrypt(nonce, sealed, _full_aad(kid, aad))
        except InvalidTag:
            raise DecryptionError(
                "ciphertext failed authentication (tampered, wrong key, or bound to another owner/field)"
            ) from None
        try:
            return plain.decode("utf-8")
        except UnicodeDecodeError:
            raise DecryptionError("decrypted data is not UTF-8 text") from None

    def needs_rotation(self, token: str) -> bool:
        """True if ``token`` was sealed with a key other than the primary (re-encrypt it)."""
        kid, _, _ = self._parse(token)
        return kid != self._primary

    def reencrypt(self, token: str, aad: str) -> str:
        """The same secret under the primary key; unchanged if it already is."""
        if not self.needs_rotation(token):
            return token
        return self.encrypt(self.decrypt(token, aad), aad)

    @staticmethod
    def _parse(token: str) -> tuple[str, bytes, bytes]:
        if not isinstance(token, str):
            raise DecryptionError("ciphertext must be a string")
        parts = token.split(".")
        if len(parts) != 4:
            raise DecryptionError("malformed ciphertext")
        version, kid, nonce_b64, sealed_b64 = parts
        if version != VERSION:
            raise DecryptionError("unsupported ciphertext version")
        if not _KID_RE.match(kid):
            raise DecryptionError("malformed ciphertext")
        try:
            nonce, sealed = _b64decode(nonce_b64), _b64decode(sealed_b64)
        except (ValueError, binascii.Error):
            raise DecryptionError("malformed ciphertext") from None
        if len(nonce) != NONCE_BYTES or len(sealed) < _TAG_BYTES:
            raise DecryptionError("malformed ciphertext")
        return kid, nonce, sealed
