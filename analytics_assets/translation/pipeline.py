"""A day's translations: which messages need one, the translator's answers with their
quality scores, what failed (as processing errors), and the history of earlier translators.

Idempotent: one row per message × target language × translator version, so a re-run
replaces its own rows. A different translator (or version) adds rows and becomes current;
the earlier rows stay, marked `is_current = false`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl

from analytics_assets.categorization.language import UNKNOWN
from analytics_assets.transforms.records import ERROR_SCHEMA
from analytics_assets.transforms.timestamps import TIMESTAMP_DTYPE
from analytics_assets.translation.quality import score_translations
from analytics_assets.translation.translators import Item, TranslationError, Translator

TRANSLATION_SCHEMA: dict[str, pl.DataType] = {
    "message_id": pl.String(),
    "conversation_id": pl.String(),
    "source_language": pl.String(),
    "target_language": pl.String(),
    "source_text": pl.String(),
    "text": pl.String(),
    "translator": pl.String(),
    "translator_version": pl.String(),
    "translated_at": TIMESTAMP_DTYPE,
    "is_current": pl.Boolean(),
    "detected_language": pl.String(),
    "target_language_ok": pl.Boolean(),
    "length_ratio": pl.Float64(),
    "length_ratio_ok": pl.Boolean(),
    "chrf": pl.Float64(),
    "day": pl.Date(),
}
STAGE = "translate"
# Batches failing one after the other (after their retries) before the run stops sending.
FAILURES_IN_A_ROW = 3


@dataclass
class TranslationRun:
    translations: pl.DataFrame
    errors: pl.DataFrame
    counts: Counter = field(default_factory=Counter)
    # The same outcomes per day (a range run's days each report their own).
    counts_by_day: dict = field(default_factory=dict)


def _error_rows(
    items: list[Item], messages: dict[str, dict], target: str, reason: str
) -> list[dict]:
    return [
        {
            "day": messages[item.message_id]["day"],
            "table": "messages",
            "stage": STAGE,
            "record_id": None,
            "key": item.message_id,
            # One error per message and target: with several targets, one message's errors
            # are several documents, not one whose reason the last target overwrote.
            "record_key": f"{item.message_id} to {target}",
            "conversation_id": messages[item.message_id]["conversation_id"],
            "reason": reason,
            "record": None,
        }
        for item in items
    ]


@dataclass
class _Circuit:
    """Batches failed one after the other, across the days of a run."""

    failures_in_a_row: int = 0
    last_failure: TranslationError | None = None


def translate_messages(
    messages: pl.DataFrame,
    targets: list[str],
    translator: Translator,
    *,
    previous: pl.DataFrame | None = None,
    references: dict[tuple[str, ...], str] | None = None,
    now: datetime | None = None,
    as_stored: Callable[[pl.Series], pl.Series] | None = None,
) -> TranslationRun:
    """`messages`: message_id, conversation_id, content, language, day. `previous`: the
    translations stored for the same days before this run (kept as history). `as_stored`:
    what storing does to a text (the translations table's own anonymization), so that an
    earlier row's `source_text` is compared with the message's text as it would be stored
    now.

    Day by day: a message id is one message within a day only (validation keeps one per
    day), and a range run holds a message NocoDB delivered again after midnight, or another
    conversation's message with the same id (a source numbering messages per conversation),
    on the next day. Keyed by id over the range, one day lost its translation, the other got
    it twice, in the other message's language. The days share one circuit: a service that
    is down is given up on once for the run, not once per day."""
    now = now or datetime.now(UTC)
    if "day" not in messages.columns or messages.is_empty():
        return _translate_day(messages, targets, translator, previous, references, now,
                              as_stored, _Circuit())  # fmt: skip
    circuit = _Circuit()
    runs, days = [], []
    for (day,), of_day in messages.group_by("day", maintain_order=True):
        days.append(day)
        earlier = (
            previous.filter(pl.col("day") == day)
            if previous is not None and "day" in previous.columns
            else previous
        )
        runs.append(_translate_day(of_day, targets, translator, earlier, references, now,
                                   as_stored, circuit))  # fmt: skip
    counts: Counter = Counter()
    for run in runs:
        counts.update(run.counts)
    return TranslationRun(
        pl.concat([run.translations for run in runs]).sort("day", maintain_order=True),
        pl.concat([run.errors for run in runs]),
        counts,
        {day: run.counts for day, run in zip(days, runs, strict=True)},
    )


def _translate_day(
    messages: pl.DataFrame,
    targets: list[str],
    translator: Translator,
    previous: pl.DataFrame | None,
    references: dict[tuple[str, ...], str] | None,
    now: datetime,
    as_stored: Callable[[pl.Series], pl.Series] | None,
    circuit: _Circuit,
) -> TranslationRun:
    counts: Counter = Counter()
    by_id = {row["message_id"]: row for row in messages.iter_rows(named=True)}
    new_rows: list[dict] = []
    error_rows: list[dict] = []
    text = pl.col("content").fill_null("").str.strip_chars()
    # Counted once per message, not once per target.
    counts["empty"] += messages.filter(text == "").height
    counts["unknown_language"] += messages.filter(
        (text != "") & (pl.col("language") == UNKNOWN)
    ).height
    # A target named twice, or in capitals, is one target (the detector's codes are lowercase).
    for target in dict.fromkeys(target.lower() for target in targets):
        counts[f"already_{target}"] += messages.filter(
            (text != "") & (pl.col("language") == target)
        ).height
        wanted = messages.filter(
            (text != "") & (pl.col("language") != UNKNOWN) & (pl.col("language") != target)
        )
        for (source,), group in wanted.group_by("language", maintain_order=True):
            items = [
                Item(message_id, content, source, conversation_id)
                for message_id, content, conversation_id in group.select(
                    "message_id", "content", "conversation_id"
                ).iter_rows()
            ]
            try:
                supported = translator.supports(source, target)
            except TranslationError as error:
                # The service could not say which pairs it has (its /languages failed).
                counts["failed"] += len(items)
                error_rows += _error_rows(items, by_id, target, f"{translator.name}: {error}")
                continue
            if not supported:
                counts["unsupported"] += len(items)
                reason = f"unsupported language pair {source}->{target} ({translator.name})"
                error_rows += _error_rows(items, by_id, target, reason)
                continue
            translated: dict[str, str] = {}
            # Batch by batch: a batch that fails after its retries costs its own messages,
            # not the batches translated (and paid for) before or after it. After
            # `FAILURES_IN_A_ROW` failed batches the service is taken to be down for this
            # run: the rest is recorded without being sent, instead of every batch paying
            # its full retries (an hour's throttle cost 90 minutes of sleep over 960
            # messages).
            for batch in translator.batches(items):
                if circuit.failures_in_a_row >= FAILURES_IN_A_ROW:
                    counts["failed"] += len(batch)
                    error_rows += _error_rows(
                        batch, by_id, target,
                        f"{translator.name}: not sent after {circuit.failures_in_a_row} failed "
                        f"batches in a row ({circuit.last_failure})",
                    )  # fmt: skip
                    continue
                try:
                    translated.update(translator.translate(batch, target))
                except TranslationError as error:
                    circuit.failures_in_a_row += 1
                    circuit.last_failure = error
                    counts["failed"] += len(batch)
                    error_rows += _error_rows(batch, by_id, target, f"{translator.name}: {error}")
                    continue
                circuit.failures_in_a_row = 0
                # The source translator only has what the chatbot stored: a gap is not an
                # error.
                counts["not_provided"] += sum(item.message_id not in translated for item in batch)
            counts["translated"] += len(translated)
            new_rows += [
                {
                    "message_id": item.message_id,
                    "conversation_id": by_id[item.message_id]["conversation_id"],
                    "source_language": source,
                    "target_language": target,
                    "source_text": item.text,
                    "text": translated[item.message_id],
                    "translator": translator.name,
                    "translator_version": translator.version,
                    "translated_at": now,
                    "day": by_id[item.message_id]["day"],
                }
                for item in items
                if item.message_id in translated
            ]
    fresh = pl.DataFrame(
        new_rows, schema={k: v for k, v in TRANSLATION_SCHEMA.items() if k in _NEW_COLUMNS}
    )
    scored = score_translations(fresh, references or {}).with_columns(
        pl.lit(True).alias("is_current")
    )
    combined = _with_history(scored.select(list(TRANSLATION_SCHEMA)).cast(TRANSLATION_SCHEMA),
                             previous, messages.select("message_id", "content"),
                             as_stored)  # fmt: skip
    errors = pl.DataFrame(error_rows, schema=ERROR_SCHEMA)
    return TranslationRun(combined, errors, counts)


_NEW_COLUMNS = (
    "message_id", "conversation_id", "source_language", "target_language", "source_text",
    "text", "translator", "translator_version", "translated_at", "day",
)  # fmt: skip
_IDENTITY = ["message_id", "target_language", "translator", "translator_version"]


def earlier_translations(
    previous: pl.DataFrame | None,
    contents: pl.DataFrame,
    as_stored: Callable[[pl.Series], pl.Series] | None = None,
) -> pl.DataFrame:
    """The stored translations still true of the messages as they are now: what a run that
    translates nothing (no translator configured) keeps."""
    return _with_history(pl.DataFrame(schema=TRANSLATION_SCHEMA), previous, contents, as_stored)


def _with_history(
    fresh: pl.DataFrame,
    previous: pl.DataFrame | None,
    contents: pl.DataFrame,
    as_stored: Callable[[pl.Series], pl.Series] | None = None,
) -> pl.DataFrame:
    """This run's rows, plus earlier rows of other translators (or of this one where it did
    not answer this time) for messages that still exist as they were translated; one current
    row per message and target: this run's when there is one, else the latest earlier one.

    `contents`: message_id, content, as the messages are now. An earlier row of a message
    since edited is dropped: it stayed current, showing (and keeping) the text the edit
    took out, a card number or a name the user removed, and a message blanked since."""
    if previous is None or previous.is_empty():
        return fresh.sort("message_id", "target_language")
    # A message id is one message within a day: over several days (a range run that
    # translates nothing) the day is part of its identity.
    day = ["day"] if "day" in contents.columns else []
    as_now = contents.select(
        *day,
        pl.col("message_id").cast(pl.String),
        pl.col("content").cast(pl.String).alias("source_text"),
    ).filter(pl.col("message_id").is_in(previous["message_id"].cast(pl.String).implode()))
    if as_stored is not None and as_now.height:
        # A message kept raw but translated under `redact` is stored with `<CARD>` in its
        # source text: compared raw, every such row was dropped on every run.
        as_now = as_now.with_columns(as_stored(as_now["source_text"]).alias("source_text"))
    kept = (
        previous.select(list(TRANSLATION_SCHEMA))
        .cast(TRANSLATION_SCHEMA)
        .join(as_now, on=[*day, "message_id", "source_text"], how="semi")
        .join(fresh.select(*day, *_IDENTITY), on=[*day, *_IDENTITY], how="anti")
    )
    combined = pl.concat([fresh, kept])
    newest = (
        pl.col("translated_at")
        .rank("ordinal", descending=True)
        .over(*day, "message_id", "target_language")
        == 1
    )
    return combined.with_columns(newest.alias("is_current")).sort(
        *day, "message_id", "target_language", "translated_at"
    )
