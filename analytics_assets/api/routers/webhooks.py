"""/webhooks: subscriptions to events (create, list, remove) and each one's delivery log,
for keys with the `webhooks:manage` scope. A subscription's signing secret is in the answer
to its creation and nowhere else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from analytics_assets.api.auth import RequireScope
from analytics_assets.api.common import ERRORS, NOT_FOUND, DbProvider
from analytics_assets.webhooks import subscriptions
from analytics_assets.webhooks.events import EVENT_TYPES
from analytics_assets.webhooks.subscriptions import (
    MAX_URL_LENGTH,
    SUBSCRIPTION_ID_PATTERN,
    URL_PATTERN,
    InvalidSubscription,
)

SCOPE = "webhooks:manage"
EventType = Literal[EVENT_TYPES]  # type: ignore[valid-type]
SubscriptionPath = Annotated[str, Path(pattern=SUBSCRIPTION_ID_PATTERN)]


def _time(value: float | None) -> str | None:
    return None if value is None else datetime.fromtimestamp(value, UTC).isoformat()


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(
        min_length=1,
        max_length=MAX_URL_LENGTH,
        pattern=URL_PATTERN,
        description="An http(s) URL, without credentials or fragment.",
    )
    events: list[EventType] = Field(min_length=1, max_length=len(EVENT_TYPES))
    description: str = Field(default="", max_length=200)


class WebhookSubscription(BaseModel):
    id: str
    url: str
    events: list[str]
    description: str
    created_at: str

    @classmethod
    def from_document(cls, document: dict) -> WebhookSubscription:
        return cls(
            id=document["_id"],
            url=document["url"],
            events=list(document["events"]),
            description=document.get("description", ""),
            created_at=_time(document["created_at"]),
        )


class WebhookCreated(WebhookSubscription):
    secret: str = Field(description="Signs every delivery; shown only in this answer.")


class WebhookAttempt(BaseModel):
    number: int
    at: str
    status_code: int | None
    error: str | None
    duration_ms: int


class WebhookDelivery(BaseModel):
    id: str
    event_id: str
    event_type: str
    status: Literal["pending", "delivered", "dead", "cancelled"]
    created_at: str
    next_attempt_at: str | None
    delivered_at: str | None
    attempts: list[WebhookAttempt]

    @classmethod
    def from_document(cls, document: dict) -> WebhookDelivery:
        return cls(
            id=document["_id"],
            event_id=document["event_id"],
            event_type=document["event_type"],
            status=document["status"],
            created_at=_time(document["created_at"]),
            next_attempt_at=_time(document.get("next_attempt_at")),
            delivered_at=_time(document.get("delivered_at")),
            attempts=[
                WebhookAttempt(**{**attempt, "at": _time(attempt["at"])})
                for attempt in document["attempts"]
            ],
        )


def build_router(db_provider: DbProvider, require: RequireScope) -> APIRouter:
    router = APIRouter(tags=["webhooks"], responses=ERRORS)

    @router.post(
        "/webhooks",
        status_code=201,
        response_model=WebhookCreated,
        dependencies=[require(SCOPE)],
    )
    def create(subscription: WebhookCreate) -> WebhookCreated:
        try:
            created = subscriptions.create(
                db_provider(),
                subscription.url,
                list(subscription.events),
                description=subscription.description,
            )
        except InvalidSubscription as error:
            raise RequestValidationError([{"loc": ("body", "url"), "msg": str(error)}]) from None
        public = WebhookSubscription.from_document(created.subscription)
        return WebhookCreated(**public.model_dump(), secret=created.secret)

    @router.get(
        "/webhooks", response_model=list[WebhookSubscription], dependencies=[require(SCOPE)]
    )
    def listed() -> list[WebhookSubscription]:
        return [
            WebhookSubscription.from_document(document)
            for document in subscriptions.list_subscriptions(db_provider())
        ]

    @router.delete(
        "/webhooks/{subscription_id}",
        status_code=204,
        response_class=Response,
        responses=NOT_FOUND,
        dependencies=[require(SCOPE)],
    )
    def remove(subscription_id: SubscriptionPath) -> Response:
        if not subscriptions.remove(db_provider(), subscription_id):
            raise HTTPException(404, "no such webhook subscription")
        return Response(status_code=204)

    @router.get(
        "/webhooks/{subscription_id}/deliveries",
        response_model=list[WebhookDelivery],
        responses=NOT_FOUND,
        dependencies=[require(SCOPE)],
    )
    def deliveries(subscription_id: SubscriptionPath) -> list[WebhookDelivery]:
        db = db_provider()
        if db[subscriptions.SUBSCRIPTIONS].find_one({"_id": subscription_id}) is None:
            raise HTTPException(404, "no such webhook subscription")
        return [
            WebhookDelivery.from_document(document)
            for document in subscriptions.deliveries(db, subscription_id)
        ]

    return router
