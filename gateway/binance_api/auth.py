"""A /binance request's parameters (query string and form body, as Binance reads them), its request weight
(the existing rate limiter, per client address) and, for signed endpoints, its key, signature and timing
(``shared.apikeys``)."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from gateway.binance_api.errors import BinanceError, from_refusal
from gateway.binance_api.parts import Parts
from shared.apikeys import (
    KeyRefused,
    ResolvedKey,
    check_timestamp,
    resolve_key,
    signed_payload,
    verify_signature,
)

WEIGHT_STATE = "binance_used_weight"


@dataclass(frozen=True, slots=True)
class Call:
    """What an endpoint needs of its request: the parameters by name, and the key of a signed call."""

    params: dict[str, str]
    key: ResolvedKey | None = None

    def get(self, name: str) -> str | None:
        value = self.params.get(name)
        return value if value not in (None, "") else None


def _parse(raw: str) -> list[tuple[str, str]]:
    try:
        return parse_qsl(raw, keep_blank_values=True, strict_parsing=False, max_num_fields=64)
    except ValueError:
        raise BinanceError(-1101, "Too many parameters sent for this endpoint.") from None


async def _raw(request: Request) -> tuple[str, str]:
    query = request.scope.get("query_string", b"").decode("latin-1")
    body = ""
    if request.method in ("POST", "PUT", "DELETE"):
        data = await request.body()
        if data:
            ctype = request.headers.get("content-type", "")
            if "json" in ctype:
                raise BinanceError(-1100, "Send parameters as a query string or a form body, not JSON.")
            try:
                body = data.decode()
            except UnicodeDecodeError:
                raise BinanceError(-1100, "Illegal characters found in a parameter.") from None
    return query, body


def client_address(request: Request, rt: Parts) -> str:
    """The caller's address, as ``gateway.deps.client_address`` reads it (X-Forwarded-For only behind
    trusted proxies): request weight and IP allow-lists are per address."""
    if rt.settings.trusted_proxies:
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.client.host if request.client else "unknown"


async def _spend(request: Request, rt: Parts, weight: int) -> None:
    """Count the request's weight against the per-address limit; past it 429 -1003 with Retry-After."""
    address = client_address(request, rt)
    allowed, used, retry_after = await rt.limiter.spend(
        rt.settings.binance_api_weight_limit, f"binance-weight:{address}", weight
    )
    setattr(request.state, WEIGHT_STATE, used)
    if not allowed:
        raise BinanceError(
            -1003,
            f"Too much request weight used; current limit is {rt.settings.binance_api_weight_limit} request "
            f"weight. Please use WebSocket Streams for live updates to avoid polling the API.",
            429,
            {"Retry-After": str(retry_after)},
        )


async def public_call(request: Request, rt: Parts, weight: int) -> Call:
    await _spend(request, rt, weight)
    query, body = await _raw(request)
    return Call(_params(query, body))


def _params(query: str, body: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in [*_parse(query), *_parse(body)]:
        if name in params:
            raise BinanceError(-1101, "Duplicate values for a parameter detected.")
        params[name] = value
    return params


async def signed_call(
    request: Request, rt: Parts, weight: int, scope: str, reader: AsyncSession | None = None
) -> Call:
    """A SIGNED endpoint: the API key (X-MBX-APIKEY) is live and its owner active, the timestamp inside the
    recvWindow, the HMAC-SHA256 signature right, and the key has ``scope`` and allows the client's address.
    The key is read in ``reader``, the read-only session the endpoint then reads its data in (one read
    transaction per call), else in a short one of its own (writes: no write transaction is open meanwhile)."""
    await _spend(request, rt, weight)
    query, body = await _raw(request)
    params = _params(query, body)
    try:
        if reader is not None:
            key = await resolve_key(reader, rt.keyring, request.headers.get("x-mbx-apikey"))
        else:
            async with rt.read_sessions() as own:
                key = await resolve_key(own, rt.keyring, request.headers.get("x-mbx-apikey"))
        check_timestamp(
            params.get("timestamp"), params.get("recvWindow"), int(rt.clock.now().timestamp() * 1000)
        )
        payload, signature = signed_payload(query, body)
        verify_signature(key.secret, payload, signature)
        key.allows(scope, client_address(request, rt))
    except KeyRefused as exc:
        raise from_refusal(exc) from None
    params.pop("signature", None)
    return Call(params, key)
