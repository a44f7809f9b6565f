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
from pymongo.errors import BulkWriteError

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


# Documents re-keyed per batch: each batch is inserted under its new keys, then the old
# documents are deleted.
REKEY_BATCH = 5_000
DUPLICATE_KEY = 11000


def _rekey(db: Database, name: str, new_id: Callable[[dict], str | None]) -> int:
    """Stores every document of `name` whose `_id` differs from `new_id(document)` under the
    new `_id`, then deletes it under the old one; returns how many. A re-run after a crash
    finds the batch it was inserting already stored (a duplicate key, skipped) and deletes
    the old copies. Readers may see a document under both keys between the two steps."""
    collection = db[name]
    moves = []
    for document in collection.find({}):
        target = new_id(document)
        if target is not None and target != document["_id"]:
            moves.append((document["_id"], target))
    for start in range(0, len(moves), REKEY_BATCH):
        batch = dict(moves[start : start + REKEY_BATCH])
        documents = [
            {**document, "_id": batch[document["_id"]]}
            for document in collection.find({"_id": {"$in": list(batch)}})
        ]
        try:
            collection.insert_many(documents, ordered=False)
        except BulkWriteError as error:
            if any(e.get("code") != DUPLICATE_KEY for e in error.details.get("writeErrors", [])):
                raise
        collection.delete_many({"_id": {"$in": list(batch)}})
    return len(moves)


def _refusal_key(error: dict) -> str | None:
    """A store-stage refusal names the refused document's key, and the keys of messages and
    translations now hold the conversation: the refusal is moved to the document's new key,
    so storing the document clears it. None where it already names a new key, or where the
    former key cannot be split back into its fields (a translation key whose values held a
    `:`, joined unescaped: it stays as it is until retention removes it)."""
    table, conversation, key = (error.get(name) for name in ("table", "conversation_id",
                                                             "record_key"))  # fmt: skip
    if table not in _FORMER_ID_FIELDS or conversation is None or key is None:
        return None
    spec, former_fields = COLLECTIONS[table], _FORMER_ID_FIELDS[table]
    if len(former_fields) == 1:
        # The message id alone; a new key ends with its conversation.
        ending = spec.document_id({"message_id": "", "conversation_id": conversation})
        if str(key).endswith(ending):
            return None
        values = {former_fields[0]: key}
    else:
        parts = str(key).split(":")
        # A new key has one more field, so more separators than a former one can have.
        if len(parts) != len(former_fields):
            return None
        values = dict(zip(former_fields, parts, strict=True))
    return spec.document_id({**values, "conversation_id": conversation})


def _key_by_every_id_field(db: Database, action: ValidationAction) -> None:
    """`conversation_messages` and `conversation_translations` are keyed by the message and
    its conversation (they were keyed by the message id: one id in two conversations on two
    days was one document), and a key of several fields escapes `\\` and `:` inside a value
    (`CollectionSpec.document_id`). The documents stored before are stored again under their
    new keys, so a write finds and replaces them rather than adding a second copy; the
    store-stage refusals of those documents name the new keys, so storing the document
    clears its refusal. Reads every document of the collections whose key has several
    fields, once."""
    errors = COLLECTIONS["processing_errors"]
    refusals = db[errors.name]
    rekeyed_tables = {"$in": list(_FORMER_ID_FIELDS)}
    for error in list(refusals.find({"table": rekeyed_tables, "stage": "store"})):
        key = _refusal_key(error)
        if key is None:
            continue
        moved = {name: value for name, value in error.items() if name != "_id"}
        moved["record_key"] = key
        # Stored under its new key first, as `_rekey` does (a crash in between leaves both,
        # and a re-run moves the old one again); `$set`, as refusals are written (nx-27017
        # stores a replacing upsert twice).
        refusals.update_one({"_id": errors.document_id(moved)}, {"$set": moved}, upsert=True)
        refusals.delete_one({"_id": error["_id"]})
    for spec in COLLECTIONS.values():
        if len(spec.id_fields) > 1:
            _rekey(db, spec.name, lambda document, spec=spec: _former_key_to_new(spec, document))


# What the collections keyed by the conversation too were keyed by before 2026-12-07.
_FORMER_ID_FIELDS = {
    "conversation_messages": ("message_id",),
    "conversation_translations": (
        "message_id",
        "target_language",
        "translator",
        "translator_version",
    ),
}


def _former_key_to_new(spec, document: dict) -> str | None:
    """The document's new key where its `_id` is the key the writer made before (the fields
    joined by `:` unescaped, or a former set of fields); None for any other `_id` (one an
    operator or an older layout gave it, which no write would find either way)."""
    if any(name not in document for name in spec.id_fields):
        return None
    former_fields = _FORMER_ID_FIELDS.get(spec.name, spec.id_fields)
    former = ":".join(str(document[name]) for name in former_fields)
    return spec.document_id(document) if document["_id"] == former else None


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
    Migration(
        6,
        "conversation_messages and conversation_translations keyed by message and "
        "conversation; keys of several fields escape `\\` and `:`",
        _key_by_every_id_field,
    ),
    Migration(
        7,
        "conversation_messages' validator accepts the `tool` role",
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
