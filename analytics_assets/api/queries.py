"""The read models' MongoDB queries, shared by the REST routers and the GraphQL schema so
that both answer from the same documents the same way. Every value passed in here has been
type- and pattern-checked by the caller; none is ever parsed into a query document."""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from typing import Any

from pymongo.database import Database

from analytics_assets.analytics.dashboard import period_start
from analytics_assets.analytics.reports import model_comparison as compare_models
from analytics_assets.analytics.reports import with_categorized
from analytics_assets.api.common import (
    CATEGORIES,
    CONVERSATIONS,
    MESSAGES,
    REPORTS,
    TRANSLATIONS,
    USER_ANALYTICS,
    USER_PREDICTIONS,
    decode_cursor,
    encode_cursor,
)
from analytics_assets.api.models import (
    Categories,
    ConversationDetail,
    ConversationPage,
    ConversationSummary,
    Message,
    ModelComparison,
    Report,
    Series,
    UserAnalytics,
    UserPredictions,
)
from analytics_assets.storage.collections import COLLECTIONS
from analytics_assets.storage.day_index import DayListCache, page_by_day_index

# The API process's key lists of recent reads (storage/day_index.py says why it is safe).
DAY_LISTS = DayListCache(ttl_s=5.0)

# A date range of at most this many days, and no other filter, is paged through the per-day
# key lists (storage/day_index.py); so is a filter on the fields the lists keep
# (`LISTED_LABELS`) over at most LABEL_PAGE_MAX_DAYS days; anything else is one query.
DAY_INDEX_MAX_DAYS = 31
LABEL_PAGE_MAX_DAYS = 366
LISTED_LABELS = COLLECTIONS["conversation_analytics"].day_index_labels
# A series' dimension -> the report field that holds its counts.
DIMENSIONS = {"topics": "topics", "intents": "intents", "sentiment": "sentiments",
              "languages": "languages"}  # fmt: skip


@dataclass(frozen=True)
class ConversationFilters:
    """The filters of a conversation list; each a plain, pattern-checked string or date."""

    from_: date | None = None
    to: date | None = None
    user_id: str | None = None
    model: str | None = None
    channel: str | None = None
    topic: str | None = None
    intent: str | None = None
    sentiment: str | None = None
    language: str | None = None

    def query(self) -> dict[str, Any]:
        query: dict[str, Any] = {}
        if self.from_ or self.to:
            query["day"] = {
                **({"$gte": self.from_.isoformat()} if self.from_ else {}),
                **({"$lte": self.to.isoformat()} if self.to else {}),
            }
        for field in fields(self):
            value = getattr(self, field.name)
            if field.name not in ("from_", "to") and value is not None:
                query[field.name] = value  # a plain string, never a document
        return query

    def date_range_only(self) -> bool:
        return bool(self.from_ and self.to) and not self._set()

    def labels(self) -> dict[str, str]:
        """The filters on the fields the day lists keep (`LISTED_LABELS`) that are set."""
        return {name: value for name, value in self._set().items() if name in LISTED_LABELS}

    def labels_only(self) -> bool:
        """Whether some filter besides the dates is set, and each is one the lists keep."""
        chosen = self._set()
        return bool(chosen) and chosen.keys() <= set(LISTED_LABELS)

    def _set(self) -> dict[str, str]:
        """The filters besides the dates that are set."""
        return {
            field.name: getattr(self, field.name)
            for field in fields(self)
            if field.name not in ("from_", "to") and getattr(self, field.name) is not None
        }


def conversation_summary(db: Database, conversation_id: str) -> dict | None:
    return db[CONVERSATIONS].find_one({"_id": conversation_id})


def conversation_categories(db: Database, conversation_id: str) -> Categories:
    return Categories.from_document(db[CATEGORIES].find_one({"_id": conversation_id}) or {})


def conversation_messages(db: Database, conversation_id: str, lang: str | None) -> list[Message]:
    """Oldest first; with `lang`, each message's current translation where one exists."""
    documents = (
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
    return [Message.from_document(doc, translated) for doc in documents]


def categories_by_conversation(db: Database, ids: list[str]) -> dict[str, Categories]:
    """The categories of many conversations in one query (a page's, for GraphQL)."""
    found = {doc["_id"]: doc for doc in db[CATEGORIES].find({"_id": {"$in": ids}})}
    return {id_: Categories.from_document(found.get(id_) or {}) for id_ in ids}


def messages_by_conversation(
    db: Database, ids: list[str], lang: str | None
) -> dict[str, list[Message]]:
    """`conversation_messages` for many conversations in one query (two with `lang`)."""
    by_conversation: dict[str, list[dict]] = {id_: [] for id_ in ids}
    for doc in db[MESSAGES].find({"conversation_id": {"$in": ids}}):
        by_conversation[doc["conversation_id"]].append(doc)
    # Per conversation: a message id is one message within its conversation only (a source
    # numbering messages 1, 2, 3... in each), so one map for the page gave every
    # conversation's message 1 the translation of whichever conversation came last.
    translated: dict[str, dict[str, dict]] = {id_: {} for id_ in ids}
    if lang:
        for doc in db[TRANSLATIONS].find(
            {"conversation_id": {"$in": ids}, "target_language": lang}
        ):
            if doc.get("is_current"):
                translated[doc["conversation_id"]][doc["message_id"]] = doc
    return {
        id_: [
            Message.from_document(doc, translated[id_])
            for doc in sorted(docs, key=lambda d: (_sortable(d.get("created_at")), d["message_id"]))
        ]
        for id_, docs in by_conversation.items()
    }


def _sortable(value: Any) -> tuple[bool, str]:
    # MongoDB's order for the one-conversation query: missing first, then by value.
    return (value is not None, value.isoformat() if hasattr(value, "isoformat") else str(value))


def conversation_detail(
    db: Database, conversation_id: str, lang: str | None
) -> ConversationDetail | None:
    summary = conversation_summary(db, conversation_id)
    if summary is None:
        return None
    return ConversationDetail.from_parts(
        summary,
        conversation_categories(db, conversation_id),
        conversation_messages(db, conversation_id, lang),
        lang,
    )


def conversation_documents(
    db: Database, filters: ConversationFilters, limit: int, cursor: str | None
) -> tuple[list[dict], str | None]:
    """A page of conversation documents ordered by start time then id, and the cursor of
    the next page (None on the last). `cursor` is a previous page's; a malformed one raises
    RequestValidationError."""
    after = decode_cursor(cursor) if cursor else None
    documents = _page_from_day_lists(db, filters, after, limit + 1)
    if documents is None:
        query = filters.query()
        if after:
            started, conversation_id = after
            query["$or"] = [
                {"started_at": {"$gt": started}},
                {"started_at": started, "conversation_id": {"$gt": conversation_id}},
            ]
        documents = list(
            db[CONVERSATIONS]
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
    return page, next_cursor


def _page_from_day_lists(
    db: Database, filters: ConversationFilters, after, count: int
) -> list[dict] | None:
    """The page from the days' key lists; None where they cannot answer it (another filter,
    a range too long, a day without a list, a cursor not made from a stored datetime)."""
    if after and not isinstance(after[0], datetime):
        return None
    labels = filters.labels()
    if filters.date_range_only():
        span = (filters.to - filters.from_).days + 1
        if not 0 < span <= DAY_INDEX_MAX_DAYS:
            return None
        days = [(filters.from_ + timedelta(days=n)).isoformat() for n in range(span)]
    elif filters.labels_only():
        # Only the days that hold conversations: a label page has no range to walk.
        first = filters.from_.isoformat() if filters.from_ else ""
        last = filters.to.isoformat() if filters.to else "9999-12-31"
        days = [day for day in DAY_LISTS.days(db, CONVERSATIONS) if first <= day <= last]
        if len(days) > LABEL_PAGE_MAX_DAYS:
            return None
    else:
        return None
    return page_by_day_index(db, CONVERSATIONS, days, after, count, DAY_LISTS, labels)


def conversation_page(
    db: Database, filters: ConversationFilters, limit: int, cursor: str | None
) -> ConversationPage:
    page, next_cursor = conversation_documents(db, filters, limit, cursor)
    return ConversationPage(
        items=[ConversationSummary.from_document(doc) for doc in page], next_cursor=next_cursor
    )


def report(db: Database, kind: str, period: str) -> Report | None:
    document = db[REPORTS].find_one({"_id": f"{kind}:{period}"})
    return None if document is None else Report.from_document(document)


def _periods_in(kind: str, first: date, last: date) -> dict[str, Any]:
    """The reports of `kind` whose period overlaps `first`..`last`. A report's `day` is its
    period's first day: compared with `first` itself, the week or month that holds `first`
    was left out (`from=2026-11-05&grain=monthly` gave no November), where the dashboard
    counts it."""
    start = period_start(first, kind) if kind in ("weekly", "monthly") else first
    return {"kind": kind, "day": {"$gte": start.isoformat(), "$lte": last.isoformat()}}


def reports(db: Database, kind: str, first: date, last: date) -> list[Report]:
    documents = db[REPORTS].find(_periods_in(kind, first, last)).sort("period", 1)
    return [Report.from_document(doc) for doc in documents]


def series(db: Database, dimension: str, first: date, last: date, grain: str) -> Series:
    field = DIMENSIONS[dimension]
    documents = (
        db[REPORTS]
        .find(_periods_in(grain, first, last), projection={"period": 1, field: 1})
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


def model_comparison(db: Database, first: date, last: date) -> ModelComparison:
    """The daily reports' per-model parts summed over the range, and how each model compares
    with the others."""
    totals: dict[str, dict] = {}
    for document in db[REPORTS].find(
        {"kind": "daily", "day": {"$gte": first.isoformat(), "$lte": last.isoformat()}},
        projection={"per_model": 1},
    ):
        for parts in document.get("per_model") or []:
            # Filled per day: summed first, a day without it would count nothing.
            parts = with_categorized(parts)
            merged = totals.setdefault(parts["model"], {"model": parts["model"]})
            for name, value in parts.items():
                if name != "model":
                    merged[name] = merged.get(name, 0) + (value or 0)
    per_model = sorted(totals.values(), key=lambda parts: parts["model"])
    return ModelComparison.from_parts(first, last, per_model, compare_models(per_model))


def user_analytics(db: Database, user_id: str) -> UserAnalytics | None:
    """By pseudonym only (the caller has checked the pattern): never a source id."""
    documents = list(db[USER_ANALYTICS].find({"user_id": user_id}).sort("period", 1))
    return UserAnalytics.from_documents(user_id, documents) if documents else None


def user_predictions(db: Database, user_id: str) -> UserPredictions | None:
    """By pseudonym only, like `user_analytics`: each day the user was scored."""
    documents = list(db[USER_PREDICTIONS].find({"user_id": user_id}).sort("day", 1))
    return UserPredictions.from_documents(user_id, documents) if documents else None
