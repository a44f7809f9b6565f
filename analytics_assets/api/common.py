"""What the routers share: query patterns, error bodies, collection names, page cursors."""

from __future__ import annotations

import base64
import binascii
import functools
import json
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import TypeAdapter
from pymongo.database import Database

from analytics_assets.api.models import ErrorBody
from analytics_assets.privacy.pii import USER_PSEUDONYM_PATTERN
from analytics_assets.storage.collections import COLLECTIONS
from analytics_assets.transforms.records import MAX_ID_BYTES

DbProvider = Callable[[], Database]

MAX_PAGE_SIZE = 100
# A conversation id as ingestion keeps it (`transforms/records.py`: at most MAX_ID_BYTES
# bytes, C0 controls other than tab and line breaks removed), in characters: a narrower
# pattern left conversations the API lists that it would not fetch (`tenant/42/c-1`, `Gespräch-…`,
# a 400-character id). A character may be up to 4 bytes: a longer id is simply not found.
ID_PATTERN = rf"^[^\x00-\x08\x0b\x0c\x0e-\x1f]{{1,{MAX_ID_BYTES}}}$"
# Model names as providers write them: `openai/gpt-4o`, `meta-llama/Llama-3.1-8B-Instruct`,
# `claude 3 opus` (the id pattern refused each, and the dashboard's model filter answered 422).
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/+ -]{0,127}$"
LABEL_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
PERIOD_PATTERN = r"^\d{4}-\d{2}(-\d{2})?$"
LANG_PATTERN = r"^[a-z]{2}$"  # a translation's target language
LANGUAGE_PATTERN = r"^(?:[a-z]{2}|unknown)$"  # a conversation's detected language
# What `encode_cursor` makes: unpadded base64url of `["dt", …` or `["s", …`. Published as is,
# so a value like `0` is refused by the pattern the spec shows, not after it matched it.
# Its length follows from the longest id: base64 of `["dt","<time>","<id>"]`, the id's bytes
# as UTF-8 (each at most doubled by JSON's escapes), so every cursor the API hands out is one
# it accepts (a 400-character id made a cursor of 556 that the next page refused).
MAX_CURSOR_CHARS = -(-(64 + 2 * MAX_ID_BYTES) * 4 // 3)
CURSOR_PATTERN = rf"^WyJ(?:kdCIs|zIiw)[A-Za-z0-9_-]{{4,{MAX_CURSOR_CHARS}}}$"
CURSOR_DESCRIPTION = (
    "Opaque: the `next_cursor` of the previous page. Any other value is refused (422)."
)
ERRORS = {
    401: {"model": ErrorBody, "description": "No valid API key"},
    403: {"model": ErrorBody, "description": "The key lacks the scope"},
    422: {"model": ErrorBody, "description": "Invalid parameters"},
    429: {"model": ErrorBody, "description": "Rate limit exceeded"},
}
NOT_FOUND = {404: {"model": ErrorBody}}

IdPath = Annotated[str, Path(pattern=ID_PATTERN)]
# Users are found by pseudonym only. A source user id is refused, never mapped: mapping
# would turn any key into an oracle from raw ids to pseudonyms (sequential source ids would
# make every pseudonym re-identifiable). Whoever holds the pseudonymization key gets a
# pseudonym with `analytics-assets pseudonym USER_ID`.
PSEUDONYM_DESCRIPTION = (
    "A user pseudonym, as this API returns them (`u_` and 20 hex digits); source user ids "
    "are refused."
)
PseudonymPath = Annotated[
    str, Path(pattern=USER_PSEUDONYM_PATTERN, description=PSEUDONYM_DESCRIPTION)
]
PseudonymQuery = Annotated[
    str | None, Query(pattern=USER_PSEUDONYM_PATTERN, description=PSEUDONYM_DESCRIPTION)
]
Label = Annotated[str | None, Query(pattern=LABEL_PATTERN)]
Day = Annotated[date | None, Query()]
Grain = Literal["daily", "weekly", "monthly"]

# Looked up in the specs the migrations install, so a collection the storage layer no longer
# has fails at import instead of answering every request with nothing.
CONVERSATIONS = COLLECTIONS["conversation_analytics"].name
CATEGORIES = COLLECTIONS["conversation_categories"].name
MESSAGES = COLLECTIONS["conversation_messages"].name
TRANSLATIONS = COLLECTIONS["conversation_translations"].name
REPORTS = COLLECTIONS["analytics_reports"].name
USER_ANALYTICS = COLLECTIONS["user_analytics"].name
USER_PREDICTIONS = COLLECTIONS["user_return_predictions"].name


def json_response(body: Any, body_type: Any, headers: dict | None = None) -> Response:
    """`body` as the JSON FastAPI sends for a route whose `response_model` is `body_type`:
    the same serializer (a TypeAdapter of that type, by alias, as `response_model_by_alias`
    does by default), so a subclass's extra fields are left out as FastAPI would. Returned
    as a Response, it skips FastAPI's own pass over the body, which for a sync endpoint is
    a second trip through the thread pool (`benchmarks/bench_api.py --against`); the
    documented schema still comes from `response_model`."""
    content = _adapter(body_type).dump_json(body, by_alias=True)
    return Response(content=content, media_type="application/json", headers=headers)


@functools.cache
def _adapter(body_type: Any) -> TypeAdapter:
    return TypeAdapter(body_type)


def error_response(
    status: int, code: str, message: str, headers: dict | None = None
) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status, headers=headers)


def encode_cursor(started_at: Any, conversation_id: str) -> str:
    value = started_at.isoformat() if isinstance(started_at, datetime) else str(started_at)
    kind = "dt" if isinstance(started_at, datetime) else "s"
    raw = json.dumps([kind, value, conversation_id], separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, value, conversation_id = json.loads(raw)
        if kind not in ("dt", "s") or not isinstance(value, str):
            raise ValueError(kind)
        if not isinstance(conversation_id, str):
            raise ValueError("id")
        if kind == "s":
            return value, conversation_id
        moment = datetime.fromisoformat(value)
        # A forged time at the calendar's edge (0001-01-01 at +01:00) overflows once taken
        # to UTC, where the query encodes it: refused here, as any other malformed cursor.
        if moment.tzinfo is not None:
            moment.astimezone(UTC)
        return moment, conversation_id
    except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError) as error:
        raise RequestValidationError(
            [{"loc": ("query", "cursor"), "msg": "malformed cursor"}]
        ) from error


# A range read whole (reports, series, model comparisons, the dashboard's data) holds at
# most this many periods: ten years of daily reports, each with its histograms and per-model
# parts, was one answer of many megabytes from one request (GraphQL prices the same by its
# periods and refuses it).
MAX_RANGE_DAYS = 366
MAX_RANGE = {"daily": "366 days", "weekly": "366 weeks", "monthly": "366 months"}
# How every refused range's message begins (a bound on two parameters together, which the
# spec cannot state: the property tests recognise it by this).
RANGE_CAP = "a range is at most"


def check_range(from_: date, to: date, grain: str = "daily") -> None:
    """422 for a range of more than 366 periods of `grain` (an empty, reversed one is fine):
    three years of monthly reports are 36 reports, not 1,096 days."""
    days = (to - from_).days
    # Calendar months: counted as 28 days each, 29 years of monthly reports (348) were
    # refused as more than 366.
    months = (to.year - from_.year) * 12 + to.month - from_.month
    periods = {"weekly": days // 7, "monthly": months}.get(grain, days)
    if periods >= MAX_RANGE_DAYS:
        raise RequestValidationError(
            [{"loc": ("query", "from"), "msg": f"{RANGE_CAP} {MAX_RANGE[grain]}"}]
        )
