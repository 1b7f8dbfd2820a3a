"""One place that renders every error as RFC 9457 problem+json; nothing else builds error bodies."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

import orjson
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import TimeoutError as SATimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.errors import DomainError

log = structlog.get_logger(__name__)

PROBLEM_JSON = "application/problem+json"
TYPE_BASE = "https://tradebridge.dev/problems/"

_TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    422: "Invalid input",
    429: "Too many requests",
    500: "Internal server error",
    503: "Service unavailable",
}


class ProblemFieldError(BaseModel):
    """One invalid input: which field, and why (validation errors add where and the error's type)."""

    model_config = ConfigDict(extra="allow")

    field: str | None = None
    message: str | None = None
    location: str | None = None
    type: str | None = None


class Problem(BaseModel):
    """RFC 9457 problem details: the body of every error answer, served as application/problem+json."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(description="A URI naming the kind of problem.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(ge=400, le=599, description="The HTTP status code.")
    detail: str = Field(description="What went wrong with this request.")
    instance: str | None = Field(default=None, description="The request's path.")
    errors: list[ProblemFieldError] | None = Field(default=None, description="The invalid fields, if any.")


_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}
_RETRY_AFTER = {
    "description": "Seconds to wait before retrying.",
    "schema": {"type": "integer", "minimum": 1},
}
# Headers that always come with a status (Throttled and Unauthorized set them).
_HEADERS: dict[int, dict[str, Any]] = {
    401: {
        "WWW-Authenticate": {"description": "The scheme to authenticate with.", "schema": {"type": "string"}}
    },
    429: {"Retry-After": {**_RETRY_AFTER, "required": True}},
    503: {"Retry-After": _RETRY_AFTER},
}
_WHEN = {
    400: "The body is not valid JSON.",
    401: "No, an invalid or an expired token (or credentials).",
    403: "Not allowed for this user's role.",
    404: "Not there, or not this user's.",
    409: "Conflicts with the current state.",
    413: "The body is larger than the gateway accepts.",
    422: "`errors` names the invalid fields.",
    429: "Throttled; retry after `Retry-After` seconds.",
    503: "Busy or a dependency is unreachable; retry shortly.",
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The ``responses=`` of a route (or router) that can answer ``statuses`` with a problem: so the OpenAPI
    document declares them, as application/problem+json, instead of FastAPI's application/json 422 only."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        response: dict[str, Any] = {
            "description": f"{_TITLES[status]}: {_WHEN[status]}" if status in _WHEN else _TITLES[status],
            "content": {PROBLEM_JSON: {"schema": _PROBLEM_REF}},
        }
        if status in _HEADERS:
            response["headers"] = _HEADERS[status]
        out[status] = response
    return out


# What most routes can answer besides their own statuses: a bad query or body (422), a busy database (503).
COMMON = (422, 503)
# Routes with a JSON body also reject malformed JSON (400) and oversized bodies (413).
WITH_BODY = (400, 413, 422, 503)
# Routes behind a bearer token.
AUTHENTICATED = (401, 422, 503)


def install_openapi(app: FastAPI, *, symbols: Iterable[str]) -> None:
    """Complete the app's OpenAPI document where FastAPI cannot from the routes alone: the Problem schema that
    ``problem_responses`` refer to, and the deployment's markets as the values a ``symbol`` may take (in a
    query, a path or a request body), so a client (or a fuzzer) knows which symbols exist. Built on the
    first request for the document, like FastAPI's own."""
    build = app.openapi
    markets = sorted(symbols)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = build()
        _add_problem_schemas(doc)
        _enumerate_symbols(doc, markets)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]


def _add_problem_schemas(doc: dict[str, Any]) -> None:
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    generated = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas.update(generated.pop("$defs", {}))
    schemas["Problem"] = generated
    # The 422 FastAPI adds by itself to a route with parameters (when the route declares none) is answered by
    # the problem handler too: say so instead of FastAPI's application/json HTTPValidationError.
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            responses = operation.get("responses", {}) if isinstance(operation, dict) else {}
            if "HTTPValidationError" in orjson.dumps(responses.get("422", {})).decode():
                responses["422"] = problem_responses(422)[422]
    for name in ("HTTPValidationError", "ValidationError"):  # the second is referenced by the first only
        if f'"#/components/schemas/{name}"' not in orjson.dumps(doc).decode():
            schemas.pop(name, None)


def _enumerate_symbols(doc: dict[str, Any], markets: list[str]) -> None:
    """``enum`` on every input named ``symbol``: parameters, and the properties of request body schemas."""
    if not markets:
        return
    schemas = doc.get("components", {}).get("schemas", {})
    bodies: set[str] = set()
    for item in doc.get("paths", {}).values():
        for operation in item.values():
            if not isinstance(operation, dict):
                continue
            for param in operation.get("parameters", []):
                if param.get("name") == "symbol":
                    _restrict(param.get("schema", {}), markets)
            for media in operation.get("requestBody", {}).get("content", {}).values():
                ref = media.get("schema", {}).get("$ref", "")
                if ref.startswith("#/components/schemas/"):
                    bodies.add(ref.rsplit("/", 1)[1])
    for name in bodies:
        prop = schemas.get(name, {}).get("properties", {}).get("symbol")
        if prop is not None:
            _restrict(prop, markets)


def _restrict(schema: dict[str, Any], markets: list[str]) -> None:
    note = "One of this deployment's markets (`BTC/USDT` and lower case are accepted too)."
    if "anyOf" in schema:  # optional: string or null
        for branch in schema["anyOf"]:
            if branch.get("type") == "string":
                branch["enum"] = markets
    else:
        schema["enum"] = markets
    schema.setdefault("description", note)


def problem(
    status: int,
    detail: str,
    *,
    slug: str | None = None,
    title: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_BASE + (slug or _TITLES.get(status, "error").lower().replace(" ", "-")),
        "title": title or _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_JSON)


_LOCATIONS = {"body", "query", "path", "header", "cookie"}


def _field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """One entry per error: ``field`` is the path inside ``location`` (none when the error is about the
    whole body, which is not a field called "body": clients and fuzzers read ``field`` as a property name)."""
    out = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ())]
        location = loc[0] if loc and loc[0] in _LOCATIONS else "body"
        path = loc[1:] if loc and loc[0] in _LOCATIONS else loc
        entry: dict[str, Any] = {"location": location}
        if path:
            entry["field"] = ".".join(path)
        missing_body = not path and err.get("type") == "missing"
        entry["message"] = (
            "A JSON request body is required." if missing_body else str(err.get("msg", "invalid"))
        )
        entry["type"] = err.get("type", "value_error")
        out.append(entry)
    return out


def _allowed_methods(request: Request) -> str | None:
    """The methods the OpenAPI document gives the path: Starlette's 405 names only the first route matching
    the path, where a path may have several (PUT and DELETE of /api/keys/binance-testnet are two routes), and
    a literal path (/api/orders/quote) also fits a template (/api/orders/{order_id}); the most specific
    documented template wins, as it does for a client reading the document."""
    paths = request.app.openapi().get("paths", {})
    path = request.url.path
    best: tuple[int, list[str]] | None = None
    for template, item in paths.items():
        regex = "^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$"
        if re.match(regex, path):
            literal = sum(1 for part in template.split("/") if part and not part.startswith("{"))
            if best is None or literal > best[0]:
                best = (literal, [m.upper() for m in item if m.upper() in _METHODS])
    if best is None:
        return None
    return ", ".join(m for m in _METHODS if m in best[1]) or None


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return problem(
            exc.status,
            exc.detail,
            slug=exc.slug,
            title=exc.title,
            errors=exc.errors,
            headers=exc.headers,
            instance=request.url.path,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = _field_errors(exc)
        if any(e["type"] == "json_invalid" for e in errors):
            return problem(
                400, "The request body is not valid JSON.", slug="malformed-json", instance=request.url.path
            )
        return problem(
            422,
            "The request has invalid fields; see `errors`.",
            slug="validation-error",
            errors=errors,
            instance=request.url.path,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else _TITLES.get(exc.status_code, "Error")
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"No route for {request.method} {request.url.path}"
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405 and (allowed := _allowed_methods(request)):
            headers["Allow"] = allowed
        return problem(exc.status_code, detail, headers=headers or None, instance=request.url.path)

    @app.exception_handler(SATimeoutError)
    async def _pool_exhausted(request: Request, exc: SATimeoutError) -> JSONResponse:
        log.warning("database pool exhausted", path=request.url.path)
        return problem(
            503,
            "The service is busy; retry shortly.",
            headers={"Retry-After": "1"},
            instance=request.url.path,
        )

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path, method=request.method)
        return problem(500, "An internal error occurred; it has been logged.", instance=request.url.path)
