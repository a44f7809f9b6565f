"""The main job and its daily schedule."""

from __future__ import annotations

from datetime import UTC, datetime, time

from dagster import (
    AssetSelection,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    build_schedule_from_partitioned_job,
    define_asset_job,
    schedule,
)

from analytics_assets.defs.ingestion.partitions import (
    daily_partitions,
    monthly_partitions,
    weekly_partitions,
)

ingestion_job = define_asset_job(
    "ingestion_job",
    # Every daily asset: ingestion and what is computed from it.
    selection=AssetSelection.groups("ingestion", "translation")
    | AssetSelection.assets(
        "conversation_categories",
        "message_signals",
        "conversation_analytics",
        "daily_report",
        "user_analytics",
    ),
    partitions_def=daily_partitions,
    description="Pull a day (or a range of days) from the source and rebuild its lake files.",
)

train_heads_job = define_asset_job(
    "train_heads_job",
    selection=AssetSelection.assets("category_heads"),
    description="Train category heads on the corrections; adopt those that beat the current.",
)

discovery_job = define_asset_job(
    "discovery_job",
    selection=AssetSelection.assets("topic_discovery"),
    partitions_def=daily_partitions,
    description="Cluster each day's `other` conversations to surface new topics (model tier).",
)

weekly_report_job = define_asset_job(
    "weekly_report_job",
    selection=AssetSelection.assets("weekly_report"),
    partitions_def=weekly_partitions,
    description="Combine a week's daily reports.",
)

monthly_report_job = define_asset_job(
    "monthly_report_job",
    selection=AssetSelection.assets("monthly_report"),
    partitions_def=monthly_partitions,
    description="Combine a month's daily reports.",
)

# Yesterday's partition early each morning (UTC). Off until an operator turns it on.
daily_ingestion_schedule = build_schedule_from_partitioned_job(ingestion_job, hour_of_day=2)


def _closed_period_schedule(job, partitions_def, cron: str) -> ScheduleDefinition:
    """Each week or month once it has closed. The partitions include the period in progress
    (for period-to-date reports), so the key is the period that ended at the tick's midnight,
    not the last partition."""

    @schedule(
        name=f"{job.name}_schedule",
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        description=f"Materializes {job.name}'s period that closed at midnight UTC.",
    )
    def closed_period(context: ScheduleEvaluationContext) -> RunRequest:
        tick = context.scheduled_execution_time.astimezone(UTC)
        midnight = datetime.combine(tick.date(), time(), tzinfo=UTC)
        key = partitions_def.get_partition_key_for_timestamp(midnight.timestamp() - 1)
        return RunRequest(run_key=f"{job.name}:{key}", partition_key=key)

    return closed_period


weekly_report_schedule = _closed_period_schedule(weekly_report_job, weekly_partitions, "0 4 * * 1")
monthly_report_schedule = _closed_period_schedule(
    monthly_report_job, monthly_partitions, "0 5 1 * *"
)
