"""The daily job: every asset partitioned by day, whichever domain defines it.

Its selection is computed from the assets themselves (their partitions definition), not
from a list of names, so a new daily asset is in the job, its schedule and the sync
sensors the moment it exists. The model tier's assets (kind `pytorch`) are left out: they
hold the GPU pool and run in their own jobs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from dagster import (
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    Definitions,
    build_schedule_from_partitioned_job,
    define_asset_job,
)

from analytics_assets.defs.ingestion.across_midnight import across_midnight_sensor
from analytics_assets.defs.partitions import daily_partitions
from analytics_assets.defs.storage.leases import lease_heartbeat_hook

INGESTION_JOB = "ingestion_job"
MODEL_TIER_KIND = "pytorch"


def daily_asset_keys(assets: Iterable[Any]) -> list[AssetKey]:
    """The keys of every daily-partitioned asset outside the model tier."""
    keys = []
    for definition in assets:
        if not isinstance(definition, AssetsDefinition) or not definition.is_materializable:
            continue
        if definition.partitions_def != daily_partitions:
            continue
        keys += [spec.key for spec in definition.specs if MODEL_TIER_KIND not in spec.kinds]
    return sorted(keys, key=lambda key: key.to_user_string())


def daily_job_definitions(assets: Iterable[Any]) -> Definitions:
    """`ingestion_job` over `assets`' daily ones, its schedule, and the sensor that builds
    a day again once the conversations it started have gone on past midnight."""
    assets = list(assets)
    daily_keys = daily_asset_keys(assets)
    job = define_asset_job(
        INGESTION_JOB,
        selection=AssetSelection.assets(*daily_keys),
        partitions_def=daily_partitions,
        description="Pull a day (or a range of days) from the source and rebuild every daily "
        "asset of it.",
        # Each step renews the run's day leases on whichever worker it ran (the first step
        # takes them; defs/storage/leases.py).
        hooks={lease_heartbeat_hook},
    )
    # Yesterday's partition early each morning (UTC). Off until an operator turns it on.
    return Definitions(
        jobs=[job],
        schedules=[build_schedule_from_partitioned_job(job, hour_of_day=2)],
        sensors=[across_midnight_sensor(INGESTION_JOB, assets, daily_keys)],
    )
