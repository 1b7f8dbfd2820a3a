"""Every ccxt exception class is mapped, and Binance's known misfilings are corrected from the message."""

from __future__ import annotations

import importlib
import inspect

import ccxt
import pytest

from shared.exchanges.errors import CCXT_ERRORS, Disposition, ErrorKind, classify, parse_retry_after

ERRORS_MODULE = importlib.import_module("ccxt.base.errors")


def _all_ccxt_errors() -> list[type[BaseException]]:
    base: type[BaseException] = ERRORS_MODULE.BaseError
    return [c for _, c in inspect.getmembers(ERRORS_MODULE, inspect.isclass) if issubclass(c, base)]


def test_every_ccxt_exception_class_is_mapped_explicitly() -> None:
    classes = _all_ccxt_errors()
    assert len(classes) > 30
    missing = [c.__name__ for c in classes if c not in CCXT_ERRORS]
    assert missing == []


@pytest.mark.parametrize("klass", _all_ccxt_errors(), ids=lambda c: c.__name__)
def test_every_class_classifies_to_a_kind_and_disposition(klass: type[BaseException]) -> None:
    err = classify(klass("binance something happened"))
    assert isinstance(err.kind, ErrorKind) and isinstance(err.disposition, Disposition)
    assert err.reason
    assert (err.kind, err.disposition) == CCXT_ERRORS[klass]  # no message trigger: the class decides


def test_placement_uncertainty_is_ambiguous_not_failure() -> None:
    for exc in (
        ccxt.RequestTimeout("t"),
        ccxt.NetworkError("n"),
        ccxt.ExchangeNotAvailable("503"),
        ccxt.BadResponse("x"),
        ccxt.ExchangeError("??"),
    ):
        assert classify(exc).ambiguous, exc


@pytest.mark.parametrize(
    ("exc", "kind", "needle"),
    [
        (
            ccxt.BadRequest('binance {"code":-1013,"msg":"Filter failure: NOTIONAL"}'),
            ErrorKind.FILTER_FAILURE,
            "NOTIONAL",
        ),
        (
            ccxt.InvalidOrder('binance order amount ... {"code":-1013,"msg":"Filter failure: LOT_SIZE"}'),
            ErrorKind.FILTER_FAILURE,
            "LOT_SIZE",
        ),
        (
            ccxt.InvalidOrder('binance {"code":-1013,"msg":"Filter failure: PRICE_FILTER"}'),
            ErrorKind.FILTER_FAILURE,
            "PRICE_FILTER",
        ),
        (
            ccxt.BadRequest('binance {"code":-1013,"msg":"Invalid quantity."}'),
            ErrorKind.BAD_REQUEST,
            "Invalid quantity",
        ),
        (
            ccxt.InsufficientFunds("binance Account has insufficient balance for requested action."),
            ErrorKind.INSUFFICIENT_FUNDS,
            "insufficient balance",
        ),
        (
            ccxt.AuthenticationError('binance {"code":-2015,"msg":"Invalid API-key"}'),
            ErrorKind.AUTHENTICATION,
            "API key",
        ),
    ],
)
def test_definitive_rejections_are_final_with_a_human_reason(
    exc: Exception, kind: ErrorKind, needle: str
) -> None:
    err = classify(exc)
    assert (err.kind, err.disposition) == (kind, Disposition.FINAL)
    assert needle in err.reason


def test_duplicate_order_is_its_own_kind() -> None:
    err = classify(ccxt.InvalidOrder('binance {"code":-2010,"msg":"Duplicate order sent."}'))
    assert err.kind is ErrorKind.DUPLICATE_ORDER


def test_429_and_418_are_both_ddos_but_distinguished() -> None:
    throttled = classify(
        ccxt.DDoSProtection(
            'binance 429 Too Many Requests {"code":-1003,"msg":"Too much request weight used"}'
        ),
        headers={"Retry-After": "7"},
    )
    assert (throttled.kind, throttled.disposition, throttled.retry_after) == (
        ErrorKind.RATE_LIMITED,
        Disposition.RETRYABLE,
        7.0,
    )
    banned = classify(
        ccxt.DDoSProtection(
            'binance 418 I\'m a teapot {"code":-1003,"msg":"IP banned until 1700000000000."}'
        ),
        headers={"retry-after": "120"},
    )
    assert (banned.kind, banned.retry_after, banned.banned_until_ms) == (
        ErrorKind.BANNED,
        120.0,
        1700000000000,
    )


def test_2015_after_a_successful_call_is_a_key_problem_not_a_ban() -> None:
    err = classify(
        ccxt.DDoSProtection('binance {"code":-2015,"msg":"Invalid API-key, IP, or permissions for action."}')
    )
    assert (err.kind, err.disposition) == (ErrorKind.AUTHENTICATION, Disposition.FINAL)


def test_retry_after_parsing() -> None:
    assert parse_retry_after({"Retry-After": "3"}) == 3.0
    assert parse_retry_after(None, "please retry-after: 9 seconds") == 9.0
    assert parse_retry_after({"Other": "1"}) is None


def test_non_ccxt_transport_errors_are_ambiguous() -> None:
    assert classify(OSError("reset")).ambiguous
    assert classify(TimeoutError()).ambiguous
