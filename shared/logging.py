"""Structured logs: JSON in production, readable in development, secrets redacted, request id attached."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SENSITIVE = re.compile(r"pass(word)?|secret|token|api[_-]?key|authorization|cookie|ciphertext", re.I)
REDACTED = "***"


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


def _add_request_id(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    try:
        from asgi_correlation_id import correlation_id
    except ImportError:  # pragma: no cover
        return event
    rid = correlation_id.get()
    if rid and "request_id" not in event:
        event["request_id"] = rid
    return event


def configure_logging(*, production: bool, level: str = "INFO") -> None:
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
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "aiosqlite", "ccxt", "alembic"):  # alembic: 7 "setup plugin" lines on import
        logging.getLogger(noisy).setLevel(logging.WARNING)
