"""The one HMAC-SHA256 signature of outgoing webhooks (alerts and subscriptions alike), and
the one way they are sent (`WEBHOOK_OPENER`: a redirect is an answer, never followed).

A body is signed with its timestamp: `sha256=<hex>` of HMAC-SHA256 over `<timestamp>.<raw
body>`. A receiver recomputes it and refuses a timestamp older than the tolerance, so a
captured request cannot be replayed later. Pure: no Dagster.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import urllib.request

SIGNATURE_HEADER = "X-Analytics-Signature"
TIMESTAMP_HEADER = "X-Analytics-Timestamp"
DEFAULT_TOLERANCE_S = 300


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a delivery. urllib follows a 301/302/303 answer to a
    POST with a GET without the body, to wherever it points and with the signature headers,
    and a caller reading that GET's 200 counted the body as delivered."""

    def redirect_request(self, *args, **kwargs):
        return None  # urllib raises the 3xx as an HTTPError


WEBHOOK_OPENER = urllib.request.build_opener(_NoRedirects)


def sign_body(secret: str, body: bytes, timestamp: int) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over `<timestamp>.<raw body>`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def signature_headers(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign_body(secret, body, timestamp)}


def verify_signature(
    secret: str,
    body: bytes,
    timestamp: str,
    signature: str,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """What a receiver does: a fresh timestamp (within `tolerance_s` of `now`, the current
    time if None) and a matching signature, compared in constant time."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign_body(secret, body, ts), signature or "")
