"""Alerts' definitions: one sensor sending failed asset checks (ERROR, WARN optionally), the
daily report's failed freshness check (a stale report) and failed runs to every sink the
settings configure. With no sink configured the sensor is stopped and skips."""

from __future__ import annotations

from dagster import Definitions

from analytics_assets.alerts.core import Alert, deliver_email, deliver_slack, deliver_webhook
from analytics_assets.defs.alerts.sensors import Sink, build_check_alert_sensor, named_sink
from analytics_assets.settings import Settings, get_settings


def _secret(value) -> str | None:
    return value.get_secret_value() if value is not None else None


def sinks_for(settings: Settings) -> list[Sink]:
    """The configured sinks, each named; secrets are read here and never logged or put in
    metadata."""
    sinks: list[Sink] = []
    if settings.alert_webhook_url:
        url, secret = settings.alert_webhook_url, _secret(settings.alert_webhook_secret)
        sinks.append(named_sink("webhook", lambda alert: deliver_webhook(url, secret, alert)))
    if settings.alert_smtp_host and settings.alert_smtp_from and settings.alert_smtp_to:
        user, password = settings.alert_smtp_user, _secret(settings.alert_smtp_password)
        security = settings.alert_smtp_security
        if security == "auto":
            security = (
                "ssl"
                if settings.alert_smtp_port == 465
                else "starttls"
                if user and password
                else "none"
            )

        def email(alert: Alert) -> str | None:
            refused = deliver_email(
                host=settings.alert_smtp_host,
                port=settings.alert_smtp_port,
                sender=settings.alert_smtp_from,
                recipients=settings.alert_smtp_to,
                user=user,
                password=password,
                starttls=security == "starttls",
                ssl=security == "ssl",
                alert=alert,
            )
            if not refused:
                return None
            # The addresses are the operator's own settings, not anyone's data.
            return (
                f"the mail server refused {len(refused)} of {len(settings.alert_smtp_to)} "
                f"recipients: {', '.join(refused)}"
            )

        sinks.append(named_sink("email", email))
    if settings.alert_slack_token and settings.alert_slack_channel:
        token, channel = _secret(settings.alert_slack_token), settings.alert_slack_channel
        sinks.append(named_sink("slack", lambda alert: deliver_slack(token, channel, alert)))
    return sinks


def build_alert_definitions(settings: Settings) -> Definitions:
    return Definitions(
        sensors=[
            build_check_alert_sensor(
                sinks_for(settings),
                min_severity=settings.alert_min_severity,
                ui_url=settings.ui_url,
            )
        ]
    )


defs = build_alert_definitions(get_settings())
