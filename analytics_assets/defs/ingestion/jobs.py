"""The main job and its daily schedule."""

from __future__ import annotations

from dagster import AssetSelection, build_schedule_from_partitioned_job, define_asset_job

from analytics_assets.defs.ingestion.partitions import daily_partitions

ingestion_job = define_asset_job(
    "ingestion_job",
    # Every daily asset: ingestion and what is computed from it.
    selection=AssetSelection.groups("ingestion", "analytics")
    | AssetSelection.assets("conversation_categories", "message_signals"),
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

# Yesterday's partition, early each morning (UTC); off until an operator turns it on.
daily_ingestion_schedule = build_schedule_from_partitioned_job(ingestion_job, hour_of_day=2)
