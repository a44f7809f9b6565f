"""Categorization: topic, intent, sentiment and language for every conversation."""

import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import polars as pl
from dagster import (
    AllPartitionMapping,
    AssetExecutionContext,
    AssetIn,
    BackfillPolicy,
    MaterializeResult,
    MetadataValue,
    asset,
)

from analytics_assets import tables
from analytics_assets.categorization.conversations import (
    categorize_conversations,
    message_signals,
)
from analytics_assets.categorization.device import collect
from analytics_assets.categorization.discovery import discover
from analytics_assets.categorization.feedback import (
    latest_corrections,
    openings_from_messages,
    read_feedback,
    train_and_choose,
)
from analytics_assets.defs.categorization.resources import CategorizationResource, LlmResource
from analytics_assets.defs.day_metadata import (
    add_day_metadata,
    add_next_day_digests,
    rows_by_day,
    run_metadata,
)
from analytics_assets.defs.ingestion.resources import RecordSourceResource
from analytics_assets.defs.metadata import frame_metadata, markdown_table
from analytics_assets.defs.partitions import (
    daily_partitions,
    days_in,
    messages_of_conversations_started_that_day,
)
from analytics_assets.defs.queues import GPU_STEP_TAGS
from analytics_assets.operations.usage import StepUsage
from analytics_assets.storage.placement import lake_and_mongo, lake_only
from analytics_assets.transforms.records import messages_within_reach, newest_copies


def _distribution(frame: pl.DataFrame, column: str) -> dict[str, int]:
    return dict(frame.group_by(column).len().sort("len", descending=True).iter_rows())


CATEGORY_DIMENSIONS = ("topic", "intent", "sentiment")
_COUNTED = [*CATEGORY_DIMENSIONS, "language", *(f"{d}_method" for d in CATEGORY_DIMENSIONS)]


def _day_counts(frame: pl.DataFrame, device: str) -> tuple[pl.DataFrame, str]:
    """Per day, column and value of `_COUNTED`: how many rows, in one query, on cuDF when the
    run holds a GPU (polars' GPU engine), else or on refusal on the CPU engine; says which
    ran."""
    query = pl.concat(
        [
            frame.lazy()
            .group_by("day", column)
            .len()
            .select("day", pl.lit(column).alias("column"), pl.col(column).alias("value"), "len")
            for column in _COUNTED
        ]
    )
    return collect(query, device=device)


def _categories_metadata(counts: pl.DataFrame):
    """conversation_categories: the day's conversations, the count of each label and method
    per dimension, and the share each dimension abstained on (its method is `fallback`)."""
    by_day = rows_by_day(counts)

    def of_day(day, categories: pl.DataFrame) -> dict:
        day_counts = by_day.get(day, counts.clear())

        def distribution(column: str) -> dict[str, int]:
            rows = day_counts.filter(pl.col("column") == column).sort("len", descending=True)
            return dict(rows.select("value", "len").iter_rows())

        methods = {d: distribution(f"{d}_method") for d in CATEGORY_DIMENSIONS}
        pairs = categories.group_by("topic", "intent").len().sort("len", descending=True)
        return {
            **frame_metadata(categories),
            "conversations": categories.height,
            "topics": MetadataValue.json(distribution("topic")),
            "intents": MetadataValue.json(distribution("intent")),
            "sentiments": MetadataValue.json(distribution("sentiment")),
            "languages": MetadataValue.json(distribution("language")),
            "methods": MetadataValue.json(methods),
            "abstention_rate": MetadataValue.json(
                {
                    dimension: round(used.get("fallback", 0) / max(categories.height, 1), 4)
                    for dimension, used in methods.items()
                }
            ),
            "categorized_via_translation": int(categories["categorized_via_translation"].sum()),
            "top_topic_intent_pairs": MetadataValue.md(markdown_table(pairs.head(15), rows=15)),
        }

    return of_day


def _json_values(metadata: dict) -> dict:
    return {k: MetadataValue.json(v) if isinstance(v, dict) else v for k, v in metadata.items()}


@asset(
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    **lake_and_mongo("conversation_categories"),
    group_name="categorization",
    kinds={"polars", "parquet", "mongodb"},
    # At most one run at a time holds the GPU (the pool's limit is set on the instance).
    pool="gpu",
    op_tags=GPU_STEP_TAGS,
    ins={
        tables.CONVERSATION_HEADERS: AssetIn(),
        tables.CONVERSATION_MESSAGES: messages_of_conversations_started_that_day(),
        # Openings in languages the rules do not cover are read through their translation.
        tables.CONVERSATION_TRANSLATIONS: AssetIn(),
    },
    description="Per conversation: topic and intent of the opening user turn, sentiment of the "
    "opening and the last user turn, language; each with confidence and method. Re-categorizing "
    "days after a taxonomy change is a backfill of this asset.",
)
def conversation_categories(
    context: AssetExecutionContext,
    conversation_headers: pl.DataFrame,
    conversation_messages: pl.DataFrame,
    conversation_translations: pl.DataFrame,
    categorization: CategorizationResource,
    llm: LlmResource,
) -> MaterializeResult[pl.DataFrame]:
    taxonomy = categorization.taxonomy()
    usage = StepUsage.start()
    started = time.perf_counter()
    model = categorization.model_tier(taxonomy)
    labeler = llm.labeler() if llm.enabled else None
    try:
        categories = categorize_conversations(
            conversation_headers,
            # D's and D+1's messages (only those, in a range run too): a message NocoDB
            # holds on both days counts once.
            newest_copies(messages_within_reach(conversation_messages, conversation_headers)),
            taxonomy,
            threshold=categorization.threshold,
            model=model,
            translations=conversation_translations if conversation_translations.width else None,
            llm=labeler,
        )
    finally:
        if labeler is not None:
            labeler.close()
    llm_metadata = labeler.last_run.metadata() if labeler and labeler.last_run else {}
    seconds = time.perf_counter() - started
    device = model.embedder.device if model else "cpu"
    counts, engine = _day_counts(categories, device)
    context.log.info(
        f"categorized {categories.height} conversations on {device} ({categorization.tier} tier)"
    )
    # Each day its own labels, methods and abstention (a range run writes many days at once).
    add_day_metadata(context, categories, _categories_metadata(counts))
    add_next_day_digests(
        context, conversation_headers, {tables.CONVERSATION_MESSAGES: conversation_messages}
    )
    return MaterializeResult(
        value=categories,
        metadata={
            "taxonomy_version": taxonomy.version,
            "tier": categorization.tier,
            "device": device,
            "aggregation_engine": engine,
            "llm_tier": llm.enabled,
            **run_metadata(
                context,
                # The run's LLM requests, cache hits and cost: one budget per run, not per day.
                **_json_values(llm_metadata),
                categorize_seconds=round(seconds, 3),
                conversations_per_second=round(categories.height / seconds, 1) if seconds else None,
                **usage.figures(categories.height),
            ),
        },
    )


@asset(
    group_name="categorization",
    kinds={"pytorch", "polars"},
    pool="gpu",
    op_tags=GPU_STEP_TAGS,
    ins={
        tables.CONVERSATION_MESSAGES: AssetIn(
            partition_mapping=AllPartitionMapping(),
            metadata={"allow_missing_partitions": True},
        )
    },
    description="Trains a head per label (topic, intent) on the corrections, scores it on a "
    "held-out split against what runs now, and adopts it only if its macro-F1 is higher.",
)
def category_heads(
    context: AssetExecutionContext,
    conversation_messages: pl.LazyFrame,
    categorization: CategorizationResource,
    record_source: RecordSourceResource,
) -> MaterializeResult:
    from analytics_assets.categorization.embeddings import shared_embedder
    from analytics_assets.categorization.model_tier import shipped_heads

    feedback = _read_feedback(categorization, record_source)
    openings = openings_from_messages(
        conversation_messages, feedback["conversation_id"].cast(pl.String).to_list()
    )
    embedder = shared_embedder(
        categorization.resolved_device(), categorization.batch_size, categorization.encoder
    )
    taxonomy = categorization.taxonomy()
    decisions = train_and_choose(
        openings,
        feedback,
        taxonomy,
        embedder.embed,
        categorization.encoder_heads_dir(),
        shipped_heads(embedder.name, taxonomy),
    )
    metadata: dict = {
        "corrections": feedback.height,
        # Each conversation's latest correction of each label is trained on.
        "conversations_corrected": latest_corrections(feedback).height,
        "device": embedder.device,
        "encoder": embedder.version,
    }
    for decision in decisions:
        prefix = decision.dimension
        metadata |= {
            f"{prefix}_version": decision.version,
            f"{prefix}_adopted": decision.adopted,
            f"{prefix}_accuracy": round(decision.head.accuracy, 4),
            f"{prefix}_macro_f1": round(decision.head.macro_f1, 4),
            f"{prefix}_baseline": decision.baseline_name,
            f"{prefix}_baseline_macro_f1": round(decision.baseline.macro_f1, 4),
            f"{prefix}_per_label_f1": MetadataValue.json(decision.head.per_label_f1),
        }
        context.log.info(
            f"{prefix}: head macro-F1 {decision.head.macro_f1:.3f} vs "
            f"{decision.baseline_name} {decision.baseline.macro_f1:.3f}: "
            f"{'adopted' if decision.adopted else 'kept the current one'}"
        )
    return MaterializeResult(metadata=metadata)


def _read_feedback(
    categorization: CategorizationResource, record_source: RecordSourceResource
) -> pl.DataFrame:
    if categorization.feedback_table:
        with record_source.open() as source:
            feedback = source.read_table(categorization.feedback_table)
    elif categorization.feedback_file:
        feedback = read_feedback(Path(categorization.feedback_file))
    else:
        raise ValueError("Set feedback_file or feedback_table to train category heads.")
    if not feedback.height:
        # An empty table or file trains nothing; it may not even name its columns.
        return pl.DataFrame(schema={"conversation_id": pl.String})
    if "conversation_id" not in feedback.columns:
        raise ValueError(
            f"Corrections need a conversation_id column; found {sorted(feedback.columns)}."
        )
    return feedback


@asset(
    partitions_def=daily_partitions,
    backfill_policy=BackfillPolicy.single_run(),
    **lake_only(),
    group_name="categorization",
    kinds={"polars", "parquet"},
    name=tables.MESSAGE_SIGNALS,
    description="Language and sentiment of every user message (rules tier: taxonomy rules, "
    "VADER for English, the n-gram sentiment head where both abstain), for the reports.",
)
def message_signals_asset(
    context: AssetExecutionContext,
    conversation_messages: pl.DataFrame,
    categorization: CategorizationResource,
) -> MaterializeResult[pl.DataFrame]:
    usage = StepUsage.start()
    started = time.perf_counter()
    signals = message_signals(
        conversation_messages, categorization.taxonomy(), threshold=categorization.threshold
    )
    seconds = time.perf_counter() - started
    # Each day its own languages and sentiments (a range run writes many days at once).
    add_day_metadata(context, signals, _signals_of_day)
    return MaterializeResult(
        value=signals,
        metadata={
            **frame_metadata(signals, days=len(days_in(context.partition_time_window))),
            **run_metadata(
                context,
                signal_seconds=round(seconds, 3),
                messages_per_second=round(signals.height / seconds, 1) if seconds else None,
                **usage.figures(conversation_messages.height),
            ),
        },
    )


def _signals_of_day(day, signals: pl.DataFrame) -> dict:
    return {
        "user_messages": signals.height,
        "languages": MetadataValue.json(_distribution(signals, "language")),
        "sentiments": MetadataValue.json(_distribution(signals, "sentiment")),
        "sentiment_methods": MetadataValue.json(_distribution(signals, "sentiment_method")),
    }


def clusters_by_day(
    days: list[date],
    conversation_categories: pl.DataFrame,
    conversation_messages: pl.DataFrame,
    embed: Callable,
    fallback: str = "other",
) -> tuple[pl.DataFrame, dict[date, int]]:
    """Each day's conversations of the taxonomy's fallback topic (`other` unless it names
    another) clustered on their own, as a run of that day alone does (a range run, a
    single-run backfill, clustered the range once and filed every cluster under its first
    day); and how many conversations each day clustered."""
    by_day, in_other = [], {}
    for day in days:
        others = conversation_categories.filter(
            (pl.col("topic") == fallback) & (pl.col("day") == day)
        )["conversation_id"]
        openings = (
            conversation_messages.filter(
                pl.col("conversation_id").is_in(others.implode()) & (pl.col("role") == "user")
            )
            .sort("created_at")
            .group_by("conversation_id", maintain_order=True)
            .agg(pl.col("content").first())
        )
        texts = openings["content"].fill_null("").to_list()
        in_other[day] = len(texts)
        found = discover(texts, embed(texts) if texts else None)
        by_day.append(found.with_columns(pl.lit(day).alias("day")))
    return pl.concat(by_day, how="diagonal_relaxed"), in_other


@asset(
    partitions_def=daily_partitions,
    **lake_only(),
    group_name="categorization",
    kinds={"pytorch", "polars", "parquet"},
    pool="gpu",
    op_tags=GPU_STEP_TAGS,
    description="Conversations categorized `other`, clustered on their embeddings: each "
    "cluster's size, most distinctive terms and examples; new topics before they are named.",
)
def topic_discovery(
    context: AssetExecutionContext,
    conversation_categories: pl.DataFrame,
    conversation_messages: pl.DataFrame,
    categorization: CategorizationResource,
) -> MaterializeResult[pl.DataFrame]:
    from analytics_assets.categorization.embeddings import shared_embedder

    embedder = shared_embedder(
        categorization.resolved_device(), categorization.batch_size, categorization.encoder
    )
    clusters, in_other = clusters_by_day(
        days_in(context.partition_time_window),
        conversation_categories,
        conversation_messages,
        embedder.embed,
        # A taxonomy may name its fallback otherwise (`misc`): with `other` written here,
        # such a deployment never clustered anything.
        fallback=categorization.taxonomy().fallbacks["topic"],
    )

    def discovery_of_day(day: date, clusters_of_day: pl.DataFrame) -> dict:
        # Names, sizes and terms only: an example is what a person wrote, and run storage is
        # beyond an erasure's reach (defs/metadata.py). The examples are in the lake table.
        table = clusters_of_day.with_columns(pl.col("terms").list.join(", ")).select(
            "cluster", "name", "size", "terms"
        )
        return {
            "conversations_in_other": in_other.get(day, 0),
            "clusters": clusters_of_day.height,
            "clusters_table": MetadataValue.md(markdown_table(table, rows=20)),
        }

    # Each day its own clusters (a range run writes many days at once).
    add_day_metadata(context, clusters, discovery_of_day)
    return MaterializeResult(
        value=clusters,
        metadata={
            "device": embedder.device,
            **frame_metadata(clusters, days=len(in_other)),
        },
    )
