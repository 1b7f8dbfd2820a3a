"""Secrets resolved once at start-up.

In development a missing JWT secret or key-encryption key is generated once into a local file (mode 0600)
so tokens and ciphertexts survive restarts; in production a missing secret stops start-up with one line.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import structlog

from shared.settings import Settings

log = structlog.get_logger(__name__)


class ConfigError(RuntimeError):
    """A configuration problem that must stop start-up, with a message meant for the operator."""


@dataclass(frozen=True, slots=True)
class Secrets:
    jwt_secret: str
    key_encryption_keys: str

    def __repr__(self) -> str:
        return "Secrets(<redacted>)"


def generate_encryption_key() -> str:
    from shared.security.crypto import generate_key

    return generate_key()


def resolve_secrets(settings: Settings) -> Secrets:
    jwt = settings.jwt_secret.get_secret_value() if settings.jwt_secret else ""
    kek = settings.key_encryption_keys.get_secret_value() if settings.key_encryption_keys else ""
    if jwt and kek:
        return Secrets(jwt, kek)
    if settings.is_production:
        missing = [name for name, val in (("JWT_SECRET", jwt), ("KEY_ENCRYPTION_KEYS", kek)) if not val]
        raise ConfigError(
            f"{' and '.join(missing)} must be set when TRADEBRIDGE_ENV=production (see .env.example)"
        )
    stored = _load(settings.secrets_file)
    changed = False
    if not jwt:
        jwt = stored.get("JWT_SECRET") or ""
        if not jwt:
            jwt = secrets.token_urlsafe(48)
            stored["JWT_SECRET"] = jwt
            changed = True
    if not kek:
        kek = stored.get("KEY_ENCRYPTION_KEYS") or ""
        if not kek:
            kek = generate_encryption_key()
            stored["KEY_ENCRYPTION_KEYS"] = kek
            changed = True
    if changed:
        _store(settings.secrets_file, stored)
        log.warning(
            "generated development secrets; set JWT_SECRET and KEY_ENCRYPTION_KEYS for production",
            file=str(settings.secrets_file),
        )
    return Secrets(jwt, kek)


def _load(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the development secrets file {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"the development secrets file {path} is not a JSON object")
    return {str(k): str(v) for k, v in data.items()}


def _store(path: Path, data: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2)
    os.replace(tmp, path)
