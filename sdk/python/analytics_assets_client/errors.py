"""What the client raises. An answer of the API that is an error becomes an `ApiError` (a
subclass per status the API documents) carrying the API's `error.code`, its message and the
HTTP status; an API that could not be reached, after the retries, an `ApiConnectionError`."""

from __future__ import annotations

import httpx


class AnalyticsClientError(Exception):
    """The base of everything this client raises."""


class ApiConnectionError(AnalyticsClientError):
    """No answer: the connection failed or timed out on every attempt."""


class ApiError(AnalyticsClientError):
    """The API answered with an error status.

    `code` is the API's machine-readable `error.code` (`unauthorized`, `not_found`,
    `rate_limited`, ...; `http_<status>` when the body is not the API's error body),
    `retry_after` the seconds the API asked to wait (429, 503), else None."""

    def __init__(
        self, status: int, code: str, message: str, *, retry_after: float | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class AuthenticationError(ApiError):
    """401: no key, or a key that is unknown, wrong or revoked."""


class PermissionDeniedError(ApiError):
    """403: the key lacks the endpoint's scope."""


class NotFoundError(ApiError):
    """404: no such conversation, report or user."""


class InvalidRequestError(ApiError):
    """422: a parameter the API refuses (pattern, range, unknown parameter, cursor)."""


class RateLimitError(ApiError):
    """429: the key's rate, or this address's failed authentications, ran out."""


class ServiceUnavailableError(ApiError):
    """503: the API or its database is not ready."""


ERRORS_BY_STATUS: dict[int, type[ApiError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    422: InvalidRequestError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_from_response(response: httpx.Response, retry_after: float | None) -> ApiError:
    """The exception for an error answer; its code and message are the API's when the body
    is `{"error": {"code", "message"}}`."""
    code, message = f"http_{response.status_code}", response.reason_phrase
    try:
        detail = response.json()["error"]
        code, message = str(detail["code"]), str(detail["message"])
    except (ValueError, KeyError, TypeError):
        pass
    error_class = ERRORS_BY_STATUS.get(response.status_code, ApiError)
    return error_class(response.status_code, code, message, retry_after=retry_after)
