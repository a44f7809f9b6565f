"""/conversations: one conversation with its messages (optionally translated), and a filtered
list paged by start time."""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response

from analytics_assets.api import queries
from analytics_assets.api.auth import RequireScope
from analytics_assets.api.common import (
    CURSOR_DESCRIPTION,
    CURSOR_PATTERN,
    ERRORS,
    LANG_PATTERN,
    LANGUAGE_PATTERN,
    MAX_PAGE_SIZE,
    MODEL_PATTERN,
    NOT_FOUND,
    Day,
    DbProvider,
    IdPath,
    Label,
    PseudonymQuery,
    json_response,
)
from analytics_assets.api.models import ConversationDetail, ConversationPage

LIST_PARAMS = ("from", "to", "user_id", "model", "channel", "topic", "intent", "sentiment",
               "language", "limit", "cursor")  # fmt: skip


def build_router(db_provider: DbProvider, require: RequireScope) -> APIRouter:
    router = APIRouter(tags=["conversations"], responses=ERRORS)

    @router.get(
        # `:path`: an id may hold a slash (`tenant/42/c-1`), sent as %2F, which the server
        # decodes before routing.
        "/conversations/{conversation_id:path}",
        response_model=ConversationDetail,
        responses=NOT_FOUND,
        dependencies=[require("conversations:read", ("lang",))],
    )
    def conversation(
        conversation_id: IdPath,
        lang: Annotated[str | None, Query(pattern=LANG_PATTERN)] = None,
    ) -> Response:
        detail = queries.conversation_detail(db_provider(), conversation_id, lang)
        if detail is None:
            raise HTTPException(404, f"no conversation {conversation_id}")
        return json_response(detail, ConversationDetail)

    @router.get(
        "/conversations",
        response_model=ConversationPage,
        dependencies=[require("conversations:read", LIST_PARAMS)],
    )
    def conversations(
        from_: Annotated[date | None, Query(alias="from")] = None,
        to: Day = None,
        user_id: PseudonymQuery = None,
        model: Annotated[str | None, Query(pattern=MODEL_PATTERN)] = None,
        channel: Label = None,
        topic: Label = None,
        intent: Label = None,
        sentiment: Label = None,
        language: Annotated[str | None, Query(pattern=LANGUAGE_PATTERN)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = 50,
        cursor: Annotated[
            str | None, Query(pattern=CURSOR_PATTERN, description=CURSOR_DESCRIPTION)
        ] = None,
    ) -> Response:
        filters = queries.ConversationFilters(
            from_=from_, to=to, user_id=user_id, model=model, channel=channel, topic=topic,
            intent=intent, sentiment=sentiment, language=language,
        )  # fmt: skip
        page = queries.conversation_page(db_provider(), filters, limit, cursor)
        return json_response(page, ConversationPage)

    return router
