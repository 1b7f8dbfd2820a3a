"""Structured logs: JSON in production, readable in development, secrets redacted, request id attached.

Secrets are redacted twice: by key name in structlog events (`redact_secrets`), and in every finished line
whatever logged it (`scrub_line`): uvicorn writes request paths with their query string (`WebSocket
/ws?token=eyJ...`), and tracebacks or library messages may quote URLs and headers. WebSocket frames, which
websockets dumps at DEBUG cut to their first 50 and last 25 characters, are logged by type and size only
(`_FramePayloads`): a value cut off mid-way matches no pattern, and a client's frames carry tokens and signatures.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SENSITIVE = re.compile(r"pass(word)?|secret|token|api[_-]?key|authorization|cookie|ciphertext", re.I)
REDACTED = "***"

# Values whose name says secret (token, access_token, refresh_token, api_key, signature, password, ...): as a
# query or form parameter / key=value pair, and as a JSON member.
_SECRET_NAME = r"[\w.-]*?(?:token|secret|signature|pass(?:word)?|key|auth|credential|cookie)[\w.-]*"
_QUERY_SECRET = re.compile(rf"(?i)((?:^|[?&;\s,{{(\"'])(?:{_SECRET_NAME})=)[^&;\s\"'#,)}}\\]+")
_JSON_SECRET = re.compile(rf"(?i)(\"{_SECRET_NAME}\"\s*:\s*\")(?:[^\"\\]|\\.)*\"")
# Anything shaped like a JWT (three base64url parts, the first a JSON object), and bearer credentials.
_JWT = re.compile(r"\beyJ[\w-]{4,}\.[\w-]{4,}\.[\w-]*")
_BEARER = re.compile(r"(?i)\b(bearer\s+)[\w.~+/=-]{8,}")


def scrub_line(text: str) -> str:
    """The line with secret query values, JWTs and bearer credentials replaced by ***."""
    if "=" in text:
        text = _QUERY_SECRET.sub(lambda m: m.group(1) + REDACTED, text)
    if '":' in text:
        text = _JSON_SECRET.sub(lambda m: m.group(1) + REDACTED + '"', text)
    if "eyJ" in text:
        text = _JWT.sub(REDACTED, text)
    return _BEARER.sub(lambda m: m.group(1) + REDACTED, text)


def _scrub_rendered(_logger: Any, _name: str, line: Any) -> str:
    """The last step of the formatter: scrub the rendered line (message, values and traceback alike)."""
    return scrub_line(line.decode() if isinstance(line, bytes | bytearray) else str(line))


def redact_secrets(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """Mask values whose key names a secret, at any nesting depth of dicts."""
    for key, value in list(event.items()):
        if key != "event" and _SENSITIVE.search(str(key)):
            event[key] = REDACTED
        elif isinstance(value, dict):
            event[key] = _redact_dict(value)
    return event


def _redact_dict(data: dict[str, Any]) -> dict[str, Any]:
    return {
        k: (REDACTED if _SENSITIVE.search(str(k)) else _redact_dict(v) if isinstance(v, dict) else v)
        for k, v in data.items()
    }


_DATA_FRAMES = frozenset({"TEXT", "BINARY", "CONT"})


def _frame_summary(value: Any) -> Any:
    """A websockets data frame (`frames.Frame`, or the legacy NamedTuple) as its type and size; else as is."""
    opcode = getattr(getattr(value, "opcode", None), "name", None)
    data = getattr(value, "data", None)
    if opcode in _DATA_FRAMES and isinstance(data, bytes | bytearray | memoryview):
        return f"{opcode} [{len(data)} bytes]"
    return value


class _FramePayloads(logging.Filter):
    """Drops the payload from websockets' per-frame DEBUG lines (`logger.debug("< %s", frame)`): it shows a
    client's auth message or signed request cut to 75 characters, so the scrubbing patterns, which need a
    value's start or end, leave the other end of a token or signature in the line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and record.args:
            record.args = tuple(_frame_summary(a) for a in record.args)
        return True


def _add_request_id(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    try:
        from asgi_correlation_id import correlation_id
    except ImportError:  # pragma: no cover
        return event
    rid = correlation_id.get()
    if rid and "request_id" not in event:
        event["request_id"] = rid
    return event


def configure_logging(*, production: bool, level: str = "INFO", access_log: bool = False) -> None:
    """Route every logger (uvicorn's included) through one handler that renders and scrubs each line;
    `access_log` lets uvicorn's per-request lines through at INFO."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _add_request_id,
        redact_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if production
        # Plain tracebacks: rich's pretty ones (with locals) cost milliseconds each and, under an error
        # storm, stall the event loop that serves everyone else.
        else structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if production else structlog.dev.set_exc_info,
            renderer,
            _scrub_rendered,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(_FramePayloads())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("aiosqlite", "ccxt", "alembic"):  # alembic: 7 "setup plugin" lines on import
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("uvicorn.access").setLevel(logging.NOTSET if access_log else logging.WARNING)
