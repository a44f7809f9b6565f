"""The API's response bodies as pydantic models, one per schema of its OpenAPI spec
(`components.schemas`), under the spec's names. Written by hand so that each reads well;
`analytics_assets_tests/test_sdk.py` checks every one against the committed spec (the same
properties, types, required fields and defaults), so the spec cannot change unnoticed.

Unknown fields are ignored (a newer server may add some) except where the API says a body
is open (`Report`, `UserPeriod`): their extra fields are kept, as attributes and in
`model_extra`."""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

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


class UserPrediction(BaseModel):
    """A user's return prediction for one day (docs/metrics.md, "Return prediction")."""

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
    """`GET /users/{user_id}/predictions`: one prediction per day the user was scored."""

    user_id: str
    predictions: list[UserPrediction]


# The events a webhook subscription can ask for.
WebhookEvent = Literal["report.ready", "check.failed", "erasure.done", "sync.completed"]
# What the API accepts as a subscription's URL (a subset of what it validates further).
WEBHOOK_URL_PATTERN = (
    r"^https?://[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*"
    r"(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}))?"
    r"(/[A-Za-z0-9._~!$&'()*+,;=:/?%-]*)?$"
)


class WebhookCreate(BaseModel):
    """The body of `POST /webhooks`. `create_webhook` sends it unvalidated, so that the API's
    own checks answer (as `InvalidRequestError`, code `invalid_request`); validate with this
    model first to fail before the request."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1,
        max_length=2048,
        pattern=WEBHOOK_URL_PATTERN,
        description="An http(s) URL, without credentials or fragment.",
    )
    events: list[WebhookEvent] = Field(min_length=1, max_length=4)
    description: str = Field(default="", max_length=200)


class WebhookSubscription(BaseModel):
    """A subscription as listed: never its secret."""

    id: str
    url: str
    events: list[str]
    description: str
    created_at: str


class WebhookCreated(WebhookSubscription):
    """The answer to `POST /webhooks`, the only one carrying the subscription's signing
    secret: keep it where the receiver can read it. It is left out of `repr`, so that a
    logged or printed subscription does not show it."""

    secret: str = Field(description="Signs every delivery; shown only in this answer.", repr=False)


class WebhookAttempt(BaseModel):
    number: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: int


class WebhookDelivery(BaseModel):
    """One event sent (or to be sent) to a subscription, with every attempt."""

    id: str
    event_id: str
    event_type: str
    status: Literal["pending", "delivered", "dead", "cancelled"]
    created_at: str
    next_attempt_at: str | None
    delivered_at: str | None
    attempts: list[WebhookAttempt]


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
        Series, SeriesPoint, UserAnalytics, UserPeriod, UserPrediction, UserPredictions,
        WebhookAttempt, WebhookCreate, WebhookCreated, WebhookDelivery, WebhookSubscription,
    )
}  # fmt: skip
