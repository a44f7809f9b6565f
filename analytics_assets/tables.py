"""The asset keys, one constant each; an asset's key is also its table's folder in the lake.

A MongoDB collection is a different thing, named in `storage/collections.py` (`COLLECTIONS`)
and given to `lake_and_mongo(...)`: several assets may share one collection, and a
collection's name may equal an asset's without naming it.

Pure: strings only, no Dagster.
"""

from __future__ import annotations

# Ingestion
NOCODB_RAW_PAGES = "nocodb_raw_pages"
CONVERSATION_MESSAGES = "conversation_messages"
CONVERSATION_HEADERS = "conversation_headers"
PROCESSING_ERRORS = "processing_errors"
USER_PSEUDONYMS = "user_pseudonyms"
CONVERSATIONS = "conversations"

# Translation
CONVERSATION_TRANSLATIONS = "conversation_translations"
TRANSLATION_ERRORS = "translation_errors"
CONVERSATION_LANGUAGES = "conversation_languages"

# Categorization
CONVERSATION_CATEGORIES = "conversation_categories"
MESSAGE_SIGNALS = "message_signals"
CATEGORY_HEADS = "category_heads"
TOPIC_DISCOVERY = "topic_discovery"

# Analytics
CONVERSATION_ANALYTICS = "conversation_analytics"
USER_ANALYTICS = "user_analytics"
USER_RETURN_PREDICTIONS = "user_return_predictions"
DAILY_REPORT = "daily_report"
WEEKLY_REPORT = "weekly_report"
MONTHLY_REPORT = "monthly_report"

# Privacy
PRIVACY_RETENTION = "privacy_retention"

# Operations
PROCESSING_STATS = "processing_stats"

# Storage: the run's MongoDB mirror, written behind the steps (defs/storage/mirror.py)
MONGO_MIRROR = "mongo_mirror"
