"""Seconds for `user_return_predictions`' work in a backfill: a forecast for every day of a
history, this checkout's `analytics/return_prediction.py` against another version of the
file, in the same process, in turns (this, other, this, other), on the same activity. Each
version runs what its asset runs over a range: `forecasts` where it has it, else `forecast`
once per day.

The activity is `simulated_activity` (a known process; no real per-user activity ships
with the project): `--users` users over `--days` days, each day forecast from its own
history as a daily run does. 5 % of its sentiment, quality and message counts are made null
and 2 % of its user-days repeated, as user_analytics can hand over, so that the grids' sums
and the null handling are exercised too. Both versions must build the same feature rows
over the whole history, bit for bit, and serve the same predictions and evaluation on every
day (checked; the unrounded calibration means of the evaluation aside), so the ratio is the
cost of the same answers.

    # the version before the range forecasts of 2026-12-06 (d5d3c57~1: before 2026-12-05's):
    git show db37d5b:analytics_assets/analytics/return_prediction.py > /tmp/rp_before.py
    .venv/bin/python benchmarks/bench_return_prediction.py --against /tmp/rp_before.py
        [--users 18000] [--days 90]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.analytics import return_prediction

FIRST_DAY = date(2026, 9, 1)


def _module_from(path: str):
    spec = importlib.util.spec_from_file_location("return_prediction_under_test", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def with_nulls_and_repeats(activity: pl.DataFrame, seed: int = 11) -> pl.DataFrame:
    rng = np.random.default_rng(seed)

    def nulled(name: str) -> pl.Expr:
        hole = pl.Series(rng.random(activity.height) < 0.05)
        return pl.when(hole).then(None).otherwise(pl.col(name)).alias(name)

    holed = activity.with_columns(
        nulled("sentiment_end_mean"), nulled("quality_mean"), nulled("messages")
    )
    repeats = holed.sample(fraction=0.02, seed=seed)
    return pl.concat([holed, repeats])


def _every_day(module, activity, days: int) -> tuple[float, list]:
    """What the asset runs over the range: `forecasts` where the version has it (one
    single-run backfill), else `forecast` per day (the versions before it)."""
    every_day = [FIRST_DAY + timedelta(days=d) for d in range(days)]
    started = time.perf_counter()
    if hasattr(module, "forecasts"):
        results = list(module.forecasts(activity, every_day))
    else:
        results = [module.forecast(activity, day) for day in every_day]
    return time.perf_counter() - started, results


# The model's outputs are rounded (5 and 4 decimals). Versions whose fits stop at different
# points within ~1e-8 of the same minimum (before 2026-12-06, a fit stopped where its loss
# no longer resolved a step) can round a value either side of a boundary.
_ROUNDED = {"return_probability_7d": 1e-5, "expected_conversations_7d": 1e-4}


def _rounded_apart(ours: pl.DataFrame, theirs: pl.DataFrame) -> int:
    """Asserts the same predictions, exactly but for a last rounded digit of the model's
    outputs; returns how many values differ in it."""
    exact = [name for name in ours.columns if name not in _ROUNDED]
    assert_frame_equal(ours.select(exact), theirs.select(exact), check_exact=True)
    apart = 0
    for name, unit in _ROUNDED.items():
        gap = np.abs(ours[name].to_numpy() - theirs[name].to_numpy())
        assert np.all(gap <= unit * 1.000001), name
        apart += int(np.count_nonzero(gap))
    return apart


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--against", required=True, help="another return_prediction.py")
    parser.add_argument("--users", type=int, default=18000)
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args()
    other = _module_from(args.against)
    activity = with_nulls_and_repeats(
        return_prediction.simulated_activity(users=args.users, days=args.days, first_day=FIRST_DAY)
    )
    last_day = FIRST_DAY + timedelta(days=args.days - 1)
    assert_frame_equal(
        return_prediction.user_day_rows(activity, FIRST_DAY, last_day),
        other.user_day_rows(activity, FIRST_DAY, last_day),
        check_exact=True,
    )
    print(f"{args.users:,} simulated users, {args.days} days, {activity.height:,} active days")
    seconds: dict[str, list[float]] = {"this": [], "other": []}
    results = {}
    for name, module in (("this", return_prediction), ("other", other)) * 2:
        elapsed, results[name] = _every_day(module, activity, args.days)
        seconds[name].append(elapsed)
        print(f"  {name:<5} {elapsed:6.2f} s ({elapsed / args.days * 1000:.0f} ms a day)")
    rounded_apart = 0
    for ours, theirs in zip(results["this"], results["other"], strict=True):
        rounded_apart += _rounded_apart(ours.predictions, theirs.predictions)
        assert ours.evaluation.method == theirs.evaluation.method
        assert ours.evaluation.count_method == theirs.evaluation.count_method
    fits = sum(f.evaluation.model is not None for f in results["this"])
    best = {name: min(values) for name, values in seconds.items()}
    print(
        f"same feature rows over the history, same predictions and served methods on all "
        f"{args.days} days ({fits} with a model fit; {rounded_apart} model outputs one unit "
        f"apart in their last rounded digit); "
        f"best of two: this {best['this']:.2f} s, other {best['other']:.2f} s, "
        f"ratio other/this {best['other'] / best['this']:.2f}"
    )


if __name__ == "__main__":
    main()
