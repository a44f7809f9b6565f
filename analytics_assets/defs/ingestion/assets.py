"""Ingestion: NocoDB pages -> raw records -> validated messages and headers -> conversations."""

import json
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from datetime import date

import polars as pl
from dagster import (
    AssetExecutionContext,
    AssetIn,
    BackfillPolicy,
    Backoff,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    asset,
    multi_asset,
)

from analytics_assets import tables
from analytics_assets.defs.day_metadata import (
    add_day_metadata,
    add_next_day_digests,
    conversations_metadata,
    errors_metadata,
    messages_metadata,
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
from analytics_assets.defs.storage.leases import PartitionLeaseResource
from analytics_assets.defs.storage.placement import stored_spec
from analytics_assets.nocodb.errors import NocoDBAuthError, NocoDBNotFoundError
from analytics_assets.operations.usage import StepUsage
from analytics_assets.privacy.erasure import drop_tombstoned
from analytics_assets.sources.schema import TABLE_KINDS
from analytics_assets.storage.lake import Lake
from analytics_assets.storage.placement import lake_and_mongo, lake_only
from analytics_assets.transforms.conversations import build_conversations
from analytics_assets.transforms.raw import empty_raw_frame
from analytics_assets.transforms.records import (
    is_kept_without_values,
    is_superseded,
    reason_without_values,
    validate_conversation_headers,
    validate_messages,
)

GROUP = "ingestion"
# A multi-day range runs as one run that fetches and writes day by day.
SINGLE_RUN = BackfillPolicy.single_run()


@contextmanager
def _configuration_errors_not_retried():
    """A wrong token, or a table or required column the source does not have, fails the step
    once: the step's retry policy spent about five minutes of waits on it, in every run."""
    try:
        yield
    except (NocoDBAuthError, NocoDBNotFoundError) as error:
        raise Failure(description=str(error), allow_retries=False) from error


def _throughput(rows: int, seconds: float) -> float | None:
    return round(rows / seconds, 1) if seconds > 0 else None


@asset(
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    **lake_only(),
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
    lake: LakeResource,
    partition_leases: PartitionLeaseResource,
) -> MaterializeResult[pl.DataFrame]:
    days = days_in(context.partition_time_window)
    # The run's first step: no other run writes these days until this run ends (a range run
    # is not held back by the queue's per-partition limit; defs/storage/leases.py).
    holding = partition_leases.hold(context.run_id, days)
    if holding and holding.waited_s:
        context.log.info(f"Waited {holding.waited_s:.1f} s for other runs' leases on {days}")
    jobs = [(day, kind) for day in days for kind in TABLE_KINDS]
    per_table: Counter[str] = Counter()
    pages = resumed = 0
    results: dict[tuple, pl.DataFrame] = {}
    usage = StepUsage.start()
    started = time.perf_counter()
    # Saved pages are resumed by this run's retries and re-executions only: a new run (the
    # change sensor's, after an edit) reading a failed run's pages would miss the edit.
    with (
        _configuration_errors_not_retried(),
        record_source.open(context.run.root_run_id or context.run_id) as source,
    ):
        stats_before = source.stats()
        # A long range: each table read once by key range and split by day locally, the
        # tables at the same time.
        ranges = source.fetch_ranges(list(TABLE_KINDS), days, record_source.fetch_workers)
        seconds = round(time.perf_counter() - started, 1)
        for kind, ranged in ranges.items():
            for day, result in ranged.items():
                results[(day, kind)] = result.frame
                per_table[kind] += result.frame.height
                pages += result.pages
            # The seconds are the range read's, both tables' (read at the same time).
            line = {"event": "fetched_range", "table": kind, "days": len(days),
                    "records": per_table[kind], "range_seconds": seconds}  # fmt: skip
            context.log.info(json.dumps(line))
        remaining = [job for job in jobs if job not in results]
        with ThreadPoolExecutor(record_source.fetch_workers) as pool:
            futures = {
                pool.submit(source.fetch_day, kind, day): (day, kind) for day, kind in remaining
            }
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
                            "done": f"{done}/{len(remaining)}",
                            "eta_s": round(elapsed / done * (len(remaining) - done), 1),
                        }
                    )
                )
        stats_after = source.stats()
        source_description = source.describe()
        not_in_source = dict(getattr(source, "fields_not_in_source", {}))
    if not_in_source:
        context.log.warning(
            f"the source has no column for {not_in_source}: read as null (map them in "
            "NOCODB_FIELD_MAP if they are named otherwise)"
        )
    # Days and tables in order, whatever order the fetches finished in.
    raw = pl.concat([empty_raw_frame(), *(results[job] for job in jobs)])
    # Records erased on request stay out, even while the source still holds them.
    raw, erased = drop_tombstoned(raw, lake.lake(), record_source.source_schema, privacy.digester)
    seconds = time.perf_counter() - started
    # Still ours (a lease lost to expiry means another run may be writing these days).
    partition_leases.confirm(context.run_id, days)
    counters = {
        name: round(stats_after[name] - stats_before.get(name, 0), 3)
        for name in ("requests", "hedged", "retries", "throttled", "retry_wait_s")
        if name in stats_after
    }
    return MaterializeResult(
        value=raw,
        metadata={
            "source": source_description,
            "days": len(days),
            "pages": pages,
            "resumed_pages": resumed,
            **counters,
            "records_per_table": MetadataValue.json(dict(per_table)),
            "fields_not_in_source": MetadataValue.json(not_in_source),
            "erased_records_skipped": erased,
            "lease_wait_s": holding.waited_s if holding else None,
            "lease_acquired_at": holding.acquired_at if holding else None,
            "fetch_seconds": round(seconds, 3),
            "records_per_second": _throughput(raw.height, seconds),
            **frame_metadata(raw.drop("record"), days=len(days)),
            **run_metadata(context, **usage.figures(raw.height)),
        },
    )


def _count_by_day(frame: pl.DataFrame) -> dict:
    return dict(frame.group_by("day").len().iter_rows())


_ERROR_KEY = ["day", "table", "stage", "record_key"]


def _error_keys(errors: pl.DataFrame) -> set[tuple]:
    """(day, table, stage, record_key) of each error: a day's own keys are compared with the
    same day's before the run."""
    return set(errors.select(_ERROR_KEY).iter_rows())


def _previous_errors(lake: Lake, days: list) -> set[tuple]:
    errors, _ = lake.read_days(tables.PROCESSING_ERRORS, days, _ERROR_KEY)
    return _error_keys(errors) if errors is not None else set()


def _errors_of_day(
    accepted_by_day: dict, previous_errors: set[tuple]
) -> Callable[[date, pl.DataFrame], dict]:
    """processing_errors' metadata of one day: `errors_metadata`, what its errors are, and
    against the same day before this run, what recovered (fixed at the source), still fails
    and is new. Given to the whole run's materializations alike, a 14-day range showed its
    10 new errors on each of its days."""
    of_day = errors_metadata(accepted_by_day)

    def metadata(day: date, errors: pl.DataFrame) -> dict:
        before = {key for key in previous_errors if key[0] == day}
        now = _error_keys(errors)
        recovered = sorted(before - now)
        reasons = (
            errors.group_by("table", reason_without_values(pl.col("reason")))
            .len()
            .sort("len", "table", "reason", descending=[True, False, False])
        )
        return {
            **of_day(day, errors),
            "errors_by_reason": MetadataValue.md(markdown_table(reasons, rows=50)),
            "recovered": len(recovered),
            "still_failing": len(before & now),
            "new_errors": len(now - before),
            "recovered_records": MetadataValue.json([list(key[1:]) for key in recovered[:50]]),
        }

    return metadata


@multi_asset(
    specs=[
        stored_spec(
            tables.CONVERSATION_MESSAGES,
            lake_and_mongo("conversation_messages"),
            deps=[tables.NOCODB_RAW_PAGES],
            group_name=GROUP,
            kinds={"polars", "parquet", "mongodb"},
            description="Typed, validated messages, one row per message and day (newest copy).",
        ),
        stored_spec(
            tables.CONVERSATION_HEADERS,
            lake_only(),
            deps=[tables.NOCODB_RAW_PAGES],
            group_name=GROUP,
            kinds={"polars", "parquet"},
            description="Typed, validated conversation records as the source holds them.",
        ),
        stored_spec(
            tables.PROCESSING_ERRORS,
            lake_and_mongo("processing_errors", stage="validate"),
            deps=[tables.NOCODB_RAW_PAGES],
            group_name=GROUP,
            kinds={"polars", "parquet", "mongodb"},
            description="Every rejected record, and every record kept with a wrong optional value "
            "left empty, with its table, ids, stage and reason.",
        ),
        stored_spec(
            tables.USER_PSEUDONYMS,
            lake_only(),
            deps=[tables.NOCODB_RAW_PAGES],
            group_name=GROUP,
            kinds={"polars", "parquet"},
            # Written only where the deployment keeps the mapping (keep_user_mapping).
            skippable=True,
            description="Restricted: pseudonym -> user id per day, where the deployment "
            "allows a mapping. Analytics tables hold only the pseudonyms.",
        ),
    ],
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    # A day of messages in memory: the `heavy` pod size under the k8s executor.
    op_tags=HEAVY_STEP_TAGS,
)
def validated_records(
    context: AssetExecutionContext,
    nocodb_raw_pages: pl.DataFrame,
    record_source: RecordSourceResource,
    lake: LakeResource,
    privacy: PrivacyResource,
):
    usage = StepUsage.start()
    started = time.perf_counter()
    run_days = days_in(context.partition_time_window)
    # The days' errors as they stood before this run: a rebuilt day reports what recovered.
    previous_errors = _previous_errors(lake.lake(), run_days)
    schema = record_source.source_schema
    messages = validate_messages(nocodb_raw_pages, schema)
    # Analytics never hold raw PII (unless a restricted deployment keeps it): categorization
    # and translation read this text too. The raw records stay in nocodb_raw_pages.
    valid_messages, pii_findings = privacy.anonymize_table(
        tables.CONVERSATION_MESSAGES, messages.valid
    )
    headers = validate_conversation_headers(nocodb_raw_pages, schema)
    # From here on a user is their keyed pseudonym: conversations, scores, user analytics and
    # reports join on it and never see the source's id.
    pseudonymized_headers, header_pii_findings = privacy.anonymize_table(
        tables.CONVERSATION_HEADERS, privacy.pseudonymize_users(headers.valid)
    )
    errors = pl.concat([messages.rejected, headers.rejected]).sort("day", "table", "key")
    errors = privacy.pseudonymize_records(
        errors, user_field=schema.source_field("conversations", "user_id")
    )
    errors, error_pii_findings = privacy.anonymize_table(tables.PROCESSING_ERRORS, errors)
    seconds = time.perf_counter() - started
    raw_messages = messages.records
    kept = is_kept_without_values(pl.col("reason"))
    context.log.info(
        f"validated {raw_messages} message and {headers.records} conversation records in "
        f"{seconds:.3f}s; {errors.height} in processing_errors, "
        f"{errors.filter(kept).height} of them kept with a value left empty"
    )
    # Each day's own counts on its materialization; the run's figures are named run/....
    add_day_metadata(
        context,
        valid_messages,
        messages_metadata(
            _count_by_day(messages.rejected.filter(~kept)),
            _count_by_day(messages.rejected.filter(is_superseded(pl.col("reason")))),
            _count_by_day(messages.rejected.filter(kept)),
        ),
        asset_key=tables.CONVERSATION_MESSAGES,
    )
    yield MaterializeResult(
        asset_key=tables.CONVERSATION_MESSAGES,
        value=valid_messages,
        metadata={
            "pii_policy": privacy.policy_for(tables.CONVERSATION_MESSAGES),
            **run_metadata(
                context,
                records_with_control_characters_removed=messages.records_with_controls_removed,
                pii_findings=MetadataValue.json(pii_findings),
                validate_seconds=round(seconds, 3),
                messages_per_second=_throughput(raw_messages, seconds),
                **usage.figures(nocodb_raw_pages.height),
            ),
        },
    )
    rejected_headers = _count_by_day(headers.rejected.filter(~kept))
    kept_headers = _count_by_day(headers.rejected.filter(kept))
    add_day_metadata(
        context,
        pseudonymized_headers,
        lambda day, headers_of_day: {
            **frame_metadata(headers_of_day),
            "rejected": rejected_headers.get(day, 0),
            "kept_without_values": kept_headers.get(day, 0),
        },
        asset_key=tables.CONVERSATION_HEADERS,
    )
    yield MaterializeResult(
        asset_key=tables.CONVERSATION_HEADERS,
        value=pseudonymized_headers,
        metadata={
            "user_ids": "pseudonymized",
            **run_metadata(
                context,
                records_with_control_characters_removed=headers.records_with_controls_removed,
                pii_findings=MetadataValue.json(header_pii_findings),
            ),
        },
    )
    if privacy.keep_user_mapping:
        mapping = privacy.user_mapping(headers.valid)
        # Rows only: a preview would show the raw ids in the UI.
        yield MaterializeResult(
            asset_key=tables.USER_PSEUDONYMS, value=mapping, metadata={"rows": mapping.height}
        )
    recovered = sorted(previous_errors - _error_keys(errors))
    if recovered:
        context.log.info(
            f"{len(recovered)} record(s) that failed before now pass: {recovered[:20]}"
        )
    accepted = _count_by_day(pl.concat([valid_messages.select("day"), headers.valid.select("day")]))
    add_day_metadata(
        context,
        errors,
        _errors_of_day(accepted, previous_errors),
        asset_key=tables.PROCESSING_ERRORS,
    )
    yield MaterializeResult(
        asset_key=tables.PROCESSING_ERRORS,
        value=errors,
        metadata=run_metadata(context, pii_findings=MetadataValue.json(error_pii_findings)),
    )


@asset(
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    **lake_only(),
    group_name=GROUP,
    kinds={"polars", "parquet"},
    # A day of messages in memory: the `heavy` pod size under the k8s executor.
    op_tags=HEAVY_STEP_TAGS,
    ins={
        tables.CONVERSATION_HEADERS: AssetIn(),
        tables.CONVERSATION_MESSAGES: messages_of_conversations_started_that_day(),
    },
    description="One row per conversation: user, model, channel, start and end, turns, "
    "messages per role, tokens, latency, rating and feedback counts.",
)
def conversations(
    context: AssetExecutionContext,
    conversation_headers: pl.DataFrame,
    conversation_messages: pl.DataFrame,
) -> MaterializeResult[pl.DataFrame]:
    started = time.perf_counter()
    summary = build_conversations(conversation_headers, conversation_messages)
    seconds = time.perf_counter() - started
    add_day_metadata(context, summary, conversations_metadata)
    add_next_day_digests(
        context, conversation_headers, {tables.CONVERSATION_MESSAGES: conversation_messages}
    )
    return MaterializeResult(
        value=summary,
        metadata=run_metadata(
            context,
            build_seconds=round(seconds, 3),
            messages_read=conversation_messages.height,
        ),
    )
