"""Binance's error shape ``{"code": -XXXX, "msg": "..."}`` with Binance's HTTP statuses, and the mapping of
our domain errors onto Binance's codes (only under the /binance prefix; the rest of the API answers
problem+json)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel

from shared.apikeys import KeyRefused
from shared.errors import Conflict, DomainError, Forbidden, NotFound, Throttled, Unauthorized, Unavailable
from shared.trading_errors import InsufficientBalance, RuleViolation


class BinanceErrorOut(BaseModel):
    """Every error under /binance: Binance's code (negative) and message."""

    code: int
    msg: str


class BinanceError(Exception):
    def __init__(self, code: int, msg: str, status: int = 400, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg
        self.status = status
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"code": self.code, "msg": self.msg}, status_code=self.status, headers=self.headers
        )


def mandatory(name: str) -> BinanceError:
    return BinanceError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def not_required(name: str) -> BinanceError:
    return BinanceError(-1106, f"Parameter '{name}' sent when not required.")


def illegal(name: str) -> BinanceError:
    return BinanceError(-1100, f"Illegal characters found in parameter '{name}'.")


UNKNOWN_ORDER = BinanceError(-2011, "Unknown order sent.")
NO_SUCH_ORDER = BinanceError(-2013, "Order does not exist.")
INVALID_SYMBOL = BinanceError(-1121, "Invalid symbol.")
INSUFFICIENT = "Account has insufficient balance for requested action."

# Filter names as Binance's messages spell them (ours call the notional filter MIN_NOTIONAL).
_FILTERS = {"MIN_NOTIONAL": "NOTIONAL", "PRICE_FILTER": "PRICE_FILTER", "LOT_SIZE": "LOT_SIZE"}


def from_refusal(exc: KeyRefused) -> BinanceError:
    return BinanceError(exc.code, exc.msg, exc.status)


def from_domain(exc: DomainError, *, placing: bool = False) -> BinanceError:
    """Our error as Binance would answer it. ``placing``: the request was a new order (-2010 for refusals)."""
    if isinstance(exc, RuleViolation):
        if exc.rule == "SYMBOL":
            return INVALID_SYMBOL
        return BinanceError(-1013, f"Filter failure: {_FILTERS.get(exc.rule, exc.rule)}")
    if isinstance(exc, InsufficientBalance):
        return BinanceError(-2010, INSUFFICIENT)
    if isinstance(exc, Throttled):
        headers = {"Retry-After": str(exc.retry_after)}
        if placing:
            return BinanceError(-1015, "Too many new orders; " + exc.detail, 429, headers)
        return BinanceError(-1003, "Too much request weight used; " + exc.detail, 429, headers)
    if isinstance(exc, Unavailable):
        return BinanceError(
            -1008,
            "Server is currently overloaded with other requests. Please try again in a few minutes.",
            503,
        )
    if isinstance(exc, Unauthorized | Forbidden):
        return BinanceError(-2015, "Invalid API-key, IP, or permissions for action.", 401)
    if isinstance(exc, NotFound):
        return NO_SUCH_ORDER
    if isinstance(exc, Conflict):
        return BinanceError(-2010, exc.detail) if placing else UNKNOWN_ORDER
    return BinanceError(-1100 if not placing else -1013, exc.detail)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI: the statuses a /binance route answers with Binance's error body."""
    described = {
        400: "Bad parameters, filter failure, rejected order, bad signature or timestamp",
        401: "Missing, unknown or revoked API key; missing permission or address not allowed",
        404: "Unknown endpoint",
        429: "Request weight or order rate exceeded (Retry-After)",
        503: "Overloaded",
    }
    seconds = {"description": "Seconds to wait before retrying.", "schema": {"type": "integer", "minimum": 1}}
    headers: dict[int, dict[str, Any]] = {
        429: {"Retry-After": {**seconds, "required": True}},
    }
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {"model": BinanceErrorOut, "description": described.get(status, "Error")}
        if status in headers:
            out[status]["headers"] = headers[status]
    return out
