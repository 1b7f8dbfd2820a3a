"""ccxt's exceptions translated once, here, into what our code must do about them.

Every ccxt exception class maps to one of TradeBridge's own error kinds, and each kind carries a disposition:

- RETRYABLE: the exchange certainly did not act (throttled, banned, clock skew); resending the same request
  later is safe.
- AMBIGUOUS: the exchange may or may not have acted (timeout, dropped connection, 5xx, garbled answer);
  for a placement or a cancel the outcome must be looked up before anything is decided or resent.
- FINAL: the exchange refused for good (insufficient balance, filter failure, bad keys); retrying can't help.

ccxt's own classification is not trusted blindly; the known Binance traps are corrected from the message:
-1013 filter failures arrive as BadRequest (NOTIONAL) or InvalidOrder (LOT_SIZE, PRICE_FILTER); 429 and 418 both
arrive as DDoSProtection; -2015 (bad key) arrives as DDoSProtection once the client has made one successful
private call; -2010 "Duplicate order sent." arrives as InvalidOrder and means "you already placed this".
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import ccxt

from shared.exchanges.base import Disposition, ErrorKind, VenueError

R, A, F = Disposition.RETRYABLE, Disposition.AMBIGUOUS, Disposition.FINAL

# Every class in ccxt.base.errors, most specific first in spirit; a test walks ccxt's hierarchy against this.
CCXT_ERRORS: Mapping[type[BaseException], tuple[ErrorKind, Disposition]] = {
    ccxt.BaseError: (ErrorKind.EXCHANGE, A),
    ccxt.ExchangeError: (ErrorKind.EXCHANGE, A),  # an unrecognised refusal: look before deciding
    ccxt.OperationFailed: (ErrorKind.NETWORK, A),
    ccxt.NetworkError: (ErrorKind.NETWORK, A),
    ccxt.RequestTimeout: (ErrorKind.TIMEOUT, A),
    ccxt.ExchangeNotAvailable: (ErrorKind.UNAVAILABLE, A),  # a 503 may come after the order was taken
    ccxt.OnMaintenance: (ErrorKind.UNAVAILABLE, A),
    ccxt.BadResponse: (ErrorKind.BAD_RESPONSE, A),
    ccxt.NullResponse: (ErrorKind.BAD_RESPONSE, A),
    ccxt.CancelPending: (ErrorKind.NETWORK, A),
    ccxt.DDoSProtection: (ErrorKind.RATE_LIMITED, R),  # 429 and 418: refused before processing
    ccxt.RateLimitExceeded: (ErrorKind.RATE_LIMITED, R),
    ccxt.InvalidNonce: (ErrorKind.CLOCK_SKEW, R),  # -1021: rejected before processing
    ccxt.ChecksumError: (ErrorKind.BAD_RESPONSE, R),  # websocket order books only
    ccxt.AuthenticationError: (ErrorKind.AUTHENTICATION, F),
    ccxt.PermissionDenied: (ErrorKind.PERMISSION, F),
    ccxt.AccountNotEnabled: (ErrorKind.PERMISSION, F),
    ccxt.AccountSuspended: (ErrorKind.ACCOUNT_SUSPENDED, F),
    ccxt.ArgumentsRequired: (ErrorKind.BAD_REQUEST, F),
    ccxt.BadRequest: (ErrorKind.BAD_REQUEST, F),
    ccxt.BadSymbol: (ErrorKind.BAD_SYMBOL, F),
    ccxt.InsufficientFunds: (ErrorKind.INSUFFICIENT_FUNDS, F),
    ccxt.InvalidAddress: (ErrorKind.BAD_REQUEST, F),
    ccxt.AddressPending: (ErrorKind.BAD_REQUEST, F),
    ccxt.InvalidOrder: (ErrorKind.INVALID_ORDER, F),
    ccxt.OrderNotFound: (ErrorKind.ORDER_NOT_FOUND, F),
    ccxt.OrderNotCached: (ErrorKind.ORDER_NOT_FOUND, F),
    ccxt.DuplicateOrderId: (ErrorKind.DUPLICATE_ORDER, F),
    ccxt.OrderImmediatelyFillable: (ErrorKind.INVALID_ORDER, F),
    ccxt.OrderNotFillable: (ErrorKind.INVALID_ORDER, F),
    ccxt.ContractUnavailable: (ErrorKind.BAD_SYMBOL, F),
    ccxt.NotSupported: (ErrorKind.NOT_SUPPORTED, F),
    ccxt.InvalidProxySettings: (ErrorKind.NOT_SUPPORTED, F),
    ccxt.ExchangeClosedByUser: (ErrorKind.CLIENT_CLOSED, R),
    ccxt.OperationRejected: (ErrorKind.CANCEL_REJECTED, F),  # binance -2011 on some endpoints
    ccxt.NoChange: (ErrorKind.CANCEL_REJECTED, F),
    ccxt.MarginModeAlreadySet: (ErrorKind.NOT_SUPPORTED, F),
    ccxt.MarketClosed: (ErrorKind.MARKET_CLOSED, F),
    ccxt.ManualInteractionNeeded: (ErrorKind.PERMISSION, F),
    ccxt.RestrictedLocation: (ErrorKind.PERMISSION, F),
    ccxt.UnsubscribeError: (ErrorKind.NOT_SUPPORTED, F),
}

_FILTER_RE = re.compile(r"Filter failure: ([A-Z_]+)")
_BAN_UNTIL_RE = re.compile(r"banned until (\d{10,})")
_RETRY_AFTER_RE = re.compile(r"retry[- ]after[\"':= ]+(\d+)", re.IGNORECASE)

_FILTER_REASONS = {
    "LOT_SIZE": "quantity is outside the symbol's limits or not a multiple of its step size (LOT_SIZE)",
    "MARKET_LOT_SIZE": "quantity is outside the symbol's market order limits (MARKET_LOT_SIZE)",
    "PRICE_FILTER": "price is outside the symbol's limits or not a multiple of its tick size (PRICE_FILTER)",
    "NOTIONAL": "order value (price x quantity) is below the symbol's minimum or above its maximum (NOTIONAL)",
    "MIN_NOTIONAL": "order value (price x quantity) is below the symbol's minimum (MIN_NOTIONAL)",
    "PERCENT_PRICE": "price is too far from the market price (PERCENT_PRICE)",
    "PERCENT_PRICE_BY_SIDE": "price is too far from the market price (PERCENT_PRICE_BY_SIDE)",
    "MAX_NUM_ORDERS": "too many open orders on this symbol (MAX_NUM_ORDERS)",
}


def base_mapping(exc_type: type[BaseException]) -> tuple[ErrorKind, Disposition]:
    """The entry of the most specific mapped class in the exception's MRO."""
    for klass in exc_type.__mro__:
        if klass in CCXT_ERRORS:
            return CCXT_ERRORS[klass]
    return (ErrorKind.NETWORK, A)  # non-ccxt transport errors (aiohttp, OSError, asyncio timeouts)


def parse_retry_after(headers: Mapping[str, str] | None, message: str = "") -> float | None:
    """Seconds from a Retry-After header (ccxt keeps the last response's headers) or from the message."""
    if headers:
        for name, value in headers.items():
            if name.lower() == "retry-after":
                try:
                    return max(0.0, float(value))
                except ValueError:
                    break
    m = _RETRY_AFTER_RE.search(message)
    return float(m.group(1)) if m else None


def classify(
    exc: BaseException, *, headers: Mapping[str, str] | None = None, venue: str = "Binance testnet"
) -> VenueError:
    """Map any exception a ccxt call raised to a VenueError; the message corrects ccxt's known misfilings.

    `venue` names the exchange in the reasons (they are shown to users)."""
    message = str(exc)
    kind, disposition = base_mapping(type(exc))
    name = type(exc).__name__
    retry_after: float | None = None
    banned_until: int | None = None

    if isinstance(exc, ccxt.DDoSProtection):
        if "-2015" in message:  # ccxt's "temporary ban" workaround once the client authenticated before
            return VenueError(
                ErrorKind.AUTHENTICATION, F, f"{venue} rejected the API key (-2015)", exception=name
            )
        retry_after = parse_retry_after(headers, message)
        m = _BAN_UNTIL_RE.search(message)
        if " 418 " in message or m is not None:
            kind = ErrorKind.BANNED
            banned_until = int(m.group(1)) if m else None
        reason = (
            f"{venue} banned this client for too many requests"
            if kind is ErrorKind.BANNED
            else f"{venue} is throttling requests"
        )
        return VenueError(kind, R, reason, retry_after, banned_until, name)

    m = _FILTER_RE.search(message)
    if m is not None and isinstance(exc, (ccxt.BadRequest, ccxt.InvalidOrder)):
        filt = m.group(1)
        reason = _FILTER_REASONS.get(filt, f"order breaks the symbol's {filt} filter")
        return VenueError(ErrorKind.FILTER_FAILURE, F, f"rejected by {venue}: {reason}", exception=name)
    if "Duplicate order sent" in message:
        return VenueError(
            ErrorKind.DUPLICATE_ORDER, F, "the exchange already has an order with this id", exception=name
        )
    if isinstance(exc, ccxt.InsufficientFunds) or "insufficient balance" in message.lower():
        return VenueError(
            ErrorKind.INSUFFICIENT_FUNDS,
            F,
            f"rejected by {venue}: insufficient balance for this order",
            exception=name,
        )
    if isinstance(exc, ccxt.OrderImmediatelyFillable):  # ccxt keeps only Binance's msg, not its body
        return VenueError(
            kind,
            disposition,
            f"rejected by {venue}: the stop price would trigger immediately (Order would trigger immediately.)",
            exception=name,
        )
    if isinstance(exc, ccxt.InvalidNonce):
        return VenueError(
            kind, disposition, "request timestamp outside the exchange's window", exception=name
        )
    reasons = {
        ErrorKind.AUTHENTICATION: f"{venue} rejected the API key or signature",
        ErrorKind.PERMISSION: "the API key lacks permission for this action",
        ErrorKind.ACCOUNT_SUSPENDED: f"the {venue} account is suspended",
        ErrorKind.BAD_SYMBOL: f"{venue} does not trade this symbol",
        ErrorKind.ORDER_NOT_FOUND: "the exchange does not know this order",
        ErrorKind.TIMEOUT: f"{venue} did not answer in time",
        ErrorKind.NETWORK: f"{venue} could not be reached",
        ErrorKind.UNAVAILABLE: f"{venue} is unavailable",
        ErrorKind.BAD_RESPONSE: f"{venue} sent an unreadable answer",
        ErrorKind.RATE_LIMITED: f"{venue} is throttling requests",
    }
    known = reasons.get(kind)
    if known is None:
        detail = _exchange_msg(message)
        known = f"rejected by {venue}: {detail}" if detail else f"{venue} error ({name})"
    return VenueError(kind, disposition, known, exception=name)


_MSG_RE = re.compile(r'"msg"\s*:\s*"([^"]{1,200})"')


def _exchange_msg(message: str) -> str | None:
    """The exchange's own `msg` (a Binance body never contains keys), trimmed."""
    m = _MSG_RE.search(message)
    return m.group(1) if m else None


__all__ = [
    "CCXT_ERRORS",
    "Disposition",
    "ErrorKind",
    "VenueError",
    "base_mapping",
    "classify",
    "parse_retry_after",
]
