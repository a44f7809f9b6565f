"""Webhook subscriptions in MongoDB: a URL, the events it wants and the secret its
deliveries are signed with.

The secret is generated here, returned once by `create` and otherwise never leaves the
collection: `list_subscriptions` and `get` project it away, and the delivery loop reads it
only to sign. Pure: no Dagster.
"""

from __future__ import annotations

import ipaddress
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from pymongo.database import Database

from analytics_assets.webhooks.events import EVENT_TYPES

SUBSCRIPTIONS = "webhook_subscriptions"
DELIVERIES = "webhook_deliveries"
DEAD_LETTERS = "webhook_dead_letters"
SUBSCRIPTION_ID_PATTERN = r"^wh_[0-9a-f]{12}$"
SECRET_PREFIX = "whsec_"
MAX_URL_LENGTH = 2048
PUBLIC_FIELDS = {"secret": False}
_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
# What the API's schema publishes: a subset of what `validate_url` accepts (no IPv6 literal,
# no user info, no fragment), so that every URL the schema allows is subscribed.
URL_PATTERN = (
    r"^https?://[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})*(:" + _PORT + r")?"
    r"(/[A-Za-z0-9._~!$&'()*+,;=:/?%-]*)?$"
)


class InvalidSubscription(ValueError):
    """A URL or an event list that cannot be subscribed; the message says why."""


@dataclass(frozen=True)
class Created:
    subscription: dict
    secret: str  # shown once: the caller hands it to the receiver


def validate_url(url: str) -> str:
    """http(s) with a host, no credentials, no fragment; returned unchanged."""
    if not isinstance(url, str) or not url or len(url) > MAX_URL_LENGTH:
        raise InvalidSubscription(f"the URL must be 1 to {MAX_URL_LENGTH} characters")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise InvalidSubscription("the URL may not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port  # raises on a port that is not a number or out of range
    except ValueError as error:
        raise InvalidSubscription(f"malformed URL ({error})") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidSubscription("only http and https URLs can receive webhooks")
    # A password in the URL would be stored, listed and logged with it: refused.
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidSubscription("credentials in the URL are refused; authenticate with the "
                                  "signature instead")  # fmt: skip
    if parts.fragment:
        raise InvalidSubscription("the URL may not have a fragment")
    if port == 0:
        raise InvalidSubscription("port 0 cannot receive")
    _validate_host(parts.hostname)
    return url


def _validate_host(host: str | None) -> None:
    if not host:
        raise InvalidSubscription("the URL has no host")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not all(label and len(label) <= 63 for label in host.split(".")):
            raise InvalidSubscription("the URL's host name is malformed") from None


def validate_events(events: list[str]) -> list[str]:
    chosen = sorted(set(events))
    unknown = [event for event in chosen if event not in EVENT_TYPES]
    if not chosen or unknown:
        raise InvalidSubscription(
            f"events must be one or more of {', '.join(EVENT_TYPES)}"
            + (f"; unknown: {', '.join(unknown)}" if unknown else "")
        )
    return chosen


def ensure_indexes(db: Database) -> None:
    db[DELIVERIES].create_index([("status", 1), ("next_attempt_at", 1)])
    db[DELIVERIES].create_index([("subscription_id", 1), ("created_at", -1)])
    db[DEAD_LETTERS].create_index([("subscription_id", 1), ("dead_at", -1)])


def create(
    db: Database, url: str, events: list[str], *, description: str = "", now: float | None = None
) -> Created:
    document = {
        "_id": "wh_" + secrets.token_hex(6),
        "url": validate_url(url),
        "events": validate_events(events),
        "description": description[:200],
        "created_at": round(time.time() if now is None else now, 3),
        "active": True,
    }
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    # The delivery log's indexes are made where it is written (the delivery sensor), by the
    # pipeline: the API's database user may insert and update subscriptions only.
    db[SUBSCRIPTIONS].insert_one({**document, "secret": secret})
    return Created(document, secret)


def list_subscriptions(db: Database) -> list[dict]:
    """The active subscriptions, oldest first, without their secrets."""
    found = db[SUBSCRIPTIONS].find({"active": True}, projection=PUBLIC_FIELDS)
    return sorted(found, key=lambda s: (s["created_at"], s["_id"]))


def get(db: Database, subscription_id: str) -> dict | None:
    """An active subscription without its secret, or None."""
    found = db[SUBSCRIPTIONS].find_one({"_id": subscription_id}, projection=PUBLIC_FIELDS)
    return found if found and found.get("active") else None


def remove(db: Database, subscription_id: str, *, now: float | None = None) -> bool:
    """Deactivates the subscription, forgets its secret and cancels what it had pending;
    its delivery log and dead letters stay (they hold no secret)."""
    if get(db, subscription_id) is None:
        return False
    removed_at = round(time.time() if now is None else now, 3)
    db[SUBSCRIPTIONS].update_one(
        {"_id": subscription_id},
        {"$set": {"active": False, "secret": None, "removed_at": removed_at}},
    )
    db[DELIVERIES].update_many(
        {"subscription_id": subscription_id, "status": "pending"},
        {"$set": {"status": "cancelled", "next_attempt_at": None}},
    )
    return True


def any_active(db: Database) -> bool:
    return db[SUBSCRIPTIONS].find_one({"active": True}, projection={"_id": True}) is not None


def subscribers(db: Database, event_type: str, occurred_at: float) -> list[dict]:
    """Active subscriptions to `event_type` that existed when it occurred (a new
    subscription gets what happens from then on, not the backlog), with their secrets."""
    return [
        subscription
        for subscription in db[SUBSCRIPTIONS].find({"active": True})
        if event_type in subscription["events"] and subscription["created_at"] <= occurred_at
    ]


def deliveries(db: Database, subscription_id: str, *, limit: int = 50) -> list[dict]:
    """The subscription's delivery log, newest first: one document per event, each attempt
    in it."""
    found = db[DELIVERIES].find({"subscription_id": subscription_id})
    return sorted(found, key=lambda d: (d["created_at"], d["_id"]), reverse=True)[:limit]


def dead_letters(db: Database, subscription_id: str | None = None, *, limit: int = 100):
    query = {"subscription_id": subscription_id} if subscription_id else {}
    found = db[DEAD_LETTERS].find(query)
    return sorted(found, key=lambda d: (d["dead_at"], d["_id"]), reverse=True)[:limit]
