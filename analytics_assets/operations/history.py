"""The history of runs as a table: one row per run of the measured steps, with its duration,
days, rows, throughput, CPU seconds, peak memory, retries and rejected records; its chart;
and the past runs a duration prediction is fitted on.

Pure: plain records in, polars out, no Dagster (defs/operations/history.py reads them from
the instance).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import polars as pl

from analytics_assets.operations.prediction import MeasuredRun

SUCCESS = "SUCCESS"

RUNS_SCHEMA = {
    "run_id": pl.String(),
    "job": pl.String(),
    "status": pl.String(),
    "started": pl.Datetime("us", "UTC"),
    "duration_seconds": pl.Float64(),
    "days": pl.Int64(),
    "first_day": pl.String(),
    "last_day": pl.String(),
    "steps_measured": pl.Int64(),
    "rows": pl.Int64(),
    "rows_per_second": pl.Float64(),
    "seconds_per_day": pl.Float64(),
    "cpu_seconds": pl.Float64(),
    "peak_rss_mb": pl.Float64(),
    "peak_rss_scope": pl.String(),
    "peak_rss_growth_mb": pl.Float64(),
    "retries": pl.Int64(),
    "run_attempt": pl.Int64(),
    "rejected_records": pl.Int64(),
}


@dataclass(frozen=True)
class StepFigures:
    """One measured step of a run (its `run/...` metadata)."""

    asset: str
    cpu_seconds: float
    wall_seconds: float
    peak_rss_mb: float
    # False where only the process's lifetime peak could be read (see operations/usage.py).
    peak_is_the_steps: bool
    rows: int
    # What the step added to the process's resident memory at its peak, where measured.
    peak_rss_growth_mb: float | None = None


@dataclass(frozen=True)
class RunRecord:
    run_id: str
    job: str
    status: str
    started: datetime | None
    # None while the run has not finished.
    duration_seconds: float | None
    partitions: Sequence[str]
    # In pipeline order: the first step's rows are what the run read.
    steps: Sequence[StepFigures]
    retries: int
    rejected_records: int
    # 1, or 2, 3, ... for a run that re-runs a failed one (the instance's run_retries).
    run_attempt: int = 1


def _row(run: RunRecord) -> dict:
    days = sorted(set(run.partitions))
    rows = run.steps[0].rows if run.steps else 0
    duration = run.duration_seconds
    peaks = [step.peak_rss_mb for step in run.steps]
    growths = [step.peak_rss_growth_mb for step in run.steps if step.peak_rss_growth_mb is not None]
    return {
        "run_id": run.run_id,
        "job": run.job,
        "status": run.status,
        "started": run.started,
        "duration_seconds": round(duration, 3) if duration is not None else None,
        "days": len(days),
        "first_day": days[0] if days else None,
        "last_day": days[-1] if days else None,
        "steps_measured": len(run.steps),
        "rows": rows,
        "rows_per_second": round(rows / duration, 1) if duration else None,
        "seconds_per_day": round(duration / len(days), 3) if duration and days else None,
        "cpu_seconds": round(sum(step.cpu_seconds for step in run.steps), 3),
        "peak_rss_mb": max(peaks) if peaks else None,
        "peak_rss_scope": "step"
        if all(step.peak_is_the_steps for step in run.steps)
        else "process",
        "peak_rss_growth_mb": max(growths) if growths else None,
        "retries": run.retries,
        "run_attempt": run.run_attempt,
        "rejected_records": run.rejected_records,
    }


def runs_frame(runs: Sequence[RunRecord]) -> pl.DataFrame:
    """One row per run, oldest first."""
    frame = pl.DataFrame([_row(run) for run in runs], schema=RUNS_SCHEMA)
    return frame.sort("started", "run_id", nulls_last=True)


def measured_runs(frame: pl.DataFrame, job: str) -> list[MeasuredRun]:
    """The finished, successful runs of `job`: what a prediction for it is fitted on (a
    failed run's duration says nothing about a whole range's)."""
    done = frame.filter(
        (pl.col("job") == job)
        & (pl.col("status") == SUCCESS)
        & pl.col("duration_seconds").is_not_null()
        & (pl.col("days") > 0)
    )
    return [MeasuredRun(days, seconds) for days, seconds in
            done.select("days", "duration_seconds").iter_rows()]  # fmt: skip


def seconds_per_day_chart(frame: pl.DataFrame) -> dict:
    """Seconds per day of each finished run over time, as a Vega-Lite v5 spec with its data
    inline: a run that got slower per day stands out whatever its range."""
    values = [
        {
            "started": row["started"].isoformat(),
            "seconds_per_day": row["seconds_per_day"],
            "days": row["days"],
            "job": row["job"],
        }
        for row in frame.filter(pl.col("seconds_per_day").is_not_null()).iter_rows(named=True)
    ]
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": "Seconds per day of each run",
        "data": {"values": values},
        "mark": {"type": "line", "point": True},
        "encoding": {
            "x": {"field": "started", "type": "temporal", "title": "run started"},
            "y": {"field": "seconds_per_day", "type": "quantitative"},
            "color": {"field": "job", "type": "nominal"},
            "tooltip": [{"field": "days"}, {"field": "seconds_per_day"}],
        },
    }
