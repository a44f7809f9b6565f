"""The API's response bodies as pydantic models, one per schema of its OpenAPI spec
(`components.schemas`), under the spec's names. Written by hand so that each reads well;
`analytics_assets_tests/test_sdk.py` checks every one against the committed spec (the same
properties, types, required fields and defaults), so the spec cannot change unnoticed.

Unknown fields are ignored (a newer server may add some) except where the API says a body
is open (`Report`, `UserPeriod`): their extra fields are kept, as attributes and in
`model_extra`."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ErrorDetail(BaseModel):
    code: str
    message: str


class ErrorBody(BaseModel):
    """Every error the API answers: `{"error": {"code", "message"}}`."""

    error: ErrorDetail


class Health(BaseModel):
    status: str


class ConversationSummary(BaseModel):
    """One conversation's analytics: a row of the conversation list."""

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


class ConversationPage(BaseModel):
    """A page of `GET /conversations`; `next_cursor` is None on the last page."""

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


class ConversationDetail(BaseModel):
    """One conversation with its categories, scores and messages (`GET
    /conversations/{conversation_id}`)."""

    conversation: ConversationSummary
    categories: Categories
    scores: dict[str, float | None]
    lang: str | None
    messages: list[Message]


class Count(BaseModel):
    value: str
    count: int


class Report(BaseModel):
    """A daily, weekly or monthly report. The API keeps the report open: fields beyond these
    (per-model parts, changes, rising topics, histograms) are kept as sent."""

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
    complete: bool = True
    missing_inputs: list[str] = []


class SeriesPoint(BaseModel):
    period: str
    counts: dict[str, int]


class Series(BaseModel):
    """A dimension's counts per period (`GET /analytics/{dimension}`)."""

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
    """`from` is a Python keyword: the field is `from_` (the JSON name stays `from`)."""

    model_config = ConfigDict(populate_by_name=True)

    from_: date = Field(alias="from")
    to: date
    models: list[dict[str, Any]]
    comparison: list[ModelComparisonRow]


class UserPeriod(BaseModel):
    model_config = ConfigDict(extra="allow")

    period: str
    conversations: int | None = None
    messages: int | None = None


class UserAnalytics(BaseModel):
    user_id: str
    periods: list[UserPeriod]


class DashboardTotals(BaseModel):
    conversations: int
    messages: int
    quality_mean: float | None
    satisfaction_mean: float | None


class DashboardVolume(BaseModel):
    period: str
    conversations: int
    messages: int


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
    """The dashboard's aggregates over a date range (`GET /dashboard/data`)."""

    model_config = ConfigDict(populate_by_name=True)

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


# Every model named as in the spec's `components.schemas`, for the spec check.
SCHEMAS: dict[str, type[BaseModel]] = {
    model.__name__: model
    for model in (
        Categories, ConversationDetail, ConversationPage, ConversationSummary, Count,
        Dashboard, DashboardCount, DashboardModelPeriod, DashboardTotals, DashboardVolume,
        ErrorBody, ErrorDetail, Health, Message, ModelComparison, ModelComparisonRow, Report,
        Series, SeriesPoint, UserAnalytics, UserPeriod,
    )
}  # fmt: skip
