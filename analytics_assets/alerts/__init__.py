"""Alerts that reach people: message building, HMAC signing and delivery (pure; no Dagster)."""

from analytics_assets.alerts.core import (
    Alert,
    build_message,
    deliver_email,
    deliver_slack,
    deliver_webhook,
    sign_body,
    verify_signature,
)

__all__ = [
    "Alert",
    "build_message",
    "deliver_email",
    "deliver_slack",
    "deliver_webhook",
    "sign_body",
    "verify_signature",
]
