"""Operations' definitions: processing_stats, and a job and schedule that refresh it."""

from dagster import AssetSelection, Definitions, ScheduleDefinition, define_asset_job

from analytics_assets import tables
from analytics_assets.defs.operations.assets import processing_stats

processing_stats_job = define_asset_job(
    "processing_stats_job",
    selection=AssetSelection.assets(tables.PROCESSING_STATS),
    description="Rebuild the history of runs and the duration predictions.",
)

defs = Definitions(
    assets=[processing_stats],
    jobs=[processing_stats_job],
    # After the daily run (02:00 UTC) has finished. Off until an operator turns it on.
    schedules=[ScheduleDefinition(job=processing_stats_job, cron_schedule="0 6 * * *")],
)
