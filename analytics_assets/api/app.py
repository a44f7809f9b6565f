"""The read API: conversations, reports, analytics time series, model comparison and user
analytics from the MongoDB collections the assets write.

Safety: every request but /health and /ready needs an API key (`X-API-Key`) with the
endpoint's scope (401 without a valid key, 403 without the scope); every query value is typed
and pattern-checked, unknown query parameters are refused (no `user_id[$ne]=` tricks), and no
value is ever parsed into a query document. Errors are `{"error": {"code", "message"}}`,
never a stack trace.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, Response, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import APIKeyHeader
from pymongo.database import Database

from analytics_assets.analytics.reports import model_comparison
from analytics_assets.api import keys
from analytics_assets.api.models import (
    ConversationDetail,
    ConversationPage,
    ConversationSummary,
    ErrorBody,
    Health,
    ModelComparison,
    Report,
    Series,
    UserAnalytics,
)
from analytics_assets.api.ratelimit import TokenBuckets
from analytics_assets.privacy.pii import USER_PSEUDONYM_PATTERN

log = logging.getLogger("analytics_assets.api")

MAX_PAGE_SIZE = 100
MAX_REQUEST_BYTES = 16 * 1024
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$"
LABEL_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
PERIOD_PATTERN = r"^\d{4}-\d{2}(-\d{2})?$"
DIMENSIONS = {"topics": "topics", "intents": "intents", "sentiment": "sentiments",
              "languages": "languages"}  # fmt: skip
ERRORS = {
    401: {"model": ErrorBody, "description": "No valid API key"},
    403: {"model": ErrorBody, "description": "The key lacks the scope"},
    422: {"model": ErrorBody, "description": "Invalid parameters"},
    429: {"model": ErrorBody, "description": "Rate limit exceeded"},
}

API_KEY = APIKeyHeader(name="X-API-Key", auto_error=False)
IdPath = Annotated[str, Path(pattern=ID_PATTERN)]
Label = Annotated[str | None, Query(pattern=LABEL_PATTERN)]
Day = Annotated[date | None, Query()]


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


# A verified key is trusted this long without asking MongoDB again: one query less per
# request, at the price of a revocation taking up to this long to bite.
KEY_CACHE_S = 5.0


def create_app(
    db_provider: Callable[[], Database],
    *,
    buckets: TokenBuckets | None = None,
    clock: Callable[[], float] = time.monotonic,
    user_pseudonym: Callable[[str], str] | None = None,
):
    """`db_provider` gives the MongoDB database (the deployment's MongoResource.db);
    `user_pseudonym` turns a caller's user id into the pseudonym the collections hold (the
    deployment's PrivacyResource.pseudonym). A pseudonym is accepted as it is."""

    def stored_user_id(user_id: str) -> str:
        if user_pseudonym is None or re.match(USER_PSEUDONYM_PATTERN, user_id):
            return user_id
        return user_pseudonym(user_id)

    app = FastAPI(
        title="analytics-assets read API",
        version="1",
        description="Conversations, reports and analytics written by the analytics-assets "
        "Dagster assets. Authenticate with an `X-API-Key` header.",
    )
    buckets = buckets or TokenBuckets(clock=clock)
    verified: dict[bytes, tuple[float, keys.ApiKey | None]] = {}

    def verify(api_key: str | None) -> keys.ApiKey | None:
        if not api_key:
            return None
        # Cached under a digest: the process never keeps the keys themselves around.
        digest = hashlib.sha256(api_key.encode()).digest()
        cached = verified.get(digest)
        if cached and clock() - cached[0] < KEY_CACHE_S:
            return cached[1]
        key = keys.verify(db_provider(), api_key)
        if len(verified) > 10_000:  # bounded: unknown keys are cached too
            verified.clear()
        verified[digest] = (clock(), key)
        return key

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException):
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found", 413: "too_large",
                429: "rate_limited"}.get(error.status_code, "error")  # fmt: skip
        return _error(error.status_code, code, str(error.detail), getattr(error, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: RequestValidationError):
        problems = [
            f"{'.'.join(str(p) for p in item['loc'][1:])}: {item['msg']}" for item in error.errors()
        ]
        return _error(422, "invalid_request", "; ".join(problems) or "invalid request")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, error: Exception):
        # The type and the path only: no stack trace, no request values (they may hold keys).
        log.error("unhandled %s on %s", type(error).__name__, request.url.path)
        return _error(500, "internal_error", "internal error")

    @app.middleware("http")
    async def limits(request: Request, call_next):
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > MAX_REQUEST_BYTES:
            return _error(413, "too_large", f"requests are limited to {MAX_REQUEST_BYTES} bytes")
        response = await call_next(request)
        decision = getattr(request.state, "rate", None)
        if decision is not None:
            response.headers["RateLimit-Limit"] = str(decision.limit)
            response.headers["RateLimit-Remaining"] = str(decision.remaining)
            response.headers["RateLimit-Reset"] = str(decision.reset_s)
        return response

    def require(scope: str, allowed_params: tuple[str, ...] = ()):
        def check(request: Request, api_key: Annotated[str | None, Security(API_KEY)]) -> None:
            unknown = set(request.query_params) - set(allowed_params)
            if unknown:
                raise RequestValidationError(
                    [{"loc": ("query", sorted(unknown)[0]), "msg": "unknown parameter"}]
                )
            key = verify(api_key)
            if key is None:
                raise HTTPException(401, "a valid X-API-Key header is required")
            if scope not in key.scopes:
                raise HTTPException(403, f"this key lacks the {scope} scope")
            decision = buckets.take(key.key_id, key.rate_per_minute)
            request.state.rate = decision
            if not decision.allowed:
                raise HTTPException(
                    429,
                    f"rate limit of {decision.limit} requests a minute exceeded",
                    headers={
                        "Retry-After": str(decision.retry_after_s),
                        "RateLimit-Limit": str(decision.limit),
                        "RateLimit-Remaining": "0",
                        "RateLimit-Reset": str(decision.reset_s),
                    },
                )

        return Depends(check)

    @app.get("/health", response_model=Health, tags=["service"])
    def health() -> Health:
        return Health(status="ok")

    @app.get("/ready", response_model=Health, responses={503: {"model": ErrorBody}},
             tags=["service"])  # fmt: skip
    def ready():
        try:
            db_provider().command("ping")
        except Exception:
            return _error(503, "not_ready", "MongoDB is not reachable")
        return Health(status="ready")

    # -- conversations -----------------------------------------------------------------------

    @app.get(
        "/conversations/{conversation_id}",
        response_model=ConversationDetail,
        responses={**ERRORS, 404: {"model": ErrorBody}},
        dependencies=[require("conversations:read", ("lang",))],
        tags=["conversations"],
    )
    def conversation(
        conversation_id: IdPath,
        lang: Annotated[str | None, Query(pattern=r"^[a-z]{2}$")] = None,
    ) -> ConversationDetail:
        db = db_provider()
        summary = db["conversation_analytics"].find_one({"_id": conversation_id})
        if summary is None:
            raise HTTPException(404, f"no conversation {conversation_id}")
        categories = db["conversation_categories"].find_one({"_id": conversation_id}) or {}
        messages = list(
            db["conversation_messages"]
            .find({"conversation_id": conversation_id})
            .sort([("created_at", 1), ("message_id", 1)])
        )
        translated: dict[str, dict] = {}
        if lang:
            translated = {
                doc["message_id"]: doc
                for doc in db["conversation_translations"].find(
                    {"conversation_id": conversation_id, "target_language": lang}
                )
                if doc.get("is_current")
            }
        return ConversationDetail.from_documents(summary, categories, messages, translated, lang)

    @app.get(
        "/conversations",
        response_model=ConversationPage,
        responses=ERRORS,
        dependencies=[
            require(
                "conversations:read",
                (
                    "from",
                    "to",
                    "user_id",
                    "model",
                    "channel",
                    "topic",
                    "intent",
                    "sentiment",
                    "language",
                    "limit",
                    "cursor",
                ),
            )
        ],
        tags=["conversations"],
    )
    def conversations(
        from_: Annotated[date | None, Query(alias="from")] = None,
        to: Day = None,
        user_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        model: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        channel: Label = None,
        topic: Label = None,
        intent: Label = None,
        sentiment: Label = None,
        language: Annotated[str | None, Query(pattern=r"^(?:[a-z]{2}|unknown)$")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
        cursor: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9_-]{1,512}$")] = None,
    ) -> ConversationPage:
        query: dict[str, Any] = {}
        if from_ or to:
            query["day"] = {
                **({"$gte": from_.isoformat()} if from_ else {}),
                **({"$lte": to.isoformat()} if to else {}),
            }
        for name, value in (("user_id", user_id), ("model", model), ("channel", channel),
                            ("topic", topic), ("intent", intent), ("sentiment", sentiment),
                            ("language", language)):  # fmt: skip
            if value is not None:
                # A plain string: pattern-checked above, never a document.
                query[name] = stored_user_id(value) if name == "user_id" else value
        if cursor:
            started, conversation_id = _decode_cursor(cursor)
            query["$or"] = [
                {"started_at": {"$gt": started}},
                {"started_at": started, "conversation_id": {"$gt": conversation_id}},
            ]
        documents = list(
            db_provider()["conversation_analytics"]
            .find(query)
            .sort([("started_at", 1), ("conversation_id", 1)])
            .limit(limit + 1)
        )
        page = documents[:limit]
        next_cursor = (
            _encode_cursor(page[-1]["started_at"], page[-1]["conversation_id"])
            if len(documents) > limit
            else None
        )
        return ConversationPage(
            items=[ConversationSummary.from_document(doc) for doc in page], next_cursor=next_cursor
        )

    # -- reports and analytics ---------------------------------------------------------------

    @app.get(
        "/analytics/reports/{kind}/{period}",
        response_model=Report,
        responses={**ERRORS, 404: {"model": ErrorBody}},
        dependencies=[require("analytics:read")],
        tags=["analytics"],
    )
    def report(
        request: Request,
        response: Response,
        kind: Literal["daily", "weekly", "monthly"],
        period: Annotated[str, Path(pattern=PERIOD_PATTERN)],
    ):
        document = db_provider()["analytics_reports"].find_one({"_id": f"{kind}:{period}"})
        if document is None:
            raise HTTPException(404, f"no {kind} report for {period}")
        body = Report.from_document(document)
        etag = '"' + hashlib.sha256(body.model_dump_json().encode()).hexdigest()[:32] + '"'
        # A closed period's report changes only when it is rebuilt: cache it, revalidate.
        closed = _period_end(kind, period) < datetime.now(UTC).date()
        headers = {
            "ETag": etag,
            "Cache-Control": "public, max-age=3600, must-revalidate" if closed else "no-cache",
        }
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        response.headers.update(headers)
        return body

    @app.get(
        "/analytics/reports/{kind}",
        response_model=list[Report],
        responses=ERRORS,
        dependencies=[require("analytics:read", ("from", "to"))],
        tags=["analytics"],
    )
    def reports(
        kind: Literal["daily", "weekly", "monthly"],
        from_: Annotated[date, Query(alias="from")],
        to: Annotated[date, Query()],
    ) -> list[Report]:
        documents = (
            db_provider()["analytics_reports"]
            .find({"kind": kind, "day": {"$gte": from_.isoformat(), "$lte": to.isoformat()}})
            .sort("period", 1)
        )
        return [Report.from_document(doc) for doc in documents]

    @app.get(
        "/analytics/models",
        response_model=ModelComparison,
        responses=ERRORS,
        dependencies=[require("analytics:read", ("from", "to"))],
        tags=["analytics"],
    )
    def models(
        from_: Annotated[date, Query(alias="from")], to: Annotated[date, Query()]
    ) -> ModelComparison:
        totals: dict[str, dict] = {}
        for document in db_provider()["analytics_reports"].find(
            {"kind": "daily", "day": {"$gte": from_.isoformat(), "$lte": to.isoformat()}},
            projection={"per_model": 1},
        ):
            for parts in document.get("per_model") or []:
                merged = totals.setdefault(parts["model"], {"model": parts["model"]})
                for name, value in parts.items():
                    if name != "model":
                        merged[name] = merged.get(name, 0) + (value or 0)
        per_model = sorted(totals.values(), key=lambda parts: parts["model"])
        return ModelComparison.from_parts(from_, to, per_model, model_comparison(per_model))

    @app.get(
        "/analytics/{dimension}",
        response_model=Series,
        responses=ERRORS,
        dependencies=[require("analytics:read", ("from", "to", "grain"))],
        tags=["analytics"],
    )
    def series(
        dimension: Literal["topics", "intents", "sentiment", "languages"],
        from_: Annotated[date, Query(alias="from")],
        to: Annotated[date, Query()],
        grain: Literal["daily", "weekly", "monthly"] = "daily",
    ) -> Series:
        field = DIMENSIONS[dimension]
        documents = (
            db_provider()["analytics_reports"]
            .find(
                {"kind": grain, "day": {"$gte": from_.isoformat(), "$lte": to.isoformat()}},
                projection={"period": 1, field: 1},
            )
            .sort("period", 1)
        )
        return Series(
            dimension=dimension,
            grain=grain,
            points=[
                {
                    "period": doc["period"],
                    "counts": {item["value"]: int(item["count"]) for item in doc.get(field) or []},
                }
                for doc in documents
            ],
        )

    # -- users -------------------------------------------------------------------------------

    @app.get(
        "/users/{user_id}/analytics",
        response_model=UserAnalytics,
        responses={**ERRORS, 404: {"model": ErrorBody}},
        dependencies=[require("users:read")],
        tags=["users"],
    )
    def user(user_id: IdPath) -> UserAnalytics:
        pseudonym = stored_user_id(user_id)
        documents = list(
            db_provider()["user_analytics"].find({"user_id": pseudonym}).sort("period", 1)
        )
        if not documents:
            raise HTTPException(404, "no analytics for this user")
        # The caller's id is not echoed: a response carries only the pseudonym.
        return UserAnalytics.from_documents(pseudonym, documents)

    return app


def _period_end(kind: str, period: str) -> date:
    if kind == "daily":
        return date.fromisoformat(period)
    if kind == "weekly":
        return date.fromisoformat(period) + timedelta(days=6)
    year, month = (int(part) for part in period[:7].split("-"))
    return (date(year + month // 12, month % 12 + 1, 1)) - timedelta(days=1)


def _encode_cursor(started_at: Any, conversation_id: str) -> str:
    value = started_at.isoformat() if isinstance(started_at, datetime) else str(started_at)
    kind = "dt" if isinstance(started_at, datetime) else "s"
    raw = json.dumps([kind, value, conversation_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[Any, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, value, conversation_id = json.loads(raw)
        if kind not in ("dt", "s") or not isinstance(value, str):
            raise ValueError(kind)
        if not isinstance(conversation_id, str):
            raise ValueError("id")
        return (datetime.fromisoformat(value) if kind == "dt" else value), conversation_id
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError) as error:
        raise RequestValidationError(
            [{"loc": ("query", "cursor"), "msg": "malformed cursor"}]
        ) from error
