"""The history of runs read from the Dagster instance: each measured step's `run/...`
figures (operations/usage.py), the days each run materialized, its duration and status from
the run storage, its retries from the step stats and its rejected records from
processing_errors' per-day metadata."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from dagster import AssetKey, DagsterInstance, EventLogRecord, RunsFilter

from analytics_assets import tables
from analytics_assets.operations.history import RunRecord, StepFigures, measured_runs, runs_frame
from analytics_assets.operations.prediction import DurationPrediction, MeasuredRun, predict_duration
from analytics_assets.operations.usage import PROCESS_PEAK, STEP_PEAK

# The steps that record their cost, in pipeline order (validated_records' figures are on
# conversation_messages, translations' on conversation_translations).
MEASURED_ASSETS = (
    tables.NOCODB_RAW_PAGES,
    tables.CONVERSATION_MESSAGES,
    tables.MESSAGE_SIGNALS,
    tables.CONVERSATION_TRANSLATIONS,
    tables.CONVERSATION_CATEGORIES,
    tables.CONVERSATION_ANALYTICS,
    tables.DAILY_REPORT,
)
# A year of daily runs of every measured asset, newest first: enough for the table and the
# fit, and a bound on what one read of the event log costs.
MAX_MATERIALIZATIONS_PER_ASSET = 5_000
_PAGE = 1_000
# The tag Dagster's run retries (run_retries in dagster.yaml) put on a re-run of a failed run.
RETRY_NUMBER_TAG = "dagster/retry_number"


def _materializations(
    instance: DagsterInstance, asset: str, limit: int
) -> Iterator[EventLogRecord]:
    """The newest `limit` materializations of `asset`, newest first."""
    cursor = None
    fetched = 0
    while fetched < limit:
        page = instance.fetch_materializations(
            AssetKey(asset), limit=min(_PAGE, limit - fetched), cursor=cursor
        )
        yield from page.records
        fetched += len(page.records)
        if not page.has_more:
            return
        cursor = page.cursor


def _plain(metadata: dict[str, Any]) -> dict[str, Any]:
    return {name: getattr(value, "value", value) for name, value in metadata.items()}


def _step_figures(asset: str, metadata: dict[str, Any]) -> StepFigures | None:
    if "run/cpu_seconds" not in metadata:
        # Materialized before the steps were measured, or by another code path.
        return None
    peak_is_the_steps = f"run/{STEP_PEAK}" in metadata
    peak = metadata.get(f"run/{STEP_PEAK}", metadata.get(f"run/{PROCESS_PEAK}"))
    return StepFigures(
        asset=asset,
        cpu_seconds=float(metadata["run/cpu_seconds"]),
        wall_seconds=float(metadata.get("run/wall_seconds") or 0.0),
        peak_rss_mb=float(peak or 0.0),
        peak_is_the_steps=peak_is_the_steps,
        rows=int(metadata.get("run/rows") or 0),
        peak_rss_growth_mb=metadata.get("run/peak_rss_growth_mb"),
    )


def _retries(instance: DagsterInstance, run_id: str) -> int:
    return sum(max((step.attempts or 1) - 1, 0) for step in instance.get_run_step_stats(run_id))


def read_run_history(
    instance: DagsterInstance, max_materializations: int = MAX_MATERIALIZATIONS_PER_ASSET
) -> list[RunRecord]:
    """Every run (within the newest `max_materializations` of each measured asset) that
    materialized a measured step."""
    steps: dict[str, dict[str, StepFigures]] = defaultdict(dict)
    partitions: dict[str, set[str]] = defaultdict(set)
    for asset in MEASURED_ASSETS:
        for record in _materializations(instance, asset, max_materializations):
            materialization = record.asset_materialization
            figures = _step_figures(asset, _plain(materialization.metadata))
            if figures is None:
                continue
            # Every day of a run carries the same run-level figures: one is the step's.
            steps[record.run_id].setdefault(asset, figures)
            if materialization.partition:
                partitions[record.run_id].add(materialization.partition)
    if not steps:
        return []
    rejected: dict[str, dict[str, int]] = defaultdict(dict)
    for record in _materializations(instance, tables.PROCESSING_ERRORS, max_materializations):
        if record.run_id in steps:
            metadata = _plain(record.asset_materialization.metadata)
            day = record.asset_materialization.partition or ""
            # A record kept with a wrong value left empty is in processing_errors, not lost.
            rejected[record.run_id].setdefault(
                day,
                int(metadata.get("errors") or 0) - int(metadata.get("kept_without_values") or 0),
            )
    run_records = instance.get_run_records(RunsFilter(run_ids=list(steps)))
    history = []
    for run_record in run_records:
        run = run_record.dagster_run
        started, ended = run_record.start_time, run_record.end_time
        by_asset = steps[run.run_id]
        history.append(
            RunRecord(
                run_id=run.run_id,
                job=run.job_name,
                status=run.status.value,
                started=datetime.fromtimestamp(started, UTC) if started else None,
                duration_seconds=ended - started if started and ended else None,
                partitions=sorted(partitions[run.run_id]),
                steps=[by_asset[asset] for asset in MEASURED_ASSETS if asset in by_asset],
                retries=_retries(instance, run.run_id),
                rejected_records=sum(rejected[run.run_id].values()),
                run_attempt=1 + int(run.tags.get(RETRY_NUMBER_TAG, 0)),
            )
        )
    return history


def predict_from_instance(
    instance: DagsterInstance, job: str, days: int
) -> tuple[DurationPrediction, list[MeasuredRun]]:
    """The predicted duration of a run of `job` over `days` days, and the past runs it is
    fitted on (the finished, successful runs of `job` in the instance's history)."""
    history = measured_runs(runs_frame(read_run_history(instance)), job)
    return predict_duration(history, days), history
