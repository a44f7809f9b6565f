"""The read API: conversations, reports, analytics time series, model comparison and user
analytics from the MongoDB collections the assets write.

Safety: every request but /health and /ready needs an API key (`X-API-Key`) with the
endpoint's scope (401 without a valid key, 403 without the scope); every query value is typed
and pattern-checked, unknown query parameters are refused (no `user_id[$ne]=` tricks), and no
value is ever parsed into a query document. Errors are `{"error": {"code", "message"}}`,
never a stack trace.

This module only assembles the app; the endpoints live in `routers/`, one module a resource,
and the key and scope checks in `auth`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError

from analytics_assets.api.auth import KEY_CACHE_S, KeyVerifier, scope_dependency
from analytics_assets.api.common import DbProvider, error_response, user_id_mapper
from analytics_assets.api.ratelimit import TokenBuckets
from analytics_assets.api.routers import analytics, conversations, health, reports, users

__all__ = ["KEY_CACHE_S", "MAX_REQUEST_BYTES", "create_app"]

log = logging.getLogger("analytics_assets.api")

MAX_REQUEST_BYTES = 16 * 1024


def create_app(
    db_provider: DbProvider,
    *,
    buckets: TokenBuckets | None = None,
    clock: Callable[[], float] = time.monotonic,
    user_pseudonym: Callable[[str], str] | None = None,
) -> FastAPI:
    """`db_provider` gives the MongoDB database (the deployment's MongoResource.db);
    `user_pseudonym` turns a caller's user id into the pseudonym the collections hold (the
    deployment's PrivacyResource.pseudonym). A pseudonym is accepted as it is."""
    app = FastAPI(
        title="analytics-assets read API",
        version="1",
        description="Conversations, reports and analytics written by the analytics-assets "
        "Dagster assets. Authenticate with an `X-API-Key` header.",
    )
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(Exception, unexpected_error)
    app.middleware("http")(limits)

    require = scope_dependency(
        KeyVerifier(db_provider, clock), buckets or TokenBuckets(clock=clock)
    )
    stored_user_id = user_id_mapper(user_pseudonym)
    # In this order: a router's fixed paths must be matched before another's path parameters.
    app.include_router(health.build_router(db_provider))
    app.include_router(conversations.build_router(db_provider, require, stored_user_id))
    app.include_router(reports.build_router(db_provider, require))
    app.include_router(analytics.build_router(db_provider, require))
    app.include_router(users.build_router(db_provider, require, stored_user_id))
    return app


async def http_error(request: Request, error: HTTPException):
    code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 413: "too_large",
            429: "rate_limited"}.get(error.status_code, "error")  # fmt: skip
    return error_response(
        error.status_code, code, str(error.detail), getattr(error, "headers", None)
    )


async def invalid_request(request: Request, error: RequestValidationError):
    problems = [
        f"{'.'.join(str(p) for p in item['loc'][1:])}: {item['msg']}" for item in error.errors()
    ]
    return error_response(422, "invalid_request", "; ".join(problems) or "invalid request")


async def unexpected_error(request: Request, error: Exception):
    # The type and the path only: no stack trace, no request values (they may hold keys).
    log.error("unhandled %s on %s", type(error).__name__, request.url.path)
    return error_response(500, "internal_error", "internal error")


async def limits(request: Request, call_next):
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_REQUEST_BYTES:
        return error_response(
            413, "too_large", f"requests are limited to {MAX_REQUEST_BYTES} bytes"
        )
    response = await call_next(request)
    # Set by the scope check (auth) on requests that took a token from the key's bucket.
    decision = getattr(request.state, "rate", None)
    if decision is not None:
        response.headers["RateLimit-Limit"] = str(decision.limit)
        response.headers["RateLimit-Remaining"] = str(decision.remaining)
        response.headers["RateLimit-Reset"] = str(decision.reset_s)
    return response
