"""Response models: what the API promises (its OpenAPI spec is generated from these)."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    error: ErrorDetail


class Health(BaseModel):
    status: str


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


class ConversationSummary(BaseModel):
    conversation_id: str
    user_id: str | None
    model: str | None
    channel: str | None
    started_at: str | None
    ended_at: str | None
    day: str
    turns: int | None
    message_count: int | None
    total_tokens: int | None
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    topic: str | None
    intent: str | None
    sentiment: str | None
    language: str | None
    quality_score: float | None
    satisfaction_score: float | None

    @classmethod
    def from_document(cls, doc: dict) -> ConversationSummary:
        return cls(
            conversation_id=doc["conversation_id"],
            user_id=doc.get("user_id"),
            model=doc.get("model"),
            channel=doc.get("channel"),
            started_at=_text(doc.get("started_at")),
            ended_at=_text(doc.get("ended_at")),
            day=_text(doc.get("day")) or "",
            turns=doc.get("turns"),
            message_count=doc.get("message_count"),
            total_tokens=doc.get("total_tokens"),
            latency_p50_ms=_float(doc.get("latency_p50_ms")),
            latency_p95_ms=_float(doc.get("latency_p95_ms")),
            topic=doc.get("topic"),
            intent=doc.get("intent"),
            sentiment=doc.get("sentiment"),
            language=doc.get("language"),
            quality_score=_float(doc.get("quality_score")),
            satisfaction_score=_float(doc.get("satisfaction_score")),
        )


class ConversationPage(BaseModel):
    items: list[ConversationSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class Message(BaseModel):
    message_id: str
    role: str | None
    created_at: str | None
    content: str | None = Field(description="The original text.")
    text: str | None = Field(description="In `lang` where a translation exists, else original.")
    translated: bool
    translator: str | None = None

    @classmethod
    def from_document(cls, doc: dict, translated: dict[str, dict]) -> Message:
        """`translated`: the current translations of the conversation, by message id."""
        translation = translated.get(doc["message_id"])
        return cls(
            message_id=doc["message_id"],
            role=doc.get("role"),
            created_at=_text(doc.get("created_at")),
            content=doc.get("content"),
            text=translation["text"] if translation else doc.get("content"),
            translated=translation is not None,
            translator=(translation or {}).get("translator"),
        )


class Categories(BaseModel):
    topic: str | None = None
    topic_confidence: float | None = None
    intent: str | None = None
    intent_confidence: float | None = None
    sentiment_opening: str | None = None
    sentiment: str | None = None
    language: str | None = None
    method: str | None = None
    model_version: str | None = None

    @classmethod
    def from_document(cls, doc: dict) -> Categories:
        return cls(**{name: doc.get(name) for name in cls.model_fields})


def score_fields(summary: dict) -> dict[str, float | None]:
    """A conversation's scores: every `*_score` field of its summary document."""
    return {name: _float(summary.get(name)) for name in sorted(summary) if name.endswith("_score")}


class ConversationDetail(BaseModel):
    conversation: ConversationSummary
    categories: Categories
    scores: dict[str, float | None]
    lang: str | None
    messages: list[Message]

    @classmethod
    def from_parts(
        cls, summary: dict, categories: Categories, messages: list[Message], lang: str | None
    ) -> ConversationDetail:
        return cls(
            conversation=ConversationSummary.from_document(summary),
            categories=categories,
            scores=score_fields(summary),
            lang=lang,
            messages=messages,
        )


class Count(BaseModel):
    value: str
    count: int


class Report(BaseModel):
    """A report document; the main fields typed, the rest (per-model parts, changes, rising
    topics, histograms) as stored."""

    model_config = ConfigDict(extra="allow")

    kind: str
    period: str
    conversations: int
    messages: int
    users: int
    new_users: int | None = None
    returning_users: int | None = None
    topics: list[Count] = []
    intents: list[Count] = []
    sentiments: list[Count] = []
    languages: list[Count] = []
    quality_mean: float | None = None
    satisfaction_mean: float | None = None
    latency_p50_mean: float | None = None
    total_tokens: int | None = None
    errors: int | None = None
    # False when an input was missing, or more than 2 % of the day's records were rejected:
    # what is missing ("<asset> <day>…") is in missing_inputs.
    complete: bool = True
    missing_inputs: list[str] = []

    @classmethod
    def from_document(cls, doc: dict) -> Report:
        # User ids stay in MongoDB: a report is about volumes, not who.
        hidden = {"_id", "user_ids", "new_user_ids", "written_by_run"}
        return cls(**{k: v for k, v in doc.items() if k not in hidden})


class SeriesPoint(BaseModel):
    period: str
    counts: dict[str, int]


class Series(BaseModel):
    dimension: str
    grain: str
    points: list[SeriesPoint]


class ModelComparisonRow(BaseModel):
    model: str
    metric: str
    value: float
    others: float
    difference: float
    n: int
    others_n: int
    p_value: float
    significant: bool


class ModelComparison(BaseModel):
    from_: date = Field(alias="from")
    to: date
    models: list[dict[str, Any]]
    comparison: list[ModelComparisonRow]

    model_config = ConfigDict(populate_by_name=True)

    @classmethod
    def from_parts(cls, first, last, per_model, rows) -> ModelComparison:
        return cls(**{"from": first}, to=last, models=per_model,
                   comparison=[ModelComparisonRow(**row) for row in rows])  # fmt: skip


class UserPeriod(BaseModel):
    model_config = ConfigDict(extra="allow")

    period: str
    conversations: int | None = None
    messages: int | None = None


class UserAnalytics(BaseModel):
    user_id: str
    periods: list[UserPeriod]

    @classmethod
    def from_documents(cls, user_id: str, documents: list[dict]) -> UserAnalytics:
        hidden = {"_id", "user_id", "written_by_run"}
        return cls(
            user_id=user_id,
            periods=[
                UserPeriod(**{k: v for k, v in d.items() if k not in hidden}) for d in documents
            ],
        )


class UserPrediction(BaseModel):
    day: str
    return_probability_7d: float = Field(
        description="P(at least one conversation in the 7 days after `day`)"
    )
    expected_conversations_7d: float
    baseline_return_probability_7d: float | None = None
    baseline_conversations_7d: float | None = None
    method: str = Field(
        description="`model`, or `baseline` where the model was not used (too little history, "
        "or it did not beat the baseline)"
    )
    count_method: str | None = Field(
        default=None, description="The same for `expected_conversations_7d`"
    )
    conversations_7d: int | None = None
    conversations_28d: int | None = None
    active_days_28d: int | None = None
    days_since_last: int | None = None


class UserPredictions(BaseModel):
    user_id: str
    predictions: list[UserPrediction]

    @classmethod
    def from_documents(cls, user_id: str, documents: list[dict]) -> UserPredictions:
        fields = set(UserPrediction.model_fields)

        def prediction(document: dict) -> UserPrediction:
            shown = {k: v for k, v in document.items() if k in fields}
            return UserPrediction(**shown | {"day": _text(document["day"])})

        return cls(user_id=user_id, predictions=[prediction(d) for d in documents])


class DashboardTotals(BaseModel):
    conversations: int
    messages: int
    quality_mean: float | None
    satisfaction_mean: float | None


class DashboardVolume(BaseModel):
    period: str
    conversations: int
    messages: int
    # Days of the period inside the date range, and whether that is all of them (a week or
    # month in progress, or cut by the range, is not).
    days: int
    whole: bool


class DashboardCount(BaseModel):
    period: str
    value: str
    count: int


class DashboardModelPeriod(BaseModel):
    period: str
    model: str
    conversations: int
    quality_mean: float | None
    satisfaction_mean: float | None


class Dashboard(BaseModel):
    """The dashboard page's data: the filters as applied, what the filters may choose from
    (the models and channels of the date range), and the aggregates."""

    from_: date = Field(alias="from")
    to: date
    grain: str
    model: str | None
    channel: str | None
    models: list[str]
    channels: list[str]
    totals: DashboardTotals
    volumes: list[DashboardVolume]
    topics: list[DashboardCount]
    intents: list[DashboardCount]
    sentiments: list[DashboardCount]
    languages: list[DashboardCount]
    by_model: list[DashboardModelPeriod]

    model_config = ConfigDict(populate_by_name=True)
