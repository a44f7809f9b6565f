"""Retention: each table keeps its last N days, in the lake and in MongoDB.

The lake drops whole day folders. MongoDB deletes the documents of the expired days now, and
gets a TTL index on the collection's event time where it has one and no other writer, so a
real server keeps expiring documents between runs (the loopback test server accepts TTL
indexes but never expires anything, so the explicit delete is what the tests see).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from pymongo.database import Database
from pymongo.errors import OperationFailure

from analytics_assets import tables
from analytics_assets.storage.collections import DAY_FIELD
from analytics_assets.storage.day_index import DAY_INDEX_COLLECTION
from analytics_assets.storage.lake import Lake
from analytics_assets.storage.placement import MongoMirror, writers_of

# The reports share one collection; each kind keeps its own documents.
_REPORT_SCOPE = {
    tables.DAILY_REPORT: {"kind": "daily"},
    tables.WEEKLY_REPORT: {"kind": "weekly"},
    tables.MONTHLY_REPORT: {"kind": "monthly"},
}
# The event time a TTL index expires on, for collections that have one and a single writer
# (keyed by collection, not by asset).
TTL_FIELD = {"conversation_messages": "created_at", "conversation_analytics": "started_at"}


@dataclass
class RetentionResult:
    cutoff: dict[str, str] = field(default_factory=dict)
    lake_days_removed: dict[str, int] = field(default_factory=dict)
    mongo_documents_removed: dict[str, int] = field(default_factory=dict)
    ttl_indexes: dict[str, str] = field(default_factory=dict)


def _ttl_index(db: Database, collection: str, ttl_field: str) -> tuple[str, dict] | None:
    """The collection's TTL index on the field, found by its key (servers may rename it)."""
    for name, index in db[collection].index_information().items():
        if list(index["key"]) == [(ttl_field, 1)] and "expireAfterSeconds" in index:
            return name, index
    return None


def ensure_ttl_index(db: Database, collection: str, keep_days: int) -> str:
    """A TTL index on the collection's event time that expires after `keep_days`; changed in
    place when the retention changes (recreated where the server cannot change it)."""
    ttl_field = TTL_FIELD[collection]
    seconds = keep_days * 86400
    existing = _ttl_index(db, collection, ttl_field)
    if existing and existing[1]["expireAfterSeconds"] == seconds:
        return f"{existing[0]}: {keep_days} d"
    if existing:
        # A server that cannot change it in place (or says it did but did not, like the
        # loopback test server) gets it dropped and created again below.
        with contextlib.suppress(OperationFailure):
            db.command(
                "collMod", collection, index={"name": existing[0], "expireAfterSeconds": seconds}
            )
        changed = _ttl_index(db, collection, ttl_field)
        if changed and changed[1]["expireAfterSeconds"] == seconds:
            return f"{changed[0]}: changed to {keep_days} d"
        db[collection].drop_index(existing[0])
    name = db[collection].create_index(
        ttl_field, name=f"ttl_{ttl_field}", expireAfterSeconds=seconds
    )
    return f"{name}: created, {keep_days} d"


# Tables that quote what people wrote (cluster examples): an erasure scrubs them by the
# user's texts, which it reads from conversation_messages. Kept longer than the messages,
# they held texts no erasure could find any more; so they expire with the messages.
QUOTING_TABLES = (tables.TOPIC_DISCOVERY,)


def _with_quoting_tables(retention_days: dict[str, int]) -> dict[str, int]:
    messages = retention_days.get(tables.CONVERSATION_MESSAGES)
    if messages is None:
        return retention_days
    return retention_days | {
        table: min(retention_days.get(table, messages), messages) for table in QUOTING_TABLES
    }


def apply_retention(
    lake: Lake,
    db: Database,
    retention_days: dict[str, int],
    today: date,
    mirrors: dict[str, MongoMirror],
) -> RetentionResult:
    """Removes every day older than each table's retention, in the lake and in the table's
    MongoDB mirror (`mirrors`: asset -> collection); idempotent."""
    result = RetentionResult()
    for table, keep_days in sorted(_with_quoting_tables(retention_days).items()):
        if keep_days < 1:
            raise ValueError(f"retention of {table} must be at least 1 day, got {keep_days}")
        cutoff = today - timedelta(days=keep_days)
        result.cutoff[table] = cutoff.isoformat()
        expired = [day for day in lake.days_present(table) if day < cutoff]
        for day in expired:
            lake.delete_day(table, day)
        result.lake_days_removed[table] = len(expired)
        mirror = mirrors.get(table)
        if mirror is None:
            continue
        collection = mirror.collection
        scope: dict[str, Any] = {**mirror.slice_scope, **_REPORT_SCOPE.get(table, {})}
        removed = db[collection].delete_many({DAY_FIELD: {"$lt": cutoff.isoformat()}, **scope})
        result.mongo_documents_removed[table] = removed.deleted_count
        if table == tables.PROCESSING_ERRORS:
            # The documents MongoDB refused (stage `store`, written by the IO manager, not
            # by the asset) name conversations too, and expire with the errors.
            refused = db[collection].delete_many(
                {DAY_FIELD: {"$lt": cutoff.isoformat()}, "stage": "store"}
            )
            result.mongo_documents_removed[table] += refused.deleted_count
        # The day lists of those days go with them (storage/day_index.py).
        db[DAY_INDEX_COLLECTION].delete_many(
            {"collection": collection, DAY_FIELD: {"$lt": cutoff.isoformat()}}
        )
        if collection in TTL_FIELD and writers_of(mirrors, collection) == [table]:
            result.ttl_indexes[collection] = ensure_ttl_index(db, collection, keep_days)
    return result
