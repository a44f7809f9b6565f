"""Alert messages and their delivery over HTTP (HMAC-signed JSON) and SMTP.

Pure: no Dagster. An `Alert` carries only names and numbers (a check's metadata values),
never record contents. Delivery errors are raised as `DeliveryError` whose text holds no
secret (no token, password or signing key), so callers may log it.
"""

from __future__ import annotations

import hashlib
import json
import math
import smtplib
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from email.message import EmailMessage
from typing import Any

# One signature for every outgoing webhook, the subscriptions' (webhooks/) and this one;
# re-exported here for the alerts' callers.
from analytics_assets.webhooks.signing import (  # noqa: F401
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    WEBHOOK_OPENER,
    sign_body,
    signature_headers,
    verify_signature,
)

SEVERITIES = ("WARN", "ERROR")


class DeliveryError(Exception):
    """A sink could not take the alert; the message names the sink, never a secret."""


@dataclass(frozen=True)
class Alert:
    # "asset_check_failed" | "run_failed" | "stale_report" | "sensor_failing" | "schedule_failing"
    kind: str
    title: str
    asset: str | None = None
    partition: str | None = None
    check: str | None = None
    severity: str = "ERROR"
    run_id: str | None = None
    job: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)
    link: str | None = None
    # What makes two alerts the same event where the fields above do not (a sensor that
    # fails again a day later, with the same error); None: the fields alone.
    occurrence: str | None = None

    @property
    def alert_id(self) -> str:
        """The same for every delivery of this alert, a retry's too: a receiver drops the
        copies it already has by it."""
        fields = (self.kind, self.title, self.asset, self.partition, self.check,
                  self.run_id, self.job, self.occurrence)  # fmt: skip
        return hashlib.sha256(json.dumps(fields).encode()).hexdigest()[:24]

    def to_dict(self) -> dict[str, Any]:
        """As JSON can carry it: a ratio over a zero median was `inf`, which `json.dumps`
        wrote as `Infinity`, and strict parsers (JavaScript's, Go's) refused the alert."""
        numbers = {
            name: str(value) if isinstance(value, float) and not math.isfinite(value) else value
            for name, value in self.numbers.items()
        }
        return {"id": self.alert_id, **asdict(self), "numbers": numbers}


def run_link(ui_url: str | None, run_id: str | None) -> str | None:
    if not ui_url or not run_id:
        return None
    return f"{ui_url.rstrip('/')}/runs/{run_id}"


def severity_passes(severity: str, min_severity: str) -> bool:
    """ERROR always passes; WARN only when the minimum is WARN."""
    return SEVERITIES.index(severity.upper()) >= SEVERITIES.index(min_severity.upper())


def build_message(alert: Alert) -> str:
    """A short plain-text body, the same for Slack and e-mail."""
    lines = [alert.title]
    for label, value in (
        ("asset", alert.asset),
        ("partition", alert.partition),
        ("check", alert.check),
        ("severity", alert.severity if alert.check else None),
        ("job", alert.job),
        ("run", alert.run_id),
    ):
        if value:
            lines.append(f"{label}: {value}")
    for name, value in sorted(alert.numbers.items()):
        lines.append(f"  {name} = {value}")
    if alert.link:
        lines.append(f"link: {alert.link}")
    return "\n".join(lines)


def deliver_webhook(url: str, secret: str | None, alert: Alert, *, timeout_s: float = 10) -> None:
    body = json.dumps(alert.to_dict(), sort_keys=True, default=str, allow_nan=False).encode()
    headers = {"Content-Type": "application/json"}
    if secret:
        headers.update(signature_headers(secret, body, int(time.time())))
    try:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        with WEBHOOK_OPENER.open(request, timeout=timeout_s) as response:
            response.read()
    except urllib.error.HTTPError as error:
        moved = " (a redirect: give the URL it points to)" if 300 <= error.code < 400 else ""
        raise DeliveryError(f"webhook answered HTTP {error.code}{moved}") from None
    except (urllib.error.URLError, OSError) as error:
        raise DeliveryError(f"webhook unreachable ({type(error).__name__})") from None
    except ValueError as error:
        # A URL without a scheme, or with a space: urllib's message quotes the URL, whose
        # path holds the token. Only the kind of error is said.
        raise DeliveryError(f"webhook URL is not usable ({type(error).__name__})") from None


def deliver_email(
    *,
    host: str,
    port: int,
    sender: str,
    recipients: list[str],
    alert: Alert,
    user: str | None = None,
    password: str | None = None,
    starttls: bool = False,
    ssl: bool = False,
    timeout_s: float = 10,
) -> list[str]:
    """`ssl`: TLS from the first byte (port 465); `starttls`: upgraded before the login
    (port 587); neither: plain, for a relay on a trusted network.

    Returns the recipients the server refused while it took the message for the others
    (smtplib raises only when it refuses every one): a mistyped address on-call never
    hears from must be said somewhere."""
    message = EmailMessage()
    message["Subject"] = alert.title
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message.set_content(build_message(alert))
    connect = smtplib.SMTP_SSL if ssl else smtplib.SMTP
    try:
        with connect(host, port, timeout=timeout_s) as smtp:
            if starttls and not ssl:
                smtp.starttls()
            if user and password:
                smtp.login(user, password)
            refused = smtp.send_message(message)
    except (smtplib.SMTPException, OSError) as error:
        raise DeliveryError(f"SMTP delivery failed ({type(error).__name__})") from None
    return sorted(refused)


def deliver_slack(
    token: str, channel: str, alert: Alert, *, base_url: str | None = None, timeout_s: float = 10
) -> None:
    """Post the message with Slack's Web API (`chat.postMessage`, the client dagster-slack
    wraps); `base_url` points it elsewhere (a test's fake)."""
    from slack_sdk import WebClient
    from slack_sdk.errors import SlackApiError

    kwargs = {"base_url": base_url} if base_url else {}
    client = WebClient(token=token, timeout=int(timeout_s), **kwargs)
    try:
        client.chat_postMessage(channel=channel, text=build_message(alert))
    except SlackApiError as error:
        raise DeliveryError(f"Slack refused the alert ({error.response.get('error')})") from None
    except OSError as error:
        raise DeliveryError(f"Slack unreachable ({type(error).__name__})") from None
