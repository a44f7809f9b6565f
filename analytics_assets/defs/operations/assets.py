"""processing_stats: the history of the pipeline's runs, what they cost, and how long a
range would take.

Not partitioned: a row is a run, and a run covers a range of days (a single-run backfill),
so no day owns it; each materialization rebuilds the whole table from the instance's event
log, which is the source of truth and holds every run.
"""

import polars as pl
from dagster import AssetExecutionContext, Config, MaterializeResult, MetadataValue, asset

from analytics_assets import tables
from analytics_assets.defs.ingestion.jobs import INGESTION_JOB
from analytics_assets.defs.metadata import markdown_table
from analytics_assets.defs.operations.history import read_run_history
from analytics_assets.operations.history import measured_runs, runs_frame, seconds_per_day_chart
from analytics_assets.operations.prediction import predict_duration
from analytics_assets.storage.placement import lake_only

LATEST_RUNS_SHOWN = 20
# What an operator compares at a glance; the stored table has every column.
LATEST_RUNS_COLUMNS = [
    "run_id", "started", "status", "days", "duration_seconds", "rows", "rows_per_second",
    "cpu_seconds", "peak_rss_mb", "retries", "rejected_records",
]  # fmt: skip


class ProcessingStatsConfig(Config):
    # The ranges, in days, to predict the duration of; e.g. [90] before a backfill.
    predict_days: list[int] = [1, 7, 30]
    # The job the prediction is for: only its finished, successful runs are fitted.
    predict_job: str = INGESTION_JOB


@asset(
    name=tables.PROCESSING_STATS,
    **lake_only(),
    group_name="operations",
    kinds={"dagster", "polars", "parquet"},
    description="One row per run of the measured steps: started, duration, days, rows, "
    "rows/s, CPU seconds, peak memory, retries, rejected records; with a chart of seconds per "
    "day and the predicted duration of a range (docs/operations.md).",
)
def processing_stats(
    context: AssetExecutionContext, config: ProcessingStatsConfig
) -> MaterializeResult[pl.DataFrame]:
    runs = runs_frame(read_run_history(context.instance))
    history = measured_runs(runs, config.predict_job)
    predictions = [predict_duration(history, days) for days in config.predict_days]
    for prediction in predictions:
        context.log.info(f"{config.predict_job}: {prediction.describe()}")
    latest = runs.sort("started", descending=True, nulls_last=True).select(LATEST_RUNS_COLUMNS)
    metadata = {
        "runs": runs.height,
        "latest_runs": MetadataValue.md(markdown_table(latest, rows=LATEST_RUNS_SHOWN)),
        "seconds_per_day_vega_lite": MetadataValue.json(seconds_per_day_chart(runs)),
        "predicted_durations": MetadataValue.md(
            "\n".join(f"- {prediction.describe()}" for prediction in predictions)
        ),
        "prediction_job": config.predict_job,
        "prediction_runs_used": len(history),
        # One plottable number per requested range.
        **{
            f"predicted_seconds_{prediction.days}_days": prediction.seconds
            for prediction in predictions
            if prediction.seconds is not None
        },
    }
    return MaterializeResult(value=runs, metadata=metadata)
