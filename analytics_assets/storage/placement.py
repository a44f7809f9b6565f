"""Which assets go where: every asset goes to the lake; these also go to MongoDB.

The one place that decides it. An asset listed here uses the `lake_and_mongo_io_manager`
and is mirrored into the named collection; the rest use the `lake_io_manager` only.
"""

from __future__ import annotations

MONGO_COLLECTION_OF_ASSET: dict[str, str] = {
    "conversation_messages": "conversation_messages",
    "conversation_analytics": "conversation_analytics",
    "conversation_categories": "conversation_categories",
    "daily_report": "analytics_reports",
    "weekly_report": "analytics_reports",
    "monthly_report": "analytics_reports",
    "user_analytics": "user_analytics",
    "processing_errors": "processing_errors",
    "conversation_translations": "conversation_translations",
    "translation_errors": "processing_errors",
}
# Assets that share a collection each replace only their own documents in it.
MONGO_SLICE_SCOPE_OF_ASSET: dict[str, dict[str, str]] = {
    "processing_errors": {"stage": "validate"},
    "translation_errors": {"stage": "translate"},
}

LAKE_IO_MANAGER = "lake_io_manager"
LAKE_AND_MONGO_IO_MANAGER = "lake_and_mongo_io_manager"


def io_manager_key(asset_name: str) -> str:
    if asset_name in MONGO_COLLECTION_OF_ASSET:
        return LAKE_AND_MONGO_IO_MANAGER
    return LAKE_IO_MANAGER
