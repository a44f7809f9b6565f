"""`AnalyticsClient`: one method per endpoint of the read API, page iterators that follow its
cursor, and retries.

Retries: an idempotent request (every GET, and DELETE) is repeated, up to `max_retries`
times, when the connection fails or times out, and when the API answers 429, 502, 503 or
504. A 429 or 503 that says `Retry-After` (seconds or an HTTP date) is retried after that
long; when the API asks for more than `max_retry_wait` seconds the error is raised at once
instead (with its `retry_after`), so the caller decides. Otherwise the wait is an
exponential backoff with jitter (`backoff_base` doubling per attempt, at most `backoff_max`).

`POST /webhooks` is not idempotent (each call creates a subscription with a new id and
secret): after no answer or a 5xx it may or may not have been carried out, so it is never
repeated then; the error is raised for the caller to check with `list_webhooks`. Only a 429
is retried: the API's rate limit and failed-authentication limit answer it in the route's
dependencies, before its handler runs, so nothing was created. A DELETE retried after an
attempt that got no answer may find the subscription already gone: that 404 counts as
deleted.

The API key is sent in the `X-API-Key` header and never logged, shown in `repr` or put in
an error."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Literal, Self, TypedDict, TypeVar, Unpack
from urllib.parse import quote

import httpx
from pydantic import TypeAdapter

from analytics_assets_client._version import __version__
from analytics_assets_client.errors import ApiConnectionError, error_from_response
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

logger = logging.getLogger("analytics_assets_client")

Grain = Literal["daily", "weekly", "monthly"]
Dimension = Literal["topics", "intents", "sentiment", "languages"]
Day = date | str

# Statuses worth asking again: rate limited, or the server (or a proxy before it) not ready.
RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Only these two carry a Retry-After the API means.
RETRY_AFTER_STATUSES = frozenset({429, 503})
# Statuses worth asking again for a request that is not idempotent: only the refusals the
# API answers before a handler runs (rate limit, failed-authentication limit).
NON_IDEMPOTENT_RETRY_STATUSES = frozenset({429})
# Failures of the transport that an idempotent request may be repeated after (not a bad URL
# or protocol).
RETRY_EXCEPTIONS = (httpx.NetworkError, httpx.TimeoutException, httpx.RemoteProtocolError)
# The API's largest page.
MAX_PAGE_SIZE = 100

Body = TypeVar("Body")


# Every documented path, by the method that calls it (with the HTTP method of
# `HTTP_METHODS`, GET where not named there). The SDK's tests check these tables against the
# committed OpenAPI spec: the same operations, and each method's return annotation is the
# schema the operation answers (None for 204).
ENDPOINTS: dict[str, str] = {
    "health": "/health",
    "ready": "/ready",
    "get_conversation": "/conversations/{conversation_id}",
    "list_conversations": "/conversations",
    "get_report": "/analytics/reports/{kind}/{period}",
    "list_reports": "/analytics/reports/{kind}",
    "compare_models": "/analytics/models",
    "get_series": "/analytics/{dimension}",
    "get_user_analytics": "/users/{user_id}/analytics",
    "get_dashboard_data": "/dashboard/data",
    "user_predictions": "/users/{user_id}/predictions",
    "create_webhook": "/webhooks",
    "list_webhooks": "/webhooks",
    "delete_webhook": "/webhooks/{subscription_id}",
    "webhook_deliveries": "/webhooks/{subscription_id}/deliveries",
}
HTTP_METHODS: dict[str, str] = {"create_webhook": "POST", "delete_webhook": "DELETE"}
# The calls that must not be repeated after no answer or a 5xx (see the module's docstring).
NOT_IDEMPOTENT = frozenset({"create_webhook"})


def http_method(endpoint_name: str) -> str:
    return HTTP_METHODS.get(endpoint_name, "GET")


class ConversationFilters(TypedDict, total=False):
    """The filters of `GET /conversations`; `from_` is sent as `from`."""

    from_: Day
    to: Day
    user_id: str  # a pseudonym (`u_` and 20 hex digits), as the API returns them
    model: str
    channel: str
    topic: str
    intent: str
    sentiment: str
    language: str


class AnalyticsClient:
    """A synchronous client; use it as a context manager, or call `close()`.

    >>> with AnalyticsClient("http://127.0.0.1:8000", api_key) as client:
    ...     client.get_conversation("conv-000001").messages
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
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers=request_headers(api_key)
        )

    def __repr__(self) -> str:
        return f"AnalyticsClient(base_url={self.base_url!r})"  # never the key

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # The service (no key needed).

    def health(self) -> Health:
        return self._get(Health, "health", {})

    def ready(self) -> Health:
        """Raises `ServiceUnavailableError` (code `not_ready`) while MongoDB is unreachable."""
        return self._get(Health, "ready", {})

    # Conversations.

    def get_conversation(
        self, conversation_id: str, *, lang: str | None = None
    ) -> ConversationDetail:
        """One conversation and its messages; with `lang` (two letters) the messages' `text`
        is the translation into it where one exists."""
        return self._get(
            ConversationDetail, "get_conversation", {"conversation_id": conversation_id}, lang=lang
        )

    def list_conversations(
        self,
        *,
        limit: int = 50,
        cursor: str | None = None,
        **filters: Unpack[ConversationFilters],
    ) -> ConversationPage:
        """One page, ordered by start time; pass its `next_cursor` as `cursor` for the next,
        or let `iter_conversations` do that."""
        return self._get(
            ConversationPage, "list_conversations", {}, limit=limit, cursor=cursor, **filters
        )

    def iter_conversation_pages(
        self, *, page_size: int = MAX_PAGE_SIZE, **filters: Unpack[ConversationFilters]
    ) -> Iterator[ConversationPage]:
        """Every page of the filtered list, asked for one at a time as they are consumed."""
        cursor: str | None = None
        while True:
            page = self.list_conversations(limit=page_size, cursor=cursor, **filters)
            yield page
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    def iter_conversations(
        self, *, page_size: int = MAX_PAGE_SIZE, **filters: Unpack[ConversationFilters]
    ) -> Iterator[ConversationSummary]:
        """Every conversation of the filtered list, across pages."""
        for page in self.iter_conversation_pages(page_size=page_size, **filters):
            yield from page.items

    # Reports and analytics.

    def get_report(self, kind: Grain, period: str) -> Report:
        """`period`: the day (`2026-11-02`), the week's Monday, or the month (`2026-11`)."""
        return self._get(Report, "get_report", {"kind": kind, "period": period})

    def list_reports(self, kind: Grain, from_: Day, to: Day) -> list[Report]:
        """A kind's reports whose period overlaps [from_, to] (the week or month that holds
        `from_` included), by period."""
        return self._get(list[Report], "list_reports", {"kind": kind}, from_=from_, to=to)

    def get_series(
        self, dimension: Dimension, from_: Day, to: Day, *, grain: Grain = "daily"
    ) -> Series:
        return self._get(
            Series, "get_series", {"dimension": dimension}, from_=from_, to=to, grain=grain
        )

    def compare_models(self, from_: Day, to: Day) -> ModelComparison:
        return self._get(ModelComparison, "compare_models", {}, from_=from_, to=to)

    def get_user_analytics(self, user_id: str) -> UserAnalytics:
        """`user_id`: the user's pseudonym, as conversations carry it."""
        return self._get(UserAnalytics, "get_user_analytics", {"user_id": user_id})

    def get_dashboard_data(
        self,
        *,
        from_: Day | None = None,
        to: Day | None = None,
        grain: Grain = "daily",
        model: str | None = None,
        channel: str | None = None,
    ) -> Dashboard:
        return self._get(
            Dashboard,
            "get_dashboard_data",
            {},
            from_=from_,
            to=to,
            grain=grain,
            model=model,
            channel=channel,
        )

    def user_predictions(self, user_id: str) -> UserPredictions:
        """The user's return predictions, one per day scored, oldest first; `user_id`: the
        pseudonym. `NotFoundError` for a user never scored. Needs `users:read`."""
        return self._get(UserPredictions, "user_predictions", {"user_id": user_id})

    # Webhook subscriptions (the key needs `webhooks:manage`).

    def create_webhook(
        self, url: str, events: Sequence[WebhookEvent], *, description: str = ""
    ) -> WebhookCreated:
        """Subscribes `url` to `events`. The answer's `secret` signs every delivery and is
        shown only here: hand it to the receiver (see `verify_webhook_signature`). Not
        retried after no answer or a 5xx (see the module's docstring)."""
        body = webhook_create_body(url, events, description)
        return self._get(WebhookCreated, "create_webhook", {}, json_body=body)

    def list_webhooks(self) -> list[WebhookSubscription]:
        """The active subscriptions, oldest first, without their secrets."""
        return self._get(list[WebhookSubscription], "list_webhooks", {})

    def delete_webhook(self, subscription_id: str) -> None:
        """Removes the subscription (its pending deliveries are cancelled, its log stays).
        `NotFoundError` when there is no such active subscription."""
        path, params = request_parts("delete_webhook", {"subscription_id": subscription_id}, {})
        self._send("DELETE", path, params)

    def webhook_deliveries(self, subscription_id: str) -> list[WebhookDelivery]:
        """The subscription's delivery log, newest first (the API answers its latest 50,
        in one list: there is no page to follow), each with its attempts."""
        return self._get(
            list[WebhookDelivery], "webhook_deliveries", {"subscription_id": subscription_id}
        )

    # The requests.

    def _get(
        self,
        response_type: type[Body],
        endpoint_name: str,
        path_params: dict[str, str],
        *,
        json_body: dict[str, Any] | None = None,
        **query: Any,
    ) -> Body:
        path, params = request_parts(endpoint_name, path_params, query)
        response = self._send(
            http_method(endpoint_name),
            path,
            params,
            json_body=json_body,
            idempotent=endpoint_name not in NOT_IDEMPOTENT,
        )
        return body_adapter(response_type).validate_json(response.content)

    def _send(
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
                response = self._http.request(method, path, params=params, json=json_body)
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
            time.sleep(wait)
        raise AssertionError("unreachable")  # the last attempt returns or raises


@dataclass(frozen=True)
class RetryPolicy:
    """When a request is asked again, and after how long (shared by both clients). A request
    that is not `idempotent` is asked again only after a 429."""

    max_retries: int = 3
    max_retry_wait: float = 60.0
    backoff_base: float = 0.5
    backoff_max: float = 8.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be 0 or more")

    @property
    def attempts(self) -> int:
        return self.max_retries + 1

    def wait_after_failure(
        self,
        path: str,
        attempt: int,
        error: Exception,
        *,
        method: str = "GET",
        idempotent: bool = True,
    ) -> float:
        """The wait before asking again after no answer; raises after the last attempt, and
        at once for a request that is not idempotent (it may have been carried out)."""
        if not idempotent:
            raise ApiConnectionError(
                f"{method} {path}: no answer ({error!r}); not retried, as it may have been "
                "carried out"
            ) from error
        if attempt >= self.attempts:
            raise ApiConnectionError(
                f"{method} {path}: no answer after {self.attempts} attempts ({error!r})"
            ) from error
        return self._logged(method, path, type(error).__name__, self.backoff(attempt), attempt)

    def wait_after_error(
        self,
        path: str,
        attempt: int,
        response: httpx.Response,
        *,
        method: str = "GET",
        idempotent: bool = True,
    ) -> float:
        """The wait before asking again after an error answer; raises the API's error when
        it is not worth asking again (or no attempt is left, or Retry-After is past the
        cap)."""
        retry_after = (
            parse_retry_after(response.headers.get("Retry-After"))
            if response.status_code in RETRY_AFTER_STATUSES
            else None
        )
        retried = RETRY_STATUSES if idempotent else NON_IDEMPOTENT_RETRY_STATUSES
        if (
            response.status_code not in retried
            or attempt >= self.attempts
            or (retry_after is not None and retry_after > self.max_retry_wait)
        ):
            raise error_from_response(response, retry_after)
        wait = self.backoff(attempt) if retry_after is None else retry_after
        return self._logged(method, path, str(response.status_code), wait, attempt)

    def backoff(self, attempt: int) -> float:
        # Exponential, with jitter (half to all of the step) so that clients that failed
        # together do not come back together.
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))
        return random.uniform(ceiling / 2, ceiling)

    def _logged(self, method: str, path: str, reason: str, wait: float, attempt: int) -> float:
        logger.info(
            "%s %s: %s, retrying in %.2f s (attempt %d of %d)",
            method, path, reason, wait, attempt + 1, self.attempts,
        )  # fmt: skip
        return wait


def already_deleted(method: str, response: httpx.Response, unanswered: bool) -> bool:
    """A DELETE's 404 after an attempt that got no answer: that attempt may have deleted
    it, and DELETE is idempotent in effect, so the call succeeded."""
    return method == "DELETE" and response.status_code == 404 and unanswered


def webhook_create_body(url: str, events: Sequence[str], description: str) -> dict[str, Any]:
    # Sent as given: the API validates it (and answers 422 `invalid_request` with the
    # reason). A lone string is a Sequence of one-letter events: refused here.
    if isinstance(events, str):
        raise TypeError("events must be a list of event types, not a string")
    return {"url": url, "events": list(events), "description": description}


def request_headers(api_key: str) -> dict[str, str]:
    return {
        "X-API-Key": api_key,
        "Accept": "application/json",
        "User-Agent": f"analytics-assets-client/{__version__}",
    }


def request_parts(
    endpoint_name: str, path_params: dict[str, str], query: dict[str, Any]
) -> tuple[str, dict[str, str]]:
    """The path (its parameters escaped) and the query (`from_` sent as `from`, None left
    out, dates as ISO text) of a call."""
    path = ENDPOINTS[endpoint_name].format(
        **{name: quote(str(value), safe="") for name, value in path_params.items()}
    )
    params = {
        ("from" if name == "from_" else name): _query_value(value)
        for name, value in query.items()
        if value is not None
    }
    return path, params


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: a number of seconds or an HTTP date
    (a date in the past is 0); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _query_value(value: Any) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def body_adapter(response_type: type[Body]) -> TypeAdapter[Body]:
    # Built once per type: a TypeAdapter compiles a validator.
    if response_type not in _ADAPTERS:
        _ADAPTERS[response_type] = TypeAdapter(response_type)
    return _ADAPTERS[response_type]


__all__ = [
    "ENDPOINTS",
    "HTTP_METHODS",
    "AnalyticsClient",
    "ConversationFilters",
    "RetryPolicy",
    "parse_retry_after",
]
