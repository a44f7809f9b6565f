"""Checking a webhook delivery on the receiving side: `verify_webhook_signature`.

Every delivery carries `X-Analytics-Timestamp` (epoch seconds) and `X-Analytics-Signature`
(`sha256=<hex>` of HMAC-SHA256, keyed by the subscription's secret, over
`<timestamp>.<raw body>`). A receiver recomputes the signature over the bytes it received
(before any JSON parsing) and refuses a timestamp older than the tolerance, so that a
captured request cannot be replayed later. The same computation as the API's sender; the
SDK's tests check the one against the other."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Analytics-Signature"
TIMESTAMP_HEADER = "X-Analytics-Timestamp"
EVENT_HEADER = "X-Analytics-Event"
DELIVERY_HEADER = "X-Analytics-Delivery"
DEFAULT_TOLERANCE_S = 300


def webhook_signature(secret: str, body: bytes, timestamp: int) -> str:
    """`sha256=<hex>` of HMAC-SHA256 over `<timestamp>.<raw body>`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_webhook_signature(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
) -> bool:
    """True when the delivery is fresh (its timestamp within `tolerance_s` of `now`, the
    current time if None) and signed with `secret`; compared in constant time. `headers`
    is looked up without regard to case (frameworks differ); `body`: the raw bytes."""
    timestamp = _header(headers, TIMESTAMP_HEADER)
    signature = _header(headers, SIGNATURE_HEADER)
    try:
        ts = int(timestamp or "")
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance_s:
        return False
    # As bytes: a header with non-ASCII text is a mismatch, not a TypeError.
    expected = webhook_signature(secret, body, ts).encode()
    return hmac.compare_digest(expected, (signature or "").encode())


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    wanted = name.lower()
    return next((v for k, v in headers.items() if k.lower() == wanted), None)


__all__ = [
    "DEFAULT_TOLERANCE_S",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "verify_webhook_signature",
    "webhook_signature",
]
