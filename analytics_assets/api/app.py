"""The read API: conversations, reports, analytics time series, model comparison and user
analytics from the MongoDB collections the assets write.

Safety: every request but /health, /ready, /docs and the /dashboard page (static, its data
comes from /dashboard/data) needs an API key (`X-API-Key`) with the endpoint's scope (401
without a valid key, 403 without the scope; failed attempts are limited per client
address); every query value is typed and pattern-checked, unknown query
parameters are refused (no `user_id[$ne]=` tricks), and no value is ever parsed into a query
document. Users are filtered by pseudonym only. Errors are `{"error": {"code", "message"}}`,
never a stack trace, in the response or in the log.

This module only assembles the app; the endpoints live in `routers/`, one module a resource,
the key and scope checks in `auth`, and what every request goes through in `security`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException

from analytics_assets.api import graphql_api, keys, security
from analytics_assets.api.auth import (
    KEY_CACHE_S,
    FailedAuthLimiter,
    KeyGate,
    KeyVerifier,
    scope_dependency,
)
from analytics_assets.api.common import DbProvider, error_response
from analytics_assets.api.ratelimit import TokenBuckets
from analytics_assets.api.routers import (
    analytics,
    conversations,
    dashboard,
    health,
    reports,
    users,
    webhooks,
)
from analytics_assets.api.security import MAX_REQUEST_BYTES

__all__ = ["KEY_CACHE_S", "MAX_REQUEST_BYTES", "create_app"]

TITLE = "analytics-assets read API"
DOCS_ASSETS = "/docs/assets"


def create_app(
    db_provider: DbProvider,
    *,
    buckets: TokenBuckets | None = None,
    clock: Callable[[], float] = time.monotonic,
    ready: Callable[[], bool] | None = None,
) -> FastAPI:
    """`db_provider` gives the MongoDB database (the deployment's MongoResource.db);
    `ready` says, without side effects, whether that database answers (default: a ping
    through `db_provider`)."""
    app = FastAPI(
        title=TITLE,
        version="1",
        description="Conversations, reports and analytics written by the analytics-assets "
        "Dagster assets. Authenticate with an `X-API-Key` header.",
        docs_url=None,
        redoc_url=None,
    )
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    page_csp = {"/docs": _docs_page(app), "/dashboard": dashboard.install_page(app)}
    security.install(app, key_prefix=keys.PREFIX, page_csp=page_csp)

    buckets = buckets or TokenBuckets(clock=clock)
    gate = KeyGate(
        KeyVerifier(db_provider, clock), buckets, FailedAuthLimiter(TokenBuckets(clock=clock))
    )
    require = scope_dependency(gate)
    # In this order: a router's fixed paths must be matched before another's path parameters.
    app.include_router(health.build_router(db_provider, ready))
    app.include_router(conversations.build_router(db_provider, require))
    app.include_router(reports.build_router(db_provider, require))
    app.include_router(analytics.build_router(db_provider, require))
    app.include_router(users.build_router(db_provider, require))
    app.include_router(dashboard.build_router(db_provider, require))
    app.include_router(webhooks.build_router(db_provider, require))
    app.include_router(graphql_api.build_router(db_provider, gate))
    return app


def _docs_page(app: FastAPI) -> str:
    """Serves /docs from the Swagger UI files the `swagger-ui-bundle` package ships (no CDN:
    the page works offline) and returns the page's Content-Security-Policy, which allows
    its one inline script by hash."""
    from swagger_ui_bundle import swagger_ui_path

    page = get_swagger_ui_html(
        openapi_url=app.openapi_url,
        title=f"{TITLE} - docs",
        swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
        swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
    )
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")
    app.add_api_route("/docs", lambda: page, include_in_schema=False,
                      response_class=HTMLResponse)  # fmt: skip
    inline = re.findall(r"<script>(.*?)</script>", page.body.decode(), flags=re.DOTALL)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in inline
    )
    return (
        f"default-src 'none'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "form-action 'none'"
    )


async def http_error(request: Request, error: HTTPException):
    # Starlette's own 404 and 405 too: every error has the documented body.
    code = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
            405: "method_not_allowed", 413: "too_large", 429: "rate_limited"
            }.get(error.status_code, "error")  # fmt: skip
    headers = dict(getattr(error, "headers", None) or {})
    if error.status_code == 405:
        headers["Allow"] = security.allowed_methods(request.app, request.scope) or (
            security.ALLOWED_METHODS
        )
    return error_response(error.status_code, code, str(error.detail), headers or None)


async def invalid_request(request: Request, error: RequestValidationError):
    problems = [
        f"{'.'.join(str(p) for p in item['loc'][1:])}: {item['msg']}" for item in error.errors()
    ]
    return error_response(422, "invalid_request", "; ".join(problems) or "invalid request")
