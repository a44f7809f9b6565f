"""/conversations: one conversation with its messages (optionally translated), and a filtered
list paged by start time."""

from __future__ import annotations

from datetime import date
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
                query[name] = value
        if cursor:
            started, conversation_id = decode_cursor(cursor)
            query["$or"] = [
                {"started_at": {"$gt": started}},
                {"started_at": started, "conversation_id": {"$gt": conversation_id}},
            ]
        documents = list(
            db_provider()[CONVERSATIONS]
            .find(query)
            .sort([("started_at", 1), ("conversation_id", 1)])
            .limit(limit + 1)
        )
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
