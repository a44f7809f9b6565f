"""Ingestion: NocoDB pages -> raw records -> validated messages and headers -> conversations."""

import json
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetIn,
    AssetOut,
    BackfillPolicy,
    Backoff,
    Jitter,
    MetadataValue,
    Output,
    ResourceParam,
    RetryPolicy,
    asset,
    multi_asset,
)

from analytics_assets.defs.ingestion.partitions import (
    daily_partitions,
    days_in,
    messages_of_conversations_started_that_day,
)
from analytics_assets.defs.ingestion.resources import RecordSourceResource
from analytics_assets.defs.lake.io_manager import PolarsParquetLake
from analytics_assets.defs.metadata import frame_metadata, markdown_table
from analytics_assets.defs.privacy.resources import PrivacyResource
from analytics_assets.privacy.erasure import drop_tombstoned
from analytics_assets.sources.schema import TABLE_KINDS
from analytics_assets.storage.placement import LAKE_IO_MANAGER, io_manager_key
from analytics_assets.transforms.conversations import build_conversations
from analytics_assets.transforms.raw import empty_raw_frame
from analytics_assets.transforms.records import (
    validate_conversation_headers,
    validate_messages,
)

GROUP = "ingestion"
# A multi-day range runs as one run that fetches and writes day by day.
SINGLE_RUN = BackfillPolicy.single_run()


def _throughput(rows: int, seconds: float) -> float | None:
    return round(rows / seconds, 1) if seconds > 0 else None


@asset(
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    io_manager_key=LAKE_IO_MANAGER,
    group_name=GROUP,
    kinds={"nocodb", "polars", "parquet"},
    # The client already retries each request; this covers what outlasts it (NocoDB
    # restarting, a network partition) by retrying the step, with growing waits.
    retry_policy=RetryPolicy(
        max_retries=3, delay=30, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
    ),
    pool="nocodb",
    description="Conversation and message records exactly as the source returned them, "
    "one JSON text per record, per table and UTC day of the event time.",
)
def nocodb_raw_pages(
    context: AssetExecutionContext,
    record_source: RecordSourceResource,
    privacy: PrivacyResource,
    lake_io_manager: ResourceParam[PolarsParquetLake],
) -> Output[pl.DataFrame]:
    days = days_in(context.partition_time_window)
    jobs = [(day, kind) for day in days for kind in TABLE_KINDS]
    per_table: Counter[str] = Counter()
    pages = resumed = 0
    results: dict[tuple, pl.DataFrame] = {}
    started = time.perf_counter()
    with record_source.open() as source, ThreadPoolExecutor(record_source.fetch_workers) as pool:
        stats_before = source.stats()
        futures = {pool.submit(source.fetch_day, kind, day): (day, kind) for day, kind in jobs}
        for done, future in enumerate(as_completed(futures), start=1):
            day, kind = futures[future]
            result = future.result()
            results[(day, kind)] = result.frame
            per_table[kind] += result.frame.height
            pages += result.pages
            resumed += int(result.stats.get("resumed_pages", 0))
            elapsed = time.perf_counter() - started
            # One JSON line per table and day; the ETA is for long backfills.
            context.log.info(
                json.dumps(
                    {
                        "event": "fetched",
                        "table": kind,
                        "day": day.isoformat(),
                        "records": result.frame.height,
                        "pages": result.pages,
                        "seconds": result.stats.get("seconds"),
                        "done": f"{done}/{len(jobs)}",
                        "eta_s": round(elapsed / done * (len(jobs) - done), 1),
                    }
                )
            )
        stats_after = source.stats()
        source_description = source.describe()
    # Days and tables in order, whatever order the fetches finished in.
    raw = pl.concat([empty_raw_frame(), *(results[job] for job in jobs)])
    # Records erased on request stay out, even while the source still holds them.
    raw, erased = drop_tombstoned(
        raw, lake_io_manager, record_source.source_schema, privacy.digester
    )
    seconds = time.perf_counter() - started
    counters = {
        name: round(stats_after[name] - stats_before.get(name, 0), 3)
        for name in ("requests", "retries", "throttled", "retry_wait_s")
        if name in stats_after
    }
    return Output(
        raw,
        metadata={
            "source": source_description,
            "days": len(days),
            "pages": pages,
            "resumed_pages": resumed,
            **counters,
            "records_per_table": MetadataValue.json(dict(per_table)),
            "erased_records_skipped": erased,
            "fetch_seconds": round(seconds, 3),
            "records_per_second": _throughput(raw.height, seconds),
            **frame_metadata(raw.drop("record"), days=len(days)),
        },
    )


def _error_keys(errors: pl.DataFrame) -> set[tuple]:
    return set(errors.select("table", "stage", "record_key").iter_rows())


def _previous_errors(lake: PolarsParquetLake, days: list) -> set[tuple]:
    errors, _ = lake.read_days("processing_errors", days, ["table", "stage", "record_key"])
    return _error_keys(errors) if errors is not None else set()


@multi_asset(
    outs={
        "conversation_messages": AssetOut(
            io_manager_key=io_manager_key("conversation_messages"),
            group_name=GROUP,
            kinds={"polars", "parquet", "mongodb"},
            description="Typed, validated messages, one row per message_id (newest copy).",
        ),
        "conversation_headers": AssetOut(
            io_manager_key=io_manager_key("conversation_headers"),
            group_name=GROUP,
            kinds={"polars", "parquet"},
            description="Typed, validated conversation records as the source holds them.",
        ),
        "processing_errors": AssetOut(
            io_manager_key=io_manager_key("processing_errors"),
            group_name=GROUP,
            kinds={"polars", "parquet", "mongodb"},
            description="Every rejected record with its table, ids, stage and reason.",
        ),
        "user_pseudonyms": AssetOut(
            io_manager_key=LAKE_IO_MANAGER,
            group_name=GROUP,
            kinds={"polars", "parquet"},
            # Written only where the deployment keeps the mapping (keep_user_mapping).
            is_required=False,
            description="Restricted: pseudonym -> user id per day, where the deployment "
            "allows a mapping. Analytics tables hold only the pseudonyms.",
        ),
    },
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
)
def validated_records(
    context: AssetExecutionContext,
    nocodb_raw_pages: pl.DataFrame,
    record_source: RecordSourceResource,
    lake_io_manager: ResourceParam[PolarsParquetLake],
    privacy: PrivacyResource,
):
    started = time.perf_counter()
    run_days = days_in(context.partition_time_window)
    days = len(run_days)
    # The days' errors as they stood before this run: a rebuilt day reports what recovered.
    previous_errors = _previous_errors(lake_io_manager, run_days)
    schema = record_source.source_schema
    messages = validate_messages(nocodb_raw_pages, schema)
    # Analytics never hold raw PII (unless a restricted deployment keeps it): categorization
    # and translation read this text too. The raw records stay in nocodb_raw_pages.
    valid_messages, pii_findings = privacy.anonymize_table("conversation_messages", messages.valid)
    headers = validate_conversation_headers(nocodb_raw_pages, schema)
    # From here on a user is their keyed pseudonym: conversations, scores, user analytics and
    # reports join on it and never see the source's id.
    pseudonymized_headers = privacy.pseudonymize_users(headers.valid)
    errors = pl.concat([messages.rejected, headers.rejected]).sort("day", "table", "key")
    errors = privacy.pseudonymize_records(
        errors, user_field=schema.source_field("conversations", "user_id")
    )
    errors, error_pii_findings = privacy.anonymize_table("processing_errors", errors)
    seconds = time.perf_counter() - started
    raw_messages = messages.valid.height + messages.rejected.height
    context.log.info(
        f"validated {raw_messages} message and "
        f"{headers.valid.height + headers.rejected.height} conversation records in "
        f"{seconds:.3f}s; rejected {errors.height}"
    )
    yield Output(
        valid_messages,
        output_name="conversation_messages",
        metadata={
            "rejected": messages.rejected.height,
            "pii_policy": privacy.policy_for("conversation_messages"),
            "pii_findings": MetadataValue.json(pii_findings),
            "validate_seconds": round(seconds, 3),
            "messages_per_second": _throughput(raw_messages, seconds),
            "messages_by_role": MetadataValue.json(
                dict(valid_messages.group_by("role").len().iter_rows())
            ),
            **frame_metadata(valid_messages, days=days),
        },
    )
    yield Output(
        pseudonymized_headers,
        output_name="conversation_headers",
        metadata={
            "rejected": headers.rejected.height,
            "user_ids": "pseudonymized",
            **frame_metadata(pseudonymized_headers, days=days),
        },
    )
    if privacy.keep_user_mapping:
        mapping = privacy.user_mapping(headers.valid)
        # Rows only: a preview would show the raw ids in the UI.
        yield Output(mapping, output_name="user_pseudonyms", metadata={"rows": mapping.height})
    reasons = errors.group_by("table", "reason").len().sort("len", descending=True)
    now_failing = _error_keys(errors)
    recovered = sorted(previous_errors - now_failing)
    if recovered:
        context.log.info(
            f"{len(recovered)} record(s) that failed before now pass: {recovered[:20]}"
        )
    yield Output(
        errors,
        output_name="processing_errors",
        metadata={
            "errors_by_reason": MetadataValue.md(markdown_table(reasons, rows=50)),
            # Against the same days before this run: fixed at the source, or still failing.
            "recovered": len(recovered),
            "still_failing": len(previous_errors & now_failing),
            "new_errors": len(now_failing - previous_errors),
            "recovered_records": MetadataValue.json([list(key) for key in recovered[:50]]),
            "pii_findings": MetadataValue.json(error_pii_findings),
            **frame_metadata(errors.drop("record"), days=days),
        },
    )


@asset(
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    io_manager_key=io_manager_key("conversations"),
    group_name=GROUP,
    kinds={"polars", "parquet"},
    ins={
        "conversation_headers": AssetIn(),
        "conversation_messages": messages_of_conversations_started_that_day(),
    },
    description="One row per conversation: user, model, channel, start and end, turns, "
    "messages per role, tokens, latency, rating and feedback counts.",
)
def conversations(
    context: AssetExecutionContext,
    conversation_headers: pl.DataFrame,
    conversation_messages: pl.DataFrame,
) -> Output[pl.DataFrame]:
    started = time.perf_counter()
    summary = build_conversations(conversation_headers, conversation_messages)
    seconds = time.perf_counter() - started
    return Output(
        summary,
        metadata={
            "build_seconds": round(seconds, 3),
            "messages_read": conversation_messages.height,
            "conversations_without_messages": summary.filter(pl.col("message_count") == 0).height,
            "conversations_by_model": MetadataValue.json(
                dict(summary.group_by("model").len().sort("model").iter_rows())
            ),
            **frame_metadata(summary, days=len(days_in(context.partition_time_window))),
        },
    )
