"""/conversations: one conversation with its messages (optionally translated), and a filtered
list paged by start time."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from analytics_assets.api.auth import RequireScope
from analytics_assets.api.common import (
    CATEGORIES,
    CONVERSATIONS,
    ERRORS,
    ID_PATTERN,
    MAX_PAGE_SIZE,
    MESSAGES,
    NOT_FOUND,
    TRANSLATIONS,
    Day,
    DbProvider,
    IdPath,
    Label,
    PseudonymQuery,
    decode_cursor,
    encode_cursor,
)
from analytics_assets.api.models import ConversationDetail, ConversationPage, ConversationSummary
from analytics_assets.storage.day_index import page_by_day_index

# A date range of at most this many days, and no other filter, is paged through the per-day
# key lists (storage/day_index.py); anything else is one query.
DAY_INDEX_MAX_DAYS = 31

# What `encode_cursor` makes: unpadded base64url of `["dt", …` or `["s", …`. Published as is,
# so a value like `0` is refused by the pattern the spec shows, not after it matched it.
CURSOR_PATTERN = r"^WyJ(?:kdCIs|zIiw)[A-Za-z0-9_-]{4,500}$"
CURSOR_DESCRIPTION = (
    "Opaque: the `next_cursor` of the previous page. Any other value is refused (422)."
)
LIST_PARAMS = ("from", "to", "user_id", "model", "channel", "topic", "intent", "sentiment",
               "language", "limit", "cursor")  # fmt: skip


def build_router(db_provider: DbProvider, require: RequireScope) -> APIRouter:
    router = APIRouter(tags=["conversations"], responses=ERRORS)

    @router.get(
        "/conversations/{conversation_id}",
        response_model=ConversationDetail,
        responses=NOT_FOUND,
        dependencies=[require("conversations:read", ("lang",))],
    )
    def conversation(
        conversation_id: IdPath,
        lang: Annotated[str | None, Query(pattern=r"^[a-z]{2}$")] = None,
    ) -> ConversationDetail:
        db = db_provider()
        summary = db[CONVERSATIONS].find_one({"_id": conversation_id})
        if summary is None:
            raise HTTPException(404, f"no conversation {conversation_id}")
        categories = db[CATEGORIES].find_one({"_id": conversation_id}) or {}
        messages = list(
            db[MESSAGES]
            .find({"conversation_id": conversation_id})
            .sort([("created_at", 1), ("message_id", 1)])
        )
        translated: dict[str, dict] = {}
        if lang:
            translated = {
                doc["message_id"]: doc
                for doc in db[TRANSLATIONS].find(
                    {"conversation_id": conversation_id, "target_language": lang}
                )
                if doc.get("is_current")
            }
        return ConversationDetail.from_documents(summary, categories, messages, translated, lang)

    @router.get(
        "/conversations",
        response_model=ConversationPage,
        dependencies=[require("conversations:read", LIST_PARAMS)],
    )
    def conversations(
        from_: Annotated[date | None, Query(alias="from")] = None,
        to: Day = None,
        user_id: PseudonymQuery = None,
        model: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
        channel: Label = None,
        topic: Label = None,
        intent: Label = None,
        sentiment: Label = None,
        language: Annotated[str | None, Query(pattern=r"^(?:[a-z]{2}|unknown)$")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
        cursor: Annotated[
            str | None, Query(pattern=CURSOR_PATTERN, description=CURSOR_DESCRIPTION)
        ] = None,
    ) -> ConversationPage:
        filters = {"user_id": user_id, "model": model, "channel": channel, "topic": topic,
                   "intent": intent, "sentiment": sentiment, "language": language}  # fmt: skip
        after = decode_cursor(cursor) if cursor else None
        documents = None
        if from_ and to and all(value is None for value in filters.values()):
            documents = _page_of_days(db_provider(), from_, to, after, limit + 1)
        if documents is None:
            documents = _page_by_query(db_provider(), from_, to, filters, after, limit + 1)
        page = documents[:limit]
        next_cursor = (
            encode_cursor(page[-1]["started_at"], page[-1]["conversation_id"])
            if len(documents) > limit
            else None
        )
        return ConversationPage(
            items=[ConversationSummary.from_document(doc) for doc in page], next_cursor=next_cursor
        )

    return router


def _page_of_days(db, first: date, last: date, after, count: int) -> list[dict] | None:
    """The page from the days' key lists; None where they cannot answer it (a range too long,
    a day without a list, a cursor not made from a stored datetime)."""
    span = (last - first).days + 1
    if not 0 < span <= DAY_INDEX_MAX_DAYS or (after and not isinstance(after[0], datetime)):
        return None
    days = [(first + timedelta(days=n)).isoformat() for n in range(span)]
    return page_by_day_index(db, CONVERSATIONS, days, after, count)


def _page_by_query(db, first, last, filters: dict[str, Any], after, count: int) -> list[dict]:
    query: dict[str, Any] = {}
    if first or last:
        query["day"] = {
            **({"$gte": first.isoformat()} if first else {}),
            **({"$lte": last.isoformat()} if last else {}),
        }
    for name, value in filters.items():
        if value is not None:
            # A plain string: pattern-checked by the endpoint, never a document.
            query[name] = value
    if after:
        started, conversation_id = after
        query["$or"] = [
            {"started_at": {"$gt": started}},
            {"started_at": started, "conversation_id": {"$gt": conversation_id}},
        ]
    return list(
        db[CONVERSATIONS].find(query).sort([("started_at", 1), ("conversation_id", 1)]).limit(count)
    )
