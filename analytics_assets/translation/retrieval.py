"""A conversation with each message in the language asked for: the current translation where
one exists, the original otherwise (and it says which)."""

from __future__ import annotations

from typing import Any

import polars as pl

from analytics_assets import tables
from analytics_assets.categorization.language import detect_languages
from analytics_assets.transforms.records import newest_copies


def get_conversation(lake, conversation_id: str, lang: str | None = None) -> dict[str, Any] | None:
    """From the lake (`storage.lake.Lake`); None when no message of it is stored."""

    def scan(asset: str) -> pl.DataFrame:
        frame = lake.scan_all(asset)
        if not frame.collect_schema().names():
            return pl.DataFrame()
        return frame.filter(pl.col("conversation_id") == conversation_id).collect()

    messages = scan(tables.CONVERSATION_MESSAGES)
    if messages.is_empty():
        return None
    # Every day of the lake: a message NocoDB holds again after midnight is one message.
    messages = newest_copies(messages).sort("created_at", "message_id")
    languages = detect_languages(messages["content"])["language"].to_list()
    translated: dict[str, dict] = {}
    if lang:
        translations = scan(tables.CONVERSATION_TRANSLATIONS)
        if not translations.is_empty():
            current = translations.filter(
                pl.col("is_current") & (pl.col("target_language") == lang)
            )
            translated = {row["message_id"]: row for row in current.iter_rows(named=True)}
    rows = []
    for message, language in zip(messages.iter_rows(named=True), languages, strict=True):
        translation = translated.get(message["message_id"])
        rows.append(
            {
                "message_id": message["message_id"],
                "role": message["role"],
                "created_at": message["created_at"].isoformat() if message["created_at"] else None,
                "language": language,
                "original": message["content"],
                "text": translation["text"] if translation else message["content"],
                "translated": translation is not None,
                "translator": translation["translator"] if translation else None,
            }
        )
    return {
        "conversation_id": conversation_id,
        "lang": lang,
        "messages": rows,
        "translated_messages": sum(row["translated"] for row in rows),
    }
