"""Translations: each day's messages in the team's languages, with their quality scores, and
every message that could not be translated; and the language of each conversation."""

import time
from collections import Counter
from datetime import date

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetIn,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
    multi_asset,
)

from analytics_assets import tables
from analytics_assets.defs.day_metadata import (
    add_day_metadata,
    add_next_day_digests,
    run_metadata,
)
from analytics_assets.defs.ingestion.resources import RecordSourceResource
from analytics_assets.defs.metadata import frame_metadata, markdown_table
from analytics_assets.defs.partitions import (
    daily_partitions,
    days_in,
    messages_of_conversations_started_that_day,
)
from analytics_assets.defs.privacy.resources import PrivacyResource
from analytics_assets.defs.queues import HEAVY_STEP_TAGS
from analytics_assets.defs.storage.lake import LakeResource
from analytics_assets.defs.storage.placement import stored_spec
from analytics_assets.defs.translation.resources import TranslationResource
from analytics_assets.operations.usage import StepUsage
from analytics_assets.storage.placement import lake_and_mongo, lake_only
from analytics_assets.transforms.records import ERROR_SCHEMA, messages_within_reach
from analytics_assets.translation.detection import (
    conversation_languages as languages_of_conversations,
)
from analytics_assets.translation.detection import message_languages
from analytics_assets.translation.pipeline import (
    TranslationRun,
    earlier_translations,
    translate_messages,
)

GROUP = "translation"


def quality_by_pair(translations: pl.DataFrame) -> pl.DataFrame:
    """Per language pair and translator (current rows): how many, and how good."""
    return (
        translations.filter(pl.col("is_current"))
        .group_by("source_language", "target_language", "translator")
        .agg(
            pl.len().alias("translations"),
            pl.col("target_language_ok").mean().round(3).alias("in_target_language"),
            pl.col("length_ratio_ok").mean().round(3).alias("plausible_length"),
            pl.col("chrf").mean().round(1).alias("chrf"),
        )
        .sort("translations", descending=True)
    )


# The detect-only run's one outcome: user messages a translator would have had to translate.
NO_TRANSLATOR = "user_messages_needing_translation_no_translator"


def _translations_of_day(counts_by_day: dict[date, Counter]):
    """A day's own translation figures: what this run did with its messages (translated,
    failed, unsupported, already in the target...), and its current translations per target
    with how many are in the target language and of a plausible length, and their chrF."""

    def of_day(day: date, rows: pl.DataFrame) -> dict:
        current = rows.filter(pl.col("is_current"))
        outcomes = dict(counts_by_day.get(day, Counter()))
        return {
            "dagster/row_count": rows.height,
            "current_translations": current.height,
            "translated": outcomes.get("translated", 0),
            "failed": outcomes.get("failed", 0),
            "unsupported": outcomes.get("unsupported", 0),
            "outcomes": MetadataValue.json(outcomes),
            "current_by_target": MetadataValue.json(
                dict(current.group_by("target_language").len().sort("target_language").iter_rows())
            ),
            "in_target_language_share": _mean(current, "target_language_ok"),
            "plausible_length_share": _mean(current, "length_ratio_ok"),
            "mean_chrf": _mean(current, "chrf", digits=1),
        }

    return of_day


def _mean(frame: pl.DataFrame, column: str, digits: int = 3) -> float | None:
    value = frame[column].cast(pl.Float64).mean() if frame.height else None
    return round(value, digits) if value is not None else None


def _translation_errors_of_day(day: date, errors: pl.DataFrame) -> dict:
    return {
        "dagster/row_count": errors.height,
        "errors_by_reason": MetadataValue.json(
            dict(errors.group_by("reason").len().sort("len", descending=True).head(20).iter_rows())
        ),
    }


@multi_asset(
    specs=[
        stored_spec(
            tables.CONVERSATION_TRANSLATIONS,
            lake_and_mongo("conversation_translations"),
            deps=[tables.CONVERSATION_MESSAGES, tables.MESSAGE_SIGNALS],
            group_name=GROUP,
            kinds={"polars", "parquet", "mongodb"},
            description="Message-level translations into the team's languages: source and "
            "target language, text, translator and version, when, quality scores; history "
            "of earlier translators kept, `is_current` marks the one to show.",
        ),
        stored_spec(
            tables.TRANSLATION_ERRORS,
            lake_and_mongo("processing_errors", stage="translate"),
            deps=[tables.CONVERSATION_MESSAGES, tables.MESSAGE_SIGNALS],
            group_name=GROUP,
            kinds={"polars", "parquet", "mongodb"},
            description="Messages that could not be translated (unsupported pair, translator "
            "failing after its retries), also in MongoDB's processing_errors.",
        ),
    ],
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    # A day of messages in memory: the `heavy` pod size under the k8s executor.
    op_tags=HEAVY_STEP_TAGS,
)
def translations(
    context: AssetExecutionContext,
    conversation_messages: pl.DataFrame,
    message_signals: pl.DataFrame,
    translation: TranslationResource,
    record_source: RecordSourceResource,
    lake: LakeResource,
    privacy: PrivacyResource,
):
    usage = StepUsage.start()
    started = time.perf_counter()
    days = days_in(context.partition_time_window)
    translator = translation.build(record_source)
    previous, _ = lake.lake().read_days(tables.CONVERSATION_TRANSLATIONS, days)

    def as_stored(texts: pl.Series) -> pl.Series:
        """A text as this table stores it (its own policy), to compare earlier rows with."""
        frame = pl.DataFrame({"source_text": texts})
        return privacy.anonymize_table(tables.CONVERSATION_TRANSLATIONS, frame)[0]["source_text"]

    if translator is None:
        # Detect-only: nothing is translated, so nothing is detected either; the count of
        # what a translator would have to do comes from message_signals' user messages.
        detect_seconds, detected_messages = 0.0, 0
        messages = message_signals
        # What an earlier translator left, as long as it is still true of its message (one
        # edited since would keep showing what the edit took out).
        kept = earlier_translations(
            previous, conversation_messages.select("day", "message_id", "content"), as_stored
        )
        needing = messages.filter(~pl.col("language").is_in([*translation.target_languages,
                                                               "unknown"]))  # fmt: skip
        run = TranslationRun(kept, pl.DataFrame(schema=ERROR_SCHEMA))
        run.counts[NO_TRANSLATOR] = needing.height
        run.counts_by_day = {
            day: Counter({NO_TRANSLATOR: count})
            for day, count in needing.group_by("day").len().iter_rows()
        }
    else:
        # User messages keep the language message_signals detected; only the others (the
        # assistant's, system and tool messages) are detected here.
        detect_started = time.perf_counter()
        messages = message_languages(
            conversation_messages.select("message_id", "conversation_id", "role", "content", "day"),
            known=message_signals,
        )
        detect_seconds = time.perf_counter() - detect_started
        # Only the messages message_signals had not detected (not the user's) are detected.
        detected_messages = conversation_messages.filter(
            ~pl.col("message_id").is_in(message_signals["message_id"].implode())
        ).height
        run = translate_messages(
            messages,
            translation.target_languages,
            translator,
            previous=previous,
            references=translation.references(record_source),
            as_stored=as_stored,
        )
    # The messages were anonymized already; a translator can still bring a value back (a
    # spelled-out number, a transliterated address), so its output is scanned again.
    translated, pii_findings = privacy.anonymize_table(
        tables.CONVERSATION_TRANSLATIONS, run.translations
    )
    errors, error_pii_findings = privacy.anonymize_table(tables.TRANSLATION_ERRORS, run.errors)
    seconds = time.perf_counter() - started
    counts = dict(run.counts)
    context.log.info(f"translations ({translation.translator}): {counts}")
    pairs = quality_by_pair(translated)
    # Each day its own outcomes and quality; the run's figures are named run/....
    add_day_metadata(
        context,
        translated,
        _translations_of_day(run.counts_by_day),
        asset_key=tables.CONVERSATION_TRANSLATIONS,
    )
    yield MaterializeResult(
        asset_key=tables.CONVERSATION_TRANSLATIONS,
        value=translated,
        metadata={
            "translator": translation.translator,
            "translator_version": translator.version if translator else None,
            "targets": MetadataValue.json(translation.target_languages),
            **frame_metadata(translated.drop("source_text"), days=len(days)),
            # Figures of the whole run, not of each day (`run/…`).
            **run_metadata(
                context,
                outcomes=MetadataValue.json(counts),
                quality_by_pair=MetadataValue.md(markdown_table(pairs, rows=50)),
                seconds=round(seconds, 3),
                pii_findings=MetadataValue.json(pii_findings),
                detected_messages=detected_messages,
                detection_messages_per_second=round(detected_messages / detect_seconds)
                if detected_messages > 0 and detect_seconds > 0
                else None,
                **usage.figures(messages.height),
            ),
        },
    )
    add_day_metadata(
        context, errors, _translation_errors_of_day, asset_key=tables.TRANSLATION_ERRORS
    )
    yield MaterializeResult(
        asset_key=tables.TRANSLATION_ERRORS,
        value=errors,
        metadata={
            **frame_metadata(errors.drop("record"), days=len(days)),
            **run_metadata(
                context,
                errors_by_reason=MetadataValue.md(
                    markdown_table(errors.group_by("reason").len(), rows=20)
                ),
                pii_findings=MetadataValue.json(error_pii_findings),
            ),
        },
    )


@asset(
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    **lake_only(),
    group_name=GROUP,
    kinds={"polars", "parquet"},
    ins={
        tables.CONVERSATION_HEADERS: AssetIn(),
        tables.MESSAGE_SIGNALS: messages_of_conversations_started_that_day(tables.MESSAGE_SIGNALS),
    },
    description="One row per conversation started that day: dominant language of what the "
    "user wrote, its share, mixed-language flag, the languages seen, confidence (`unknown` "
    "where the user wrote nothing recognizable).",
)
def conversation_languages(
    context: AssetExecutionContext,
    conversation_headers: pl.DataFrame,
    message_signals: pl.DataFrame,
) -> MaterializeResult[pl.DataFrame]:
    started = time.perf_counter()
    # The languages message_signals already detected: nothing is detected twice.
    languages = languages_of_conversations(
        conversation_headers.select("conversation_id", "day"),
        # The start day's and the next day's signals only, in a range run too.
        messages_within_reach(message_signals, conversation_headers),
    )
    seconds = time.perf_counter() - started
    add_next_day_digests(context, conversation_headers, {tables.MESSAGE_SIGNALS: message_signals})
    # Each day its own languages (a range run writes many days at once).
    add_day_metadata(context, languages, _languages_of_day)
    return MaterializeResult(
        value=languages,
        metadata={
            **run_metadata(context, seconds=round(seconds, 3)),
            **frame_metadata(languages, days=len(days_in(context.partition_time_window))),
        },
    )


def _languages_of_day(day: date, languages: pl.DataFrame) -> dict:
    return {
        "dagster/row_count": languages.height,
        "languages": MetadataValue.json(
            dict(languages.group_by("dominant_language").len().sort("len").iter_rows())
        ),
        "mixed_language": int(languages["mixed_language"].sum()),
        "unknown_language": languages.filter(pl.col("dominant_language") == "unknown").height,
    }
