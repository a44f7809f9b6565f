"""Versioned, idempotent MongoDB migrations; the applied versions live in the database.

Each migration may be re-run safely (create-if-missing, `create_indexes`, `collMod`), so a
migration interrupted half-way is simply applied again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from pymongo.database import Database

from analytics_assets.storage.collections import COLLECTIONS

MIGRATIONS_COLLECTION = "_schema_migrations"
ValidationAction = Literal["error", "warn"]


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    apply: Callable[[Database, ValidationAction], None]


def _create_collections(db: Database, action: ValidationAction) -> None:
    existing = set(db.list_collection_names())
    for spec in COLLECTIONS.values():
        validator = {"$jsonSchema": spec.json_schema}
        if spec.name in existing:
            db.command("collMod", spec.name, validator=validator, validationAction=action)
        else:
            db.create_collection(spec.name, validator=validator, validationAction=action)


def _create_indexes(db: Database, action: ValidationAction) -> None:
    for spec in COLLECTIONS.values():
        if spec.indexes:
            db[spec.name].create_indexes(spec.indexes)


def rename_field(db: Database, collection: str, old: str, new: str) -> int:
    """Renames a field in every document that still has the old name; returns the count."""
    result = db[collection].update_many({old: {"$exists": True}}, {"$rename": {old: new}})
    return result.modified_count


def _rename_error_key(db: Database, action: ValidationAction) -> None:
    # Early error documents called the rejected record's identity `key`.
    rename_field(db, "processing_errors", "key", "record_key")


def _reapply_collections_and_indexes(db: Database, action: ValidationAction) -> None:
    # Both steps are idempotent: existing collections get the current validator, and
    # create_indexes skips the indexes already there.
    _create_collections(db, action)
    _create_indexes(db, action)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "create the collections with their $jsonSchema validators", _create_collections),
    Migration(2, "create the indexes of the read paths", _create_indexes),
    Migration(3, "processing_errors: rename `key` to `record_key`", _rename_error_key),
    Migration(
        4,
        "conversation_translations' final validator; indexes for the read API",
        _reapply_collections_and_indexes,
    ),
    Migration(
        5,
        "user_return_predictions: its collection, validator and indexes",
        _reapply_collections_and_indexes,
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version


def applied_versions(db: Database) -> list[int]:
    return sorted(doc["_id"] for doc in db[MIGRATIONS_COLLECTION].find({}, projection={"_id": 1}))


def current_version(db: Database) -> int:
    versions = applied_versions(db)
    return versions[-1] if versions else 0


def pending(db: Database) -> list[Migration]:
    done = set(applied_versions(db))
    return [migration for migration in MIGRATIONS if migration.version not in done]


def migrate(
    db: Database, *, validation_action: ValidationAction = "error", target: int | None = None
) -> list[int]:
    """Applies the pending migrations up to `target` (default: all); returns those applied."""
    applied = []
    for migration in pending(db):
        if target is not None and migration.version > target:
            break
        migration.apply(db, validation_action)
        db[MIGRATIONS_COLLECTION].update_one(
            {"_id": migration.version},
            {
                "$set": {
                    "description": migration.description,
                    "applied_at": datetime.now(UTC),
                }
            },
            upsert=True,
        )
        applied.append(migration.version)
    return applied


def status_lines(db: Database) -> list[str]:
    done = set(applied_versions(db))
    return [
        f"{'applied' if m.version in done else 'pending'}  {m.version:>3}  {m.description}"
        for m in MIGRATIONS
    ]
