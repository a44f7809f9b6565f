"""Materialization metadata shared by every asset: counts, schema and a preview table."""

from __future__ import annotations

import re
from typing import Any

import polars as pl
from dagster import MetadataValue, TableColumn, TableSchema

PREVIEW_ROWS = 5
_PREVIEW_CELL_CHARS = 60
# Never in a preview: who (user ids, pseudonyms included), what a person wrote (texts, even
# anonymized), and the ids of their conversations and messages (after an erasure, a preview
# kept an erased user's conversation ids with their times, tokens and sentiment, and NocoDB
# still maps those ids to the user). Run storage is beyond an erasure's reach, so it holds
# none of them.
PERSONAL_COLUMNS = frozenset({
    "user_id", "user_pseudonym", "content", "text", "source_text", "opening",
    "category_text", "translated_text", "example", "examples", "record", "title",
    "conversation_id", "message_id", "record_id", "record_key", "key",
})  # fmt: skip


def _previewable(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.select(
        name for name in frame.columns if name not in PERSONAL_COLUMNS and "user" not in name
    )


# What Markdown (GitHub's, as Dagster's UI renders it) reads as markup: a backslash-escaped
# one is shown as itself. `:`, `@` and the dot of `www.` keep a bare `https://…`, an address
# or `www.…` from becoming a link.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+!|<>~&:@]|(?<=www)\.)", re.IGNORECASE)
_LINE_BREAKS = re.compile(r"[\r\n\u2028\u2029]+")


def markdown_text(value: Any) -> str:
    """A value from the data (a model name, a conversation id, a topic) as Markdown that
    shows exactly it. The UI renders metadata as Markdown: a model named
    `![x](https://evil.example/p.png)` made every viewer's browser fetch that image (their
    address, when, and the UI's own address), `[Re-login](https://…)` showed as a link in a
    trusted page, and a carriage return split a table's row."""
    text = "" if value is None else str(value)
    return _MARKDOWN_SPECIAL.sub(r"\\\1", _LINE_BREAKS.sub(" ", text))


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    if len(text) > _PREVIEW_CELL_CHARS:
        text = text[: _PREVIEW_CELL_CHARS - 1] + "…"
    return markdown_text(text)


def markdown_table(frame: pl.DataFrame, rows: int = PREVIEW_ROWS) -> str:
    head = frame.head(rows)
    lines = [
        # The columns are the code's names; the cells hold the data.
        "| " + " | ".join(head.columns) + " |",
        "|" + "---|" * len(head.columns),
        *("| " + " | ".join(_cell(value) for value in row) + " |" for row in head.iter_rows()),
    ]
    return "\n".join(lines)


def shape_metadata(frame: pl.DataFrame, *, days: int = 1) -> dict[str, Any]:
    """Row count and schema: what a frame is, nothing of what it holds. A multi-day run
    attaches its metadata to every day's materialization, so there the count is labelled
    as the run's, not the day's."""
    count_key = "dagster/row_count" if days == 1 else "rows_in_run"
    return {
        count_key: frame.height,
        "dagster/column_schema": TableSchema(
            columns=[TableColumn(name, str(dtype)) for name, dtype in frame.schema.items()]
        ),
    }


def frame_metadata(frame: pl.DataFrame, *, days: int = 1) -> dict[str, Any]:
    """Row count, schema and a preview of the rows without their personal columns (user
    ids, texts): metadata is kept in Dagster's run storage, which no erasure reaches. The
    schema still lists every column."""
    preview = markdown_table(_previewable(frame))
    return {**shape_metadata(frame, days=days), "preview": MetadataValue.md(preview)}


def numeric_metadata(metadata: dict | None) -> dict:
    """Numbers only: the int/float values of a metadata dict, never texts or tables (what an
    alert or a webhook payload may carry)."""
    numbers = {}
    for name, value in (metadata or {}).items():
        raw = getattr(value, "value", value)
        if isinstance(raw, bool | int | float):
            numbers[name] = raw
    return numbers
