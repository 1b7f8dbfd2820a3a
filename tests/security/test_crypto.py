"""Exchange-key encryption: authenticated, bound to its owner, rotatable, and silent about secrets."""

from __future__ import annotations

import base64
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.security.crypto import (
    DecryptionError,
    KeyConfigError,
    KeyRing,
    generate_key,
    key_aad,
    key_id,
    mask_secret,
)

# Fixed keys: parametrize ids must be identical in every xdist worker.
OLD = base64.urlsafe_b64encode(bytes(range(32))).decode()
NEW = base64.urlsafe_b64encode(bytes(range(100, 132))).decode()
SECRET = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
AAD = key_aad("user-1", "binance-testnet", "api_secret")
STANDARD_B64_KEY = base64.standard_b64encode(bytes([0xFB]) * 32).decode()  # has '+' and '/'
TOKEN_RE = re.compile(r"^v1\.[0-9a-f]{8}\.[A-Za-z0-9_-]{16}\.[A-Za-z0-9_-]+$")


def raw(key: str) -> bytes:
    return base64.urlsafe_b64decode(key)


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.from_setting(OLD)


def test_round_trip_and_format(ring: KeyRing) -> None:
    token = ring.encrypt(SECRET, AAD)
    assert TOKEN_RE.match(token), token
    assert token.split(".")[1] == key_id(raw(OLD)) == ring.primary_kid
    assert ring.decrypt(token, AAD) == SECRET
    assert ring.decrypt(ring.encrypt("", AAD), AAD) == ""
    assert ring.decrypt(ring.encrypt("ключ-🔑", AAD), AAD) == "ключ-🔑"


def test_fresh_nonce_each_time(ring: KeyRing) -> None:
    tokens = {ring.encrypt(SECRET, AAD) for _ in range(50)}
    assert len(tokens) == 50
    assert len({t.split(".")[2] for t in tokens}) == 50


def test_ciphertext_does_not_contain_the_plaintext(ring: KeyRing) -> None:
    token = ring.encrypt(SECRET, AAD)
    assert SECRET not in token
    assert SECRET[:8] not in token
    sealed = base64.urlsafe_b64decode(token.split(".")[3] + "==")
    assert SECRET.encode() not in sealed
    assert OLD not in token and OLD.rstrip("=") not in token


@pytest.mark.parametrize(
    "other_aad",
    [
        key_aad("user-2", "binance-testnet", "api_secret"),  # row copied to another user
        key_aad("user-1", "binance", "api_secret"),  # another exchange
        key_aad("user-1", "binance-testnet", "api_key"),  # swapped fields
        "",
    ],
)
def test_other_associated_data_fails(ring: KeyRing, other_aad: str) -> None:
    token = ring.encrypt(SECRET, AAD)
    with pytest.raises(DecryptionError) as exc_info:
        ring.decrypt(token, other_aad)
    assert SECRET not in str(exc_info.value)
    assert exc_info.value.__cause__ is None


def test_tampering_fails(ring: KeyRing) -> None:
    token = ring.encrypt(SECRET, AAD)
    version, kid, nonce, sealed = token.split(".")
    body = bytearray(base64.urlsafe_b64decode(sealed + "=" * (-len(sealed) % 4)))
    body[0] ^= 0x01
    tampered_body = base64.urlsafe_b64encode(bytes(body)).decode().rstrip("=")
    other_nonce = base64.urlsafe_b64encode(b"\x00" * 12).decode().rstrip("=")
    for bad in (
        f"{version}.{kid}.{nonce}.{tampered_body}",
        f"{version}.{kid}.{other_nonce}.{sealed}",
        f"{version}.{kid}.{nonce}.{sealed[:-4]}",  # truncated tag
        f"v2.{kid}.{nonce}.{sealed}",
        f"{version}.{kid}.{nonce}",
        f"{version}.{kid}.{nonce}.{sealed}.extra",
        f"{version}.{kid}.{nonce}.{sealed}!",
        f"{version}.bad kid.{nonce}.{sealed}",
    ):
        with pytest.raises(DecryptionError) as exc_info:
            ring.decrypt(bad, AAD)
        assert SECRET not in str(exc_info.value)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_property_any_single_bit_flip_is_detected(data: st.DataObject) -> None:
    ring = KeyRing.from_setting(OLD)
    token = ring.encrypt(SECRET, AAD)
    version, kid, nonce_b64, sealed_b64 = token.split(".")
    blob = bytearray(base64.urlsafe_b64decode(nonce_b64 + "=") + base64.urlsafe_b64decode(sealed_b64 + "=="))
    bit = data.draw(st.integers(0, len(blob) * 8 - 1))
    blob[bit // 8] ^= 1 << (bit % 8)

    def enc(b: bytes | bytearray) -> str:
        return base64.urlsafe_b64encode(bytes(b)).decode().rstrip("=")

    with pytest.raises(DecryptionError):
        ring.decrypt(f"{version}.{kid}.{enc(blob[:12])}.{enc(blob[12:])}", AAD)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_property_garbage_only_raises_decryption_error(junk: str) -> None:
    ring = KeyRing.from_setting(OLD)
    with pytest.raises(DecryptionError):
        ring.decrypt(junk, AAD)


def test_relabelled_kid_fails() -> None:
    ring = KeyRing.from_setting(f"{NEW},{OLD}")
    token = ring.encrypt(SECRET, AAD)
    _, _, nonce, sealed = token.split(".")
    with pytest.raises(DecryptionError, match="failed authentication"):
        ring.decrypt(f"v1.{key_id(raw(OLD))}.{nonce}.{sealed}", AAD)


def test_rotation() -> None:
    old_ring = KeyRing.from_setting(OLD)
    token = old_ring.encrypt(SECRET, AAD)
    assert not old_ring.needs_rotation(token)

    new_ring = KeyRing.from_setting(f"{NEW}, {OLD}")
    assert new_ring.primary_kid == key_id(raw(NEW))
    assert new_ring.kids == (key_id(raw(NEW)), key_id(raw(OLD)))
    assert new_ring.decrypt(token, AAD) == SECRET
    assert new_ring.needs_rotation(token)

    rotated = new_ring.reencrypt(token, AAD)
    assert rotated != token
    assert not new_ring.needs_rotation(rotated)
    assert new_ring.decrypt(rotated, AAD) == SECRET
    assert new_ring.reencrypt(rotated, AAD) == rotated

    # Once the old key is dropped, the rotated value still decrypts and the old one fails clearly.
    only_new = KeyRing.from_setting(NEW)
    assert only_new.decrypt(rotated, AAD) == SECRET
    with pytest.raises(DecryptionError, match=f"unknown key id '{key_id(raw(OLD))}'"):
        only_new.decrypt(token, AAD)
    with pytest.raises(DecryptionError, match="unknown key id"):
        old_ring.decrypt(rotated, AAD)


def test_explicit_key_ids() -> None:
    ring = KeyRing.from_setting(f"k2026:{NEW},k2025:{OLD}")
    assert ring.kids == ("k2026", "k2025")
    token = ring.encrypt(SECRET, AAD)
    assert token.startswith("v1.k2026.")
    assert KeyRing.from_setting(f"k2025:{OLD},k2026:{NEW}").decrypt(token, AAD) == SECRET


def test_keys_without_padding_are_accepted() -> None:
    ring = KeyRing.from_setting(OLD.rstrip("="))
    assert ring.primary_kid == key_id(raw(OLD))


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("not base64 !!", "entry #1 is not url-safe base64"),
        (f"{OLD},{base64.urlsafe_b64encode(b'0' * 16).decode()}", "entry #2 decodes to 16 bytes"),
        (f"{OLD},,{NEW}", "entry #2 is empty"),
        (f"{OLD},{NEW},{OLD}", "key #3: duplicate key id"),
        (f"bad kid:{OLD}", "entry #1: key id must be"),
        (f"a:{OLD},a:{NEW}", "key #2: duplicate key id 'a'"),
        (f"{OLD},{STANDARD_B64_KEY}", "entry #2 is not url-safe base64"),
    ],
)
def test_bad_settings_name_the_position_not_the_value(setting: str, message: str) -> None:
    with pytest.raises(KeyConfigError, match=re.escape(message)) as exc_info:
        KeyRing.from_setting(setting)
    text = str(exc_info.value)
    for part in setting.split(","):
        if len(part.strip()) > 8:
            assert part.strip() not in text


def test_repr_shows_key_ids_only() -> None:
    ring = KeyRing.from_setting(f"{NEW},{OLD}")
    text = repr(ring) + str(ring)
    assert NEW not in text and OLD not in text and NEW[:10] not in text
    assert key_id(raw(NEW)) in text


def test_generate_key() -> None:
    keys = {generate_key() for _ in range(20)}
    assert len(keys) == 20
    for key in keys:
        assert len(base64.urlsafe_b64decode(key)) == 32
        KeyRing.from_setting(key)


def test_key_aad() -> None:
    assert key_aad("u1", "binance-testnet", "api_key") == "u1|binance-testnet|api_key"
    with pytest.raises(ValueError):
        key_aad("u|1", "binance", "api_key")
    with pytest.raises(ValueError):
        key_aad("", "binance", "api_key")


@pytest.mark.parametrize(
    ("secret", "hint"),
    [("abcdefgh12345678wxyz", "****wxyz"), ("abcdefgh", "****efgh"), ("abcdefg", "****"), ("", "****")],
)
def test_mask_secret(secret: str, hint: str) -> None:
    assert mask_secret(secret) == hint
