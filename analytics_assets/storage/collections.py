"""The MongoDB collections the product serves: document shape, validator and indexes.

The `$jsonSchema` here is installed on the server by the migrations and also checked by the
IO manager before every write (the loopback test server accepts validators but does not
enforce them, and a client-side check names the bad field before the server would).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pymongo import ASCENDING, DESCENDING, IndexModel

from analytics_assets.keys import joined_key
from analytics_assets.sources.schema import MESSAGE_ROLES

# Every document carries the UTC day it belongs to ("YYYY-MM-DD") and the run that wrote it.
DAY_FIELD = "day"
RUN_FIELD = "written_by_run"

_STRING = {"bsonType": "string"}
_NULLABLE_STRING = {"bsonType": ["string", "null"]}
_DATE = {"bsonType": "date"}
_NULLABLE_DATE = {"bsonType": ["date", "null"]}
_COUNT = {"bsonType": ["int", "long"], "minimum": 0}
_NULLABLE_COUNT = {"bsonType": ["int", "long", "null"], "minimum": 0}
_NULLABLE_NUMBER = {"bsonType": ["double", "int", "long", "null"]}
_NULLABLE_SCORE = {"bsonType": ["double", "null"], "minimum": 0, "maximum": 1}
_DAY = {"bsonType": "string", "pattern": r"^\d{4}-\d{2}-\d{2}$"}
_CONFIDENCE = {"bsonType": ["double", "null"], "minimum": 0, "maximum": 1}


def _schema(required: list[str], properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "bsonType": "object",
        "required": ["_id", DAY_FIELD, *required],
        "properties": {
            "_id": _STRING,
            DAY_FIELD: _DAY,
            RUN_FIELD: _NULLABLE_STRING,
            **properties,
        },
    }


@dataclass(frozen=True)
class CollectionSpec:
    name: str
    # Fields whose values, joined, make the deterministic `_id` of a document.
    id_fields: tuple[str, ...]
    json_schema: dict[str, Any]
    indexes: list[IndexModel] = field(default_factory=list)
    description: str = ""
    # The part of a day an asset owns when the collection has other writers too: fixed
    # values, and fields whose (single) value is taken from the frame being written.
    slice_scope: dict[str, Any] = field(default_factory=dict)
    slice_by: tuple[str, ...] = ()
    # (time field, id field): keep, per day, the documents' keys in that order in
    # `DAY_INDEX_COLLECTION`, so a page of one or a few days is read by `_id` (see
    # `storage/day_index.py`) instead of a range query the embedded server answers by scanning.
    day_index: tuple[str, str] | None = None
    # Fields whose values the day index keeps with each key, so a page filtered by them is
    # read from the lists too (`storage/day_index.py`).
    day_index_labels: tuple[str, ...] = ()

    def document_id(self, document: dict[str, Any]) -> str:
        """The fields' values joined as `keys.joined_key` joins ids (`:`, each `\\` and `:`
        inside a value escaped): message `a:b` of conversation `c` and message `a` of
        conversation `b:c` were both `a:b:c`, one document for two messages. A single field
        is its value as it is."""
        if len(self.id_fields) == 1:
            return str(document[self.id_fields[0]])
        return joined_key(*(str(document[name]) for name in self.id_fields))


def _index(*keys: tuple[str, int], **options: Any) -> IndexModel:
    name = "_".join(f"{key}_{direction}" for key, direction in keys)
    return IndexModel(list(keys), name=options.pop("name", name), **options)


COLLECTIONS: dict[str, CollectionSpec] = {
    spec.name: spec
    for spec in (
        CollectionSpec(
            name="conversation_messages",
            # The lake's key (`newest_copies`): a source that gives one message id to two
            # conversations on two days holds two messages, and keyed by the id alone the
            # second day's write replaced the first's, with no error and no failed check.
            # Migration 6 stores the documents kept under the id alone again under the new
            # key (`storage/migrations.py`).
            id_fields=("message_id", "conversation_id"),
            description="One document per message, as validated from the source.",
            json_schema=_schema(
                ["message_id", "conversation_id", "role", "created_at"],
                {
                    "message_id": _STRING,
                    "conversation_id": _STRING,
                    "role": {"enum": list(MESSAGE_ROLES)},
                    "content": {"bsonType": ["string", "null"], "maxLength": 1_000_000},
                    "model": _NULLABLE_STRING,
                    "created_at": _DATE,
                    "prompt_tokens": _NULLABLE_COUNT,
                    "completion_tokens": _NULLABLE_COUNT,
                    "latency_ms": _NULLABLE_NUMBER,
                    "feedback": {"enum": ["up", "down", None]},
                },
            ),
            indexes=[
                _index((DAY_FIELD, ASCENDING)),
                _index(("conversation_id", ASCENDING), ("created_at", ASCENDING)),
                # The API's conversation lookup: nx-27017 plans only single-field indexes.
                _index(("conversation_id", ASCENDING)),
                _index(("model", ASCENDING), (DAY_FIELD, ASCENDING)),
            ],
        ),
        CollectionSpec(
            name="conversation_analytics",
            id_fields=("conversation_id",),
            description="One document per conversation: its summary, later its scores.",
            json_schema=_schema(
                ["conversation_id", "user_id", "started_at"],
                {
                    "conversation_id": _STRING,
                    "user_id": _STRING,
                    "model": _NULLABLE_STRING,
                    "channel": _NULLABLE_STRING,
                    "started_at": _DATE,
                    "ended_at": _NULLABLE_DATE,
                    "duration_s": _NULLABLE_NUMBER,
                    "turns": _COUNT,
                    "message_count": _COUNT,
                    "prompt_tokens": _COUNT,
                    "completion_tokens": _COUNT,
                    "total_tokens": _COUNT,
                    "rating": {"bsonType": ["int", "null"], "minimum": 1, "maximum": 5},
                    "quality_score": _NULLABLE_SCORE,
                    "satisfaction_score": _NULLABLE_SCORE,
                },
            ),
            day_index=("started_at", "conversation_id"),
            day_index_labels=("topic", "intent", "sentiment", "language", "model", "channel"),
            indexes=[
                _index((DAY_FIELD, ASCENDING)),
                _index(("user_id", ASCENDING), ("started_at", DESCENDING)),
                _index(("model", ASCENDING), (DAY_FIELD, ASCENDING)),
                _index(("channel", ASCENDING), (DAY_FIELD, ASCENDING)),
                _index(("started_at", DESCENDING), ("conversation_id", DESCENDING)),
            ],
        ),
        CollectionSpec(
            name="conversation_categories",
            id_fields=("conversation_id",),
            description="Topic, intent, sentiment and language per conversation (issue 4).",
            json_schema=_schema(
                ["conversation_id"],
                {
                    "conversation_id": _STRING,
                    "topic": _NULLABLE_STRING,
                    "topic_confidence": _CONFIDENCE,
                    "intent": _NULLABLE_STRING,
                    "intent_confidence": _CONFIDENCE,
                    "sentiment": _NULLABLE_STRING,
                    "sentiment_confidence": _CONFIDENCE,
                    "language": _NULLABLE_STRING,
                    "language_confidence": _CONFIDENCE,
                    "method": _NULLABLE_STRING,
                    "model_version": _NULLABLE_STRING,
                },
            ),
            indexes=[
                _index((DAY_FIELD, ASCENDING)),
                _index(("topic", ASCENDING), (DAY_FIELD, ASCENDING)),
                _index(("intent", ASCENDING), (DAY_FIELD, ASCENDING)),
                _index(("language", ASCENDING), (DAY_FIELD, ASCENDING)),
            ],
        ),
        CollectionSpec(
            name="analytics_reports",
            id_fields=("kind", "period"),
            description="One document per report kind (daily/weekly/monthly) and period.",
            # A weekly report's day (its Monday) is also a daily report's day.
            slice_by=("kind",),
            json_schema=_schema(
                ["kind", "period"],
                {
                    "kind": {"enum": ["daily", "weekly", "monthly"]},
                    "period": _STRING,
                },
            ),
            indexes=[
                _index(("kind", ASCENDING), ("period", ASCENDING), unique=True),
                # The API's ranges: by kind and day (and by day alone for nx-27017).
                _index(("kind", ASCENDING), (DAY_FIELD, ASCENDING)),
                _index((DAY_FIELD, ASCENDING)),
            ],
        ),
        CollectionSpec(
            name="user_analytics",
            id_fields=("user_id", "period"),
            description="Per user and period: activity, topics, sentiment, retention.",
            json_schema=_schema(["user_id", "period"], {"user_id": _STRING, "period": _STRING}),
            indexes=[
                _index(("user_id", ASCENDING), ("period", ASCENDING)),
                _index(("user_id", ASCENDING)),  # the API's user lookup (as above)
                _index((DAY_FIELD, ASCENDING)),
            ],
        ),
        CollectionSpec(
            name="user_return_predictions",
            id_fields=("user_id", DAY_FIELD),
            description="Per user and day: the probability of returning within 7 days and "
            "the expected conversations in them, with the last-week baseline's numbers.",
            json_schema=_schema(
                ["user_id", "return_probability_7d", "expected_conversations_7d", "method"],
                {
                    "user_id": _STRING,
                    "return_probability_7d": {"bsonType": "double", "minimum": 0, "maximum": 1},
                    "expected_conversations_7d": {"bsonType": "double", "minimum": 0},
                    "method": {"enum": ["model", "baseline"]},
                    "count_method": {"enum": ["model", "baseline"]},
                },
            ),
            indexes=[
                _index(("user_id", ASCENDING), (DAY_FIELD, ASCENDING)),
                _index(("user_id", ASCENDING)),  # the API's user lookup (as above)
                _index((DAY_FIELD, ASCENDING)),
            ],
        ),
        CollectionSpec(
            name="conversation_translations",
            # message (of its conversation: a message id is one message within a
            # conversation only) × target language × translator version: a re-run replaces
            # its own translation, a better translator adds one and the old one stays as
            # history.
            id_fields=(
                "message_id",
                "conversation_id",
                "target_language",
                "translator",
                "translator_version",
            ),
            description="Message-level translations with their quality scores; `is_current` "
            "marks the one to show.",
            json_schema=_schema(
                ["message_id", "target_language", "translator", "text"],
                {
                    "message_id": _STRING,
                    "conversation_id": _NULLABLE_STRING,
                    "source_language": _STRING,
                    "target_language": _STRING,
                    "translator": _STRING,
                    "translator_version": _STRING,
                    "text": _STRING,
                    "is_current": {"bsonType": "bool"},
                },
            ),
            indexes=[
                _index(("conversation_id", ASCENDING), ("target_language", ASCENDING)),
                _index(("conversation_id", ASCENDING)),
                _index(("message_id", ASCENDING)),
                _index((DAY_FIELD, ASCENDING)),
            ],
        ),
        CollectionSpec(
            name="processing_errors",
            # The day goes last: nx-27017 mangles a string `_id` that starts with a date.
            id_fields=("table", "stage", "record_key", DAY_FIELD),
            # The asset writes the pipeline's rejections; documents a collection refused
            # (stage "store") come from the IO manager and must survive the asset's replace.
            slice_scope={"stage": "validate"},
            description="Every rejected record, or one kept with a value left empty: table, ids, "
            "stage, reason.",
            json_schema=_schema(
                ["table", "stage", "reason"],
                {
                    "table": _STRING,
                    "stage": _STRING,
                    "record_key": _STRING,
                    "conversation_id": _NULLABLE_STRING,
                    "reason": _STRING,
                },
            ),
            indexes=[
                _index((DAY_FIELD, ASCENDING)),
                _index(("conversation_id", ASCENDING)),
                _index(("stage", ASCENDING), (DAY_FIELD, ASCENDING)),
            ],
        ),
    )
}
