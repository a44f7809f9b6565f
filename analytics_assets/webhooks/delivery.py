"""Enqueueing events for their subscribers and delivering what is due: signed, with short
timeouts, concurrently, retried on a deterministic exponential backoff (no jitter) and
dead-lettered after the last attempt.

One document per (subscription, event) in `webhook_deliveries` is the delivery log: its
status (pending, delivered, dead, cancelled), when it is next due, and every attempt (time,
HTTP status or error, duration). Every attempt sends the same body with a fresh timestamp
and signature, so a retry hours later is not refused as a replay. Time is passed in (`now`,
epoch seconds), which makes the schedule testable. Pure: no Dagster.
"""

from __future__ import annotations

import http.client
import time
import urllib.error
import urllib.request
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pymongo.database import Database
from pymongo.errors import DuplicateKeyError

from analytics_assets.webhooks import subscriptions
from analytics_assets.webhooks.events import Event
from analytics_assets.webhooks.signing import WEBHOOK_OPENER, signature_headers
from analytics_assets.webhooks.subscriptions import DEAD_LETTERS, DELIVERIES, SUBSCRIPTIONS

EVENT_HEADER = "X-Analytics-Event"
DELIVERY_HEADER = "X-Analytics-Delivery"
USER_AGENT = "analytics-assets-webhooks/1"
# Attempt n+1 is due this long after attempt n failed: 1, 2, 4, ... minutes, at most an hour.
# Deterministic (no jitter): the sensor's ticks spread the sends anyway.
BACKOFF_BASE_S = 60
BACKOFF_CAP_S = 3600
MAX_ATTEMPTS = 8
TIMEOUT_S = 5.0
CONCURRENCY = 8
BATCH = 64  # deliveries one pass sends at most: a pass stays within a sensor tick


def _ms(epoch: float) -> float:
    # Times are kept to the millisecond: a value written with $set comes back from some
    # MongoDB-compatible servers (nx-27017) with 15 significant digits, microseconds lost,
    # and a due time must compare the same after the round trip.
    return round(epoch, 3)


def backoff_s(failed_attempts: int, *, base_s: float = BACKOFF_BASE_S,
              cap_s: float = BACKOFF_CAP_S) -> float:  # fmt: skip
    """Seconds from the `failed_attempts`-th failure to the next attempt."""
    return min(cap_s, base_s * 2 ** (failed_attempts - 1))


def retry_schedule(max_attempts: int = MAX_ATTEMPTS, **backoff) -> list[float]:
    """Seconds after the first attempt at which each attempt is due (the first at 0)."""
    due, schedule = 0.0, [0.0]
    for failed in range(1, max_attempts):
        due += backoff_s(failed, **backoff)
        schedule.append(due)
    return schedule


def enqueue(db: Database, event: Event, *, now: float) -> int:
    """One pending delivery of `event` per subscriber; returns how many were new (an event
    enqueued again, e.g. after a crash before the sensor's cursor moved, adds nothing)."""
    body = event.body().decode()
    now = _ms(now)
    added = 0
    for subscription in subscriptions.subscribers(db, event.type, event.occurred_at):
        try:
            db[DELIVERIES].insert_one(
                {
                    "_id": f"{subscription['_id']}:{event.id}",
                    "subscription_id": subscription["_id"],
                    "event_id": event.id,
                    "event_type": event.type,
                    "body": body,
                    "status": "pending",
                    "attempts": [],
                    "created_at": now,
                    "next_attempt_at": now,
                    "delivered_at": None,
                }
            )
            added += 1
        except DuplicateKeyError:
            pass
    return added


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def post(url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> Attempt:
    """One POST; never raises. The error text names the failure's kind, never the secret."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    started = time.perf_counter()

    def elapsed() -> int:
        return round((time.perf_counter() - started) * 1000)

    try:
        with WEBHOOK_OPENER.open(request, timeout=timeout_s) as response:
            response.read(64 * 1024)
            return Attempt(response.status, None, elapsed())
    except urllib.error.HTTPError as error:
        return Attempt(error.code, f"HTTP {error.code}", elapsed())
    except TimeoutError:
        return Attempt(None, f"timed out after {timeout_s:g} s", elapsed())
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, TimeoutError):
            return Attempt(None, f"timed out after {timeout_s:g} s", elapsed())
        return Attempt(None, f"unreachable ({type(reason).__name__})", elapsed())
    except OSError as error:
        return Attempt(None, f"connection failed ({type(error).__name__})", elapsed())
    except http.client.HTTPException as error:
        # A receiver that does not speak HTTP (`BadStatusLine`) or sends a header line longer
        # than it reads (`LineTooLong`): urllib lets these through, and one raised out of the pass
        # recorded nothing, not even the other receivers' deliveries.
        return Attempt(None, f"not a valid HTTP response ({type(error).__name__})", elapsed())


@dataclass(frozen=True)
class PassOutcome:
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    cancelled: int = 0  # their subscription was removed in the meantime


def deliver_pending(
    db: Database,
    now: float,
    *,
    timeout_s: float = TIMEOUT_S,
    concurrency: int = CONCURRENCY,
    max_attempts: int = MAX_ATTEMPTS,
    backoff_base_s: float = BACKOFF_BASE_S,
    batch: int = BATCH,
) -> PassOutcome:
    """Sends every pending delivery due at `now` (oldest first, at most `batch`), each on
    its own thread so that a receiver that hangs costs its own `timeout_s`, not the others'.
    A 2xx is delivered; anything else is retried on the backoff, and dead-lettered once
    `max_attempts` attempts failed."""
    now = _ms(now)
    due = list(
        db[DELIVERIES]
        .find({"status": "pending", "next_attempt_at": {"$lte": now}})
        .sort([("next_attempt_at", 1), ("_id", 1)])
        .limit(batch)
    )
    if not due:
        return PassOutcome()
    secrets = _secrets(db, {d["subscription_id"] for d in due})

    def send(delivery: dict) -> tuple[dict, Attempt]:
        subscription = secrets.get(delivery["subscription_id"])
        if subscription is None:  # removed since it was enqueued
            return delivery, Attempt(None, "subscription removed", 0)
        body = delivery["body"].encode()
        headers = {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            EVENT_HEADER: delivery["event_type"],
            DELIVERY_HEADER: delivery["event_id"],
            **signature_headers(subscription["secret"], body, int(now)),
        }
        try:
            return delivery, post(subscription["url"], body, headers, timeout_s)
        except Exception as error:
            # Whatever one receiver raises, the pass records every delivery it made.
            return delivery, Attempt(None, f"failed ({type(error).__name__})", 0)

    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(due)))) as pool:
        results = list(pool.map(send, due))
    counts = {"delivered": 0, "retrying": 0, "dead": 0, "cancelled": 0}
    for delivery, attempt in results:
        outcome = _record(db, delivery, attempt, now, max_attempts, backoff_base_s,
                          removed=delivery["subscription_id"] not in secrets)  # fmt: skip
        counts[outcome] += 1
    return PassOutcome(**counts)


def _secrets(db: Database, subscription_ids: Iterable[str]) -> dict[str, dict]:
    found = db[SUBSCRIPTIONS].find({"_id": {"$in": sorted(subscription_ids)}})
    return {s["_id"]: s for s in found if s.get("active") and s.get("secret")}


def _record(
    db: Database,
    delivery: dict,
    attempt: Attempt,
    now: float,
    max_attempts: int,
    backoff_base_s: float,
    *,
    removed: bool,
) -> str:
    if removed:
        db[DELIVERIES].update_one(
            {"_id": delivery["_id"]}, {"$set": {"status": "cancelled", "next_attempt_at": None}}
        )
        return "cancelled"
    attempts = [
        *delivery["attempts"],
        {
            "number": len(delivery["attempts"]) + 1,
            "at": now,
            "status_code": attempt.status_code,
            "error": attempt.error,
            "duration_ms": attempt.duration_ms,
        },
    ]
    update = {"attempts": attempts}
    if attempt.ok:
        outcome = "delivered"
        update.update(status="delivered", delivered_at=now, next_attempt_at=None)
    elif len(attempts) < max_attempts:
        outcome = "retrying"
        update["next_attempt_at"] = _ms(now + backoff_s(len(attempts), base_s=backoff_base_s))
    else:
        outcome = "dead"
        update.update(status="dead", next_attempt_at=None)
        dead_letter = {
            "subscription_id": delivery["subscription_id"],
            "event_id": delivery["event_id"],
            "event_type": delivery["event_type"],
            "body": delivery["body"],
            "attempts": len(attempts),
            "last_status_code": attempt.status_code,
            "last_error": attempt.error,
            "dead_at": now,
        }
        db[DEAD_LETTERS].update_one({"_id": delivery["_id"]}, {"$set": dead_letter}, upsert=True)
    db[DELIVERIES].update_one({"_id": delivery["_id"]}, {"$set": update})
    return outcome
