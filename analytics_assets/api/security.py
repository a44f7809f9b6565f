"""What every request and response of the read API goes through, whatever the endpoint:
request limits, keys refused in URLs, HEAD and OPTIONS, security and caching headers,
errors without stack traces, and access logs without secrets or raw ids."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from functools import cached_property
from urllib.parse import parse_qsl, quote

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.routing import Match, Mount

from analytics_assets.api.common import error_response

log = logging.getLogger("analytics_assets.api")

MAX_REQUEST_BYTES = 16 * 1024
# What a browser or an HTTP client sends is far below these; a 1 MB header or 5,000 of
# them is an attack on the parser and on memory.
MAX_HEADERS = 64
MAX_HEADER_BYTES = 16 * 1024

# Query parameter names that say "this is a credential" (compared without case, - or _).
KEY_PARAMETER_NAMES = frozenset({"apikey", "xapikey", "key", "token", "accesstoken", "auth"})
KEY_IN_URL_MESSAGE = (
    "API keys are accepted only in the X-API-Key header: a key in a URL is kept in access "
    "logs, proxies and browser history. Revoke this key and send the new one in the header."
)

SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
    # Every answer but /health depends on the caller's key: a shared cache must not serve
    # one key's answer to another.
    "Vary": "X-API-Key",
}
ALLOWED_METHODS = "GET, HEAD, OPTIONS"


def _looks_like_key_parameter(name: str, value: str, key_prefix: str) -> bool:
    # A bare `?aak_…` parses as a name with an empty value: names are searched too.
    return (
        re.sub(r"[-_]", "", name.lower()) in KEY_PARAMETER_NAMES
        or value.startswith(f"{key_prefix}_")
        or name.startswith(f"{key_prefix}_")
    )


def allowed_methods(app: FastAPI, scope: dict) -> str | None:
    """The methods the path answers (`Allow`), None where no route serves it. The read
    routes answer GET, HEAD and OPTIONS; /webhooks adds POST and DELETE. Each method is
    probed (an included router does not list its routes' methods)."""
    order = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
    methods = {
        method
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
        if any(
            route.matches({**scope, "method": method})[0] == Match.FULL
            # A mount (the static files) matches whatever the method; it serves GET.
            for route in app.router.routes
            if method == "GET" or not isinstance(route, Mount)
        )
    }
    if not methods:
        return None
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(method for method in order if method in methods | {"OPTIONS"})


def install(app: FastAPI, *, key_prefix: str, page_csp: dict[str, str]) -> None:
    """Adds the middleware that applies all of the above to `app`. `page_csp`: the
    Content-Security-Policy of each HTML page (path -> policy); every other answer gets
    the default one, which allows nothing."""

    async def guard(request: Request, call_next: Callable):
        refusal = _refusal(request, key_prefix)
        if refusal is not None:
            return _with_headers(refusal, request, page_csp)
        method = request.scope["method"]
        if method == "OPTIONS":
            allowed = allowed_methods(app, request.scope)
            if allowed is None:
                response = error_response(404, "not_found", "Not Found")
            else:
                response = Response(status_code=204, headers={"Allow": allowed})
            return _with_headers(response, request, page_csp)
        if method == "HEAD":
            # Answered as GET without the body: load balancers probe /health with HEAD.
            request.scope["method"] = "GET"
        try:
            response = await call_next(request)
        except Exception as error:  # the one place an error becomes a 500
            # The type and the path only: no stack trace, no request values (they may
            # hold keys). Caught here, not by an exception handler, because Starlette
            # re-raises after a handler runs and the server then logs the traceback.
            log.error("unhandled %s on %s", type(error).__name__, request.url.path)
            response = error_response(500, "internal_error", "internal error")
        if method == "HEAD":
            # The scope is the server's own: left as GET, uvicorn expected the body the
            # headers announce, logged a traceback for every HEAD and closed the connection.
            request.scope["method"] = "HEAD"
            # A streamed answer (call_next's) is drained; the 500 above is a plain one,
            # which has no body_iterator (a HEAD that failed raised here, past this handler).
            if hasattr(response, "body_iterator"):
                async for _ in response.body_iterator:
                    pass
            response = Response(status_code=response.status_code, headers=response.headers)
        return _with_headers(response, request, page_csp)

    app.middleware("http")(guard)


def _refusal(request: Request, key_prefix: str) -> Response | None:
    raw = request.headers.raw
    if len(raw) > MAX_HEADERS or sum(len(k) + len(v) for k, v in raw) > MAX_HEADER_BYTES:
        return error_response(
            431,
            "headers_too_large",
            f"requests are limited to {MAX_HEADERS} headers and {MAX_HEADER_BYTES} bytes of them",
        )
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > MAX_REQUEST_BYTES:
        return error_response(
            413, "too_large", f"requests are limited to {MAX_REQUEST_BYTES} bytes"
        )
    if "transfer-encoding" in request.headers:
        # A chunked body has no length to check before it is read (whole, by /graphql and
        # the webhook endpoint): every client this API documents sends Content-Length.
        return error_response(
            411, "length_required", "send the body with a Content-Length (no chunked bodies)"
        )
    query = parse_qsl(request.url.query, keep_blank_values=True)
    if any(_looks_like_key_parameter(name, value, key_prefix) for name, value in query) or any(
        segment.startswith(f"{key_prefix}_") for segment in request.url.path.split("/")
    ):
        return error_response(400, "key_in_url", KEY_IN_URL_MESSAGE)
    return None


def _with_headers(response: Response, request: Request, page_csp: dict[str, str]) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.url.path in page_csp:
        response.headers["Content-Security-Policy"] = page_csp[request.url.path]
    # Only what an endpoint marks cacheable (a closed report, privately) is cached.
    response.headers.setdefault("Cache-Control", "no-store")
    # Set by the scope check (auth) on requests that took a token from the key's bucket.
    decision = getattr(request.state, "rate", None)
    if decision is not None:
        response.headers["RateLimit-Limit"] = str(decision.limit)
        response.headers["RateLimit-Remaining"] = str(decision.remaining)
        response.headers["RateLimit-Reset"] = str(decision.reset_s)
    return response


class AccessLogRedactor(logging.Filter):
    """uvicorn's access log line without query values or path parameters:
    `GET /conversations/{conversation_id}?lang=…`. Paths that match no route keep only
    their first segment. Install on the `uvicorn.access` logger (`analytics-assets api`
    does)."""

    def __init__(self, app: FastAPI):
        super().__init__()
        self.app = app

    @cached_property
    def known(self) -> tuple[set[str], set[str]]:
        """The first path segments and the query parameter names the spec documents: only
        those are logged as written (a request may put a key anywhere else)."""
        spec = self.app.openapi()["paths"]
        segments = {path.lstrip("/").partition("/")[0] for path in spec}
        names = {
            parameter["name"]
            for operations in spec.values()
            for operation in operations.values()
            if isinstance(operation, dict)
            for parameter in operation.get("parameters", [])
            if parameter.get("in") == "query"
        }
        return {s for s in segments if "{" not in s}, names

    def _shown(self, name: str) -> str:
        # A key parameter's name is shown (`api_key=…`): it says what the caller did wrong.
        documented = name in self.known[1]
        key_like = re.sub(r"[-_]", "", name.lower()) in KEY_PARAMETER_NAMES
        return quote(name, safe="") if documented or key_like else "…"

    @cached_property
    def templates(self) -> list[tuple[re.Pattern, str]]:
        """The documented paths (the OpenAPI spec's, e.g. `/users/{user_id}/analytics`),
        fixed paths first, each with the pattern of the paths it serves."""
        paths = sorted(self.app.openapi()["paths"], key=lambda p: ("{" in p, p))
        return [
            (re.compile("^" + re.sub(r"\\{\w+\\}", "[^/]+", re.escape(p)) + "$"), p) for p in paths
        ]

    def redact(self, path_and_query: str) -> str:
        path, _, query = path_and_query.partition("?")
        template = next((t for pattern, t in self.templates if pattern.match(path)), None)
        segments = self.known[0]
        if template is None:
            first, _, rest = path.lstrip("/").partition("/")
            first = first if first in segments else "…"
            template = f"/{first}/…" if rest else f"/{first}"
        if query:
            names = [name for name, _ in parse_qsl(query, keep_blank_values=True)]
            template += "?" + "&".join(f"{self._shown(name)}=…" for name in names)
        return template

    def filter(self, record: logging.LogRecord) -> bool:
        # uvicorn: '%s - "%s %s HTTP/%s" %d' % (client, method, path?query, version, status)
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], self.redact(args[2]), *args[3:])
        return True


def redact_access_logs(app: FastAPI, logger_name: str = "uvicorn.access") -> None:
    logger = logging.getLogger(logger_name)
    for existing in [f for f in logger.filters if isinstance(f, AccessLogRedactor)]:
        logger.removeFilter(existing)
    logger.addFilter(AccessLogRedactor(app))
