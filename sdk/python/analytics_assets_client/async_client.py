"""`AsyncAnalyticsClient`: the same methods as `AnalyticsClient`, awaited, with the same
retries (`RetryPolicy`, and POST /webhooks not repeated after no answer or a 5xx: see
`analytics_assets_client.client`); `iter_conversations` and `iter_conversation_pages` are
async iterators."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import Any, Self, Unpack

import httpx

from analytics_assets_client.client import (
    MAX_PAGE_SIZE,
    NOT_IDEMPOTENT,
    RETRY_EXCEPTIONS,
    Body,
    ConversationFilters,
    Day,
    Dimension,
    Grain,
    RetryPolicy,
    already_deleted,
    body_adapter,
    http_method,
    request_headers,
    request_parts,
    webhook_create_body,
)
from analytics_assets_client.models import (
    ConversationDetail,
    ConversationPage,
    ConversationSummary,
    Dashboard,
    Health,
    ModelComparison,
    Report,
    Series,
    UserAnalytics,
    UserPredictions,
    WebhookCreated,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)


class AsyncAnalyticsClient:
    """An asyncio client; use it as an async context manager, or await `aclose()`.

    >>> async with AsyncAnalyticsClient("http://127.0.0.1:8000", api_key) as client:
    ...     async for summary in client.iter_conversations(topic="billing"):
    ...         print(summary.conversation_id)
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 10.0,
        max_retries: int = 3,
        max_retry_wait: float = 60.0,
        backoff_base: float = 0.5,
        backoff_max: float = 8.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retry = RetryPolicy(max_retries, max_retry_wait, backoff_base, backoff_max)
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, headers=request_headers(api_key)
        )

    def __repr__(self) -> str:
        return f"AsyncAnalyticsClient(base_url={self.base_url!r})"  # never the key

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # The service (no key needed).

    async def health(self) -> Health:
        return await self._get(Health, "health", {})

    async def ready(self) -> Health:
        """Raises `ServiceUnavailableError` (code `not_ready`) while MongoDB is unreachable."""
        return await self._get(Health, "ready", {})

    # Conversations.

    async def get_conversation(
        self, conversation_id: str, *, lang: str | None = None
    ) -> ConversationDetail:
        """One conversation and its messages; with `lang` (two letters) the messages' `text`
        is the translation into it where one exists."""
        return await self._get(
            ConversationDetail, "get_conversation", {"conversation_id": conversation_id}, lang=lang
        )

    async def list_conversations(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        **filters: Unpack[ConversationFilters],
    ) -> ConversationPage:
        """One page, ordered by start time; pass its `next_cursor` as `cursor` for the next,
        or let `iter_conversations` do that."""
        return await self._get(
            ConversationPage, "list_conversations", {}, limit=limit, cursor=cursor, **filters
        )

    async def iter_conversation_pages(
        self, *, page_size: int = MAX_PAGE_SIZE, **filters: Unpack[ConversationFilters]
    ) -> AsyncIterator[ConversationPage]:
        """Every page of the filtered list, asked for one at a time as they are consumed."""
        cursor: str | None = None
        while True:
            page = await self.list_conversations(limit=page_size, cursor=cursor, **filters)
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def iter_conversations(
        self, *, page_size: int = MAX_PAGE_SIZE, **filters: Unpack[ConversationFilters]
    ) -> AsyncIterator[ConversationSummary]:
        """Every conversation of the filtered list, across pages."""
        async for page in self.iter_conversation_pages(page_size=page_size, **filters):
            for summary in page.items:
                yield summary

    # Reports and analytics.

    async def get_report(self, kind: Grain, period: str) -> Report:
        """`period`: the day (`2026-11-02`), the week's Monday, or the month (`2026-11`)."""
        return await self._get(Report, "get_report", {"kind": kind, "period": period})

    async def list_reports(self, kind: Grain, from_: Day, to: Day) -> list[Report]:
        """A kind's reports whose period overlaps [from_, to] (the week or month that holds
        `from_` included), by period."""
        return await self._get(list[Report], "list_reports", {"kind": kind}, from_=from_, to=to)

    async def get_series(
        self, dimension: Dimension, from_: Day, to: Day, *, grain: Grain = "daily"
    ) -> Series:
        return await self._get(
            Series, "get_series", {"dimension": dimension}, from_=from_, to=to, grain=grain
        )

    async def compare_models(self, from_: Day, to: Day) -> ModelComparison:
        return await self._get(ModelComparison, "compare_models", {}, from_=from_, to=to)

    async def get_user_analytics(self, user_id: str) -> UserAnalytics:
        """`user_id`: the user's pseudonym, as conversations carry it."""
        return await self._get(UserAnalytics, "get_user_analytics", {"user_id": user_id})

    async def get_dashboard_data(
        self,
        *,
        from_: Day | None = None,
        to: Day | None = None,
        grain: Grain = "daily",
        model: str | None = None,
        channel: str | None = None,
    ) -> Dashboard:
        return await self._get(
            Dashboard,
            "get_dashboard_data",
            {},
            from_=from_,
            to=to,
            grain=grain,
            model=model,
            channel=channel,
        )

    async def user_predictions(self, user_id: str) -> UserPredictions:
        """The user's return predictions, one per day scored, oldest first; `user_id`: the
        pseudonym. `NotFoundError` for a user never scored. Needs `users:read`."""
        return await self._get(UserPredictions, "user_predictions", {"user_id": user_id})

    # Webhook subscriptions (the key needs `webhooks:manage`).

    async def create_webhook(
        self, url: str, events: Sequence[WebhookEvent], *, description: str = ""
    ) -> WebhookCreated:
        """Subscribes `url` to `events`. The answer's `secret` signs every delivery and is
        shown only here. Not retried after no answer or a 5xx."""
        body = webhook_create_body(url, events, description)
        return await self._get(WebhookCreated, "create_webhook", {}, json_body=body)

    async def list_webhooks(self) -> list[WebhookSubscription]:
        """The active subscriptions, oldest first, without their secrets."""
        return await self._get(list[WebhookSubscription], "list_webhooks", {})

    async def delete_webhook(self, subscription_id: str) -> None:
        """Removes the subscription. `NotFoundError` when there is no such active one."""
        path, params = request_parts("delete_webhook", {"subscription_id": subscription_id}, {})
        await self._send("DELETE", path, params)

    async def webhook_deliveries(self, subscription_id: str) -> list[WebhookDelivery]:
        """The subscription's delivery log, newest first (its latest 50, one list)."""
        return await self._get(
            list[WebhookDelivery], "webhook_deliveries", {"subscription_id": subscription_id}
        )

    # The requests.

    async def _get(
        self,
        response_type: type[Body],
        endpoint_name: str,
        path_params: dict[str, str],
        *,
        json_body: dict[str, Any] | None = None,
        **query: Any,
    ) -> Body:
        path, params = request_parts(endpoint_name, path_params, query)
        response = await self._send(
            http_method(endpoint_name),
            path,
            params,
            json_body=json_body,
            idempotent=endpoint_name not in NOT_IDEMPOTENT,
        )
        return body_adapter(response_type).validate_json(response.content)

    async def _send(
        self,
        method: str,
        path: str,
        params: dict[str, str],
        *,
        json_body: dict[str, Any] | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        unanswered = False
        for attempt in range(1, self.retry.attempts + 1):
            try:
                response = await self._http.request(method, path, params=params, json=json_body)
            except RETRY_EXCEPTIONS as error:
                unanswered = True
                wait = self.retry.wait_after_failure(
                    path, attempt, error, method=method, idempotent=idempotent
                )
            else:
                if not response.is_error or already_deleted(method, response, unanswered):
                    return response
                wait = self.retry.wait_after_error(
                    path, attempt, response, method=method, idempotent=idempotent
                )
            await asyncio.sleep(wait)
        raise AssertionError("unreachable")  # the last attempt returns or raises
