"""Where an asset is stored: always the lake; some assets also in a MongoDB collection.

Each asset's own definition says which, by spreading `lake_only()` or
`lake_and_mongo(collection)` into its decorator: that sets its IO manager and records the
collection in its definition metadata, where the IO manager reads it. Code that needs
every asset's collection (retention, the privacy checks, the demo's summary) derives the
map from the definitions (`defs/storage/placement.py`), so nothing keeps a second list.

Pure: plain dicts, no Dagster.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

LAKE_IO_MANAGER = "lake_io_manager"
LAKE_AND_MONGO_IO_MANAGER = "lake_and_mongo_io_manager"
MONGO_COLLECTION_KEY = "storage/mongo_collection"
MONGO_SLICE_SCOPE_KEY = "storage/mongo_slice_scope"


@dataclass(frozen=True)
class MongoMirror:
    """The collection an asset is mirrored into; `slice_scope` narrows the documents the
    asset owns where several assets share one collection (e.g. `{"stage": "validate"}`)."""

    collection: str
    slice_scope: dict[str, str] = field(default_factory=dict)


def lake_only() -> dict[str, Any]:
    return {"io_manager_key": LAKE_IO_MANAGER}


def mirror_metadata(collection: str, **slice_scope: str) -> dict[str, Any]:
    """The definition metadata that names an asset's collection (and its slice of it)."""
    metadata: dict[str, Any] = {MONGO_COLLECTION_KEY: collection}
    if slice_scope:
        metadata[MONGO_SLICE_SCOPE_KEY] = dict(slice_scope)
    return metadata


def lake_and_mongo(collection: str, **slice_scope: str) -> dict[str, Any]:
    """The lake, plus a mirror in `collection` (for what apps and dashboards read)."""
    return {
        "io_manager_key": LAKE_AND_MONGO_IO_MANAGER,
        "metadata": mirror_metadata(collection, **slice_scope),
    }


def _plain(value: Any) -> Any:
    # Dagster hands definition metadata back wrapped (TextMetadataValue, JsonMetadataValue).
    return getattr(value, "value", value)


def mirror_from_metadata(metadata: Mapping[str, Any]) -> MongoMirror | None:
    collection = metadata.get(MONGO_COLLECTION_KEY)
    if collection is None:
        return None
    scope = metadata.get(MONGO_SLICE_SCOPE_KEY)
    return MongoMirror(_plain(collection), dict(_plain(scope) or {}))


def writers_of(mirrors: Mapping[str, MongoMirror], collection: str) -> list[str]:
    """The assets mirrored into `collection`."""
    return sorted(asset for asset, mirror in mirrors.items() if mirror.collection == collection)
