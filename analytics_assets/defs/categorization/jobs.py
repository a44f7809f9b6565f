"""The model tier's own jobs: they hold the GPU pool, so they run apart from the daily job."""

from __future__ import annotations

from dagster import AssetSelection, define_asset_job

from analytics_assets import tables
from analytics_assets.defs.partitions import daily_partitions

train_heads_job = define_asset_job(
    "train_heads_job",
    selection=AssetSelection.assets(tables.CATEGORY_HEADS),
    description="Train category heads on the corrections; adopt those that beat the current.",
)

discovery_job = define_asset_job(
    "discovery_job",
    selection=AssetSelection.assets(tables.TOPIC_DISCOVERY),
    partitions_def=daily_partitions,
    description="Cluster each day's `other` conversations to surface new topics (model tier).",
)
