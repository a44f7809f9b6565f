"""The main job and its daily schedule."""

from __future__ import annotations

from dagster import AssetSelection, build_schedule_from_partitioned_job, define_asset_job

from analytics_assets.defs.ingestion.partitions import (
    daily_partitions,
    monthly_partitions,
    weekly_partitions,
)

ingestion_job = define_asset_job(
    "ingestion_job",
    # Every daily asset: ingestion and what is computed from it.
    selection=AssetSelection.groups("ingestion")
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

# Yesterday's partition early each morning; each week and month once it has closed (UTC).
# Off until an operator turns them on.
daily_ingestion_schedule = build_schedule_from_partitioned_job(ingestion_job, hour_of_day=2)
weekly_report_schedule = build_schedule_from_partitioned_job(
    weekly_report_job, hour_of_day=4, day_of_week=1
)
monthly_report_schedule = build_schedule_from_partitioned_job(
    monthly_report_job, hour_of_day=5, day_of_month=1
)
