"""A typed client for the analytics-assets read API: `AnalyticsClient`, the response models
(named as in the API's OpenAPI spec) and the errors it raises."""

from analytics_assets_client._version import __version__
from analytics_assets_client.async_client import AsyncAnalyticsClient
from analytics_assets_client.client import (
    ENDPOINTS,
    AnalyticsClient,
    ConversationFilters,
    RetryPolicy,
    parse_retry_after,
)
from analytics_assets_client.errors import (
    AnalyticsClientError,
    ApiConnectionError,
    ApiError,
    AuthenticationError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ServiceUnavailableError,
)
from analytics_assets_client.models import (
    SCHEMAS,
    Categories,
    ConversationDetail,
    ConversationPage,
    ConversationSummary,
    Count,
    Dashboard,
    DashboardCount,
    DashboardModelPeriod,
    DashboardTotals,
    DashboardVolume,
    ErrorBody,
    ErrorDetail,
    Health,
    Message,
    ModelComparison,
    ModelComparisonRow,
    Report,
    Series,
    SeriesPoint,
    UserAnalytics,
    UserPeriod,
)

# Shorter names for the bodies used most.
Conversation = ConversationDetail
Error = ErrorBody

__all__ = [
    "ENDPOINTS",
    "SCHEMAS",
    "AnalyticsClient",
    "AnalyticsClientError",
    "ApiConnectionError",
    "ApiError",
    "AsyncAnalyticsClient",
    "AuthenticationError",
    "Categories",
    "Conversation",
    "ConversationDetail",
    "ConversationFilters",
    "ConversationPage",
    "ConversationSummary",
    "Count",
    "Dashboard",
    "DashboardCount",
    "DashboardModelPeriod",
    "DashboardTotals",
    "DashboardVolume",
    "Error",
    "ErrorBody",
    "ErrorDetail",
    "Health",
    "InvalidRequestError",
    "Message",
    "ModelComparison",
    "ModelComparisonRow",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "Report",
    "RetryPolicy",
    "Series",
    "SeriesPoint",
    "ServiceUnavailableError",
    "UserAnalytics",
    "UserPeriod",
    "__version__",
    "parse_retry_after",
]
