"""Security primitives: password hashing, access/refresh tokens, encryption of exchange keys at rest."""

from shared.security.crypto import (
    DecryptionError,
    KeyConfigError,
    KeyRing,
    generate_key,
    key_aad,
    mask_secret,
)
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
from shared.security.tokens import (
    AccessClaims,
    IssuedToken,
    TokenService,
    hash_refresh_token,
    new_refresh_token,
)

__all__ = [
    "AccessClaims",
    "DecryptionError",
    "IssuedToken",
    "KeyConfigError",
    "KeyRing",
    "TokenService",
    "dummy_verify",
    "dummy_verify_async",
    "generate_key",
    "hash_password",
    "hash_password_async",
    "hash_refresh_token",
    "key_aad",
    "mask_secret",
    "needs_rehash",
    "new_refresh_token",
    "password_policy_violation",
    "validate_password",
    "verify_password",
    "verify_password_async",
]
