"""How long a run over a range of days will take, from how long past runs took.

The model is `seconds = a + b·days`: a run pays a fixed cost (starting, loading, the
partitions' bookkeeping) and a cost per day. It is fitted by least squares on past runs of
the same job. With too little history for a line (no run, or every run over the same number
of days, or a fit whose slope is not positive, which noise between short runs can produce)
it falls back to the mean seconds per day of the runs, scaled to the range.

Pure: the standard library only, no Dagster.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

LEAST_SQUARES = "least squares: seconds = a + b·days"
PER_DAY_MEAN = "mean seconds per day × days"
NO_HISTORY = "no measured run"


@dataclass(frozen=True)
class MeasuredRun:
    days: int
    seconds: float


@dataclass(frozen=True)
class DurationPrediction:
    days: int
    # None when there is no history to predict from.
    seconds: float | None
    # One standard error of the prediction; None when the history cannot give one (fewer
    # points than the model has parameters plus one).
    error_seconds: float | None
    method: str
    runs_used: int
    intercept_seconds: float | None = None
    seconds_per_day: float | None = None

    def describe(self) -> str:
        if self.seconds is None:
            return f"{self.days} day(s): no prediction ({self.method})"
        error = f" ± {self.error_seconds:.1f}" if self.error_seconds is not None else ""
        basis = f"{self.method}, {self.runs_used} run(s)"
        if self.intercept_seconds is not None:
            basis += f", a = {self.intercept_seconds:.2f} s, b = {self.seconds_per_day:.2f} s/day"
        elif self.seconds_per_day is not None:
            basis += f", {self.seconds_per_day:.2f} s/day"
        return f"{self.days} day(s): {self.seconds:.1f}{error} s ({basis})"


def _per_day_mean(runs: Sequence[MeasuredRun], days: int) -> DurationPrediction:
    rates = [run.seconds / run.days for run in runs]
    mean_rate = sum(rates) / len(rates)
    error = None
    if len(rates) >= 2:
        spread = math.sqrt(sum((rate - mean_rate) ** 2 for rate in rates) / (len(rates) - 1))
        error = spread * days
    return DurationPrediction(
        days, mean_rate * days, error, PER_DAY_MEAN, len(runs), seconds_per_day=mean_rate
    )


def predict_duration(runs: Sequence[MeasuredRun], days: int) -> DurationPrediction:
    """The predicted seconds of a run over `days` days, from `runs` (finished runs of the
    same job, each with its days and wall seconds)."""
    if days < 1:
        raise ValueError(f"a range has at least one day, got {days}")
    runs = [run for run in runs if run.days >= 1 and run.seconds >= 0]
    if not runs:
        return DurationPrediction(days, None, None, NO_HISTORY, 0)
    count = len(runs)
    mean_days = sum(run.days for run in runs) / count
    mean_seconds = sum(run.seconds for run in runs) / count
    spread_of_days = sum((run.days - mean_days) ** 2 for run in runs)
    if spread_of_days == 0:
        return _per_day_mean(runs, days)
    slope = sum((run.days - mean_days) * (run.seconds - mean_seconds) for run in runs)
    slope /= spread_of_days
    if slope <= 0:
        return _per_day_mean(runs, days)
    intercept = mean_seconds - slope * mean_days
    predicted = intercept + slope * days
    error = None
    if count > 2:
        squared_residuals = sum((run.seconds - intercept - slope * run.days) ** 2 for run in runs)
        residual_error = math.sqrt(squared_residuals / (count - 2))
        # The standard error of a new run's duration at `days` (not only of the line's mean).
        error = residual_error * math.sqrt(1 + 1 / count + (days - mean_days) ** 2 / spread_of_days)
    return DurationPrediction(
        days,
        max(predicted, 0.0),
        error,
        LEAST_SQUARES,
        count,
        intercept_seconds=intercept,
        seconds_per_day=slope,
    )
