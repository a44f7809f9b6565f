"""Return prediction (analytics/return_prediction.py) against the last-week baseline, on
three kinds of user activity, each scored by the same `forecast` the asset runs:

- cdnow: CDNOW's real purchase log (23,570 customers, Jan 1997 - Jun 1998, shipped in the
  `lifetimes` package of the dev extra): behaviour nobody on this team generated, a "return"
  being a purchase. The only data here we did not write.
- simulated: `simulated_activity`, a process whose return behaviour is known (lasting
  per-user rates, exponential lifetimes); the tests use it too.
- sample: the bundled sample generator (`sources/generator.py`) over 120 days at a lower
  volume per user than the demo's. Its users talk at a constant rate with no churn and no
  recency effect, so past activity predicts little beyond a user's overall rate.

For each source, forecasts on several days (`--days`, 7 days apart, ending on its last day)
and prints the evaluation days' AUC, Brier score, log loss, calibration error and the
count's MAE and Poisson deviance, model vs baseline, and which one was served. Under a
minute on one core.

    .venv/bin/python benchmarks/eval_user_predictions.py [--source cdnow simulated sample]
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.analytics.return_prediction import Evaluation, forecast, simulated_activity

METRICS = ("auc", "brier", "log_loss", "calibration_error", "count_mae", "count_poisson_deviance")


def cdnow_activity() -> pl.DataFrame:
    """CDNOW_master.txt: one line per purchase (customer, YYYYMMDD, CDs, dollars). Found
    without importing `lifetimes` (whose package import needs pandas)."""
    spec = importlib.util.find_spec("lifetimes")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("cdnow needs the dev extra: pip install lifetimes==0.11.3")
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "CDNOW_master.txt"
    # Columns aligned with runs of spaces, under a header line.
    fields = [line.split() for line in path.read_text().splitlines()[1:] if line.strip()]
    purchases = pl.DataFrame(
        {
            "customer": [row[0] for row in fields],
            "day": [row[1] for row in fields],
            "cds": [int(row[2]) for row in fields],
        }
    )
    return (
        purchases.with_columns(pl.col("day").str.to_date("%Y%m%d"))
        .group_by("customer", "day")
        .agg(pl.len().alias("conversations"), pl.col("cds").sum().alias("messages"))
        .select(
            pl.format("c_{}", pl.col("customer")).alias("user_id"),
            "day",
            pl.col("conversations").cast(pl.UInt32),
            pl.col("messages").cast(pl.UInt32),
            pl.lit(None, pl.Float64).alias("sentiment_end_mean"),
            pl.lit(None, pl.Float64).alias("quality_mean"),
        )
    )


def sample_activity() -> pl.DataFrame:
    from analytics_assets.sources.generator import SampleSpec, generate_sample

    spec = SampleSpec(days=120, conversations=27_600, users=3_000, seed=11, with_bad_records=False)
    data = generate_sample(spec)
    messages = (
        pl.DataFrame({"conversation_id": [m["conversation_id"] for m in data.messages]})
        .group_by("conversation_id")
        .len("messages")
    )
    conversations = pl.DataFrame(
        {
            "conversation_id": [c["conversation_id"] for c in data.conversations],
            "user_id": [c["user_id"] for c in data.conversations],
            "day": [date.fromisoformat(c["started_at"][:10]) for c in data.conversations],
        }
    )
    return (
        conversations.join(messages, on="conversation_id", how="left")
        .group_by("user_id", "day")
        .agg(pl.len().alias("conversations"), pl.col("messages").sum())
        .select(
            "user_id",
            "day",
            pl.col("conversations").cast(pl.UInt32),
            pl.col("messages").cast(pl.UInt32),
            pl.lit(None, pl.Float64).alias("sentiment_end_mean"),
            pl.lit(None, pl.Float64).alias("quality_mean"),
        )
    )


SOURCES = {
    "cdnow": cdnow_activity,
    "simulated": lambda: simulated_activity(users=800, days=120, first_day=date(2026, 1, 1)),
    "sample": sample_activity,
}


def _row(name: str, evaluation: Evaluation) -> str:
    summary = evaluation.summary()
    cells = []
    for metric in METRICS:
        model, baseline = summary.get(f"model_{metric}"), summary.get(f"baseline_{metric}")
        cells.append(f"{_number(model)}/{_number(baseline)}")
    return (
        f"  {evaluation.as_of}  {name:<9} train {evaluation.train_rows:>6}  eval "
        f"{evaluation.evaluation_rows:>5}  rate {_number(evaluation.evaluation_return_rate)}  "
        + "  ".join(cells)
        + f"  served: {evaluation.method}/{evaluation.count_method}"
    )


def _number(value) -> str:
    return "  -  " if value is None else f"{value:.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", nargs="+", choices=list(SOURCES), default=list(SOURCES))
    parser.add_argument("--days", type=int, default=4, help="forecast days per source")
    args = parser.parse_args()
    print("model/baseline: " + "  ".join(METRICS))
    for name in args.source:
        started = time.perf_counter()
        activity = SOURCES[name]()
        loaded = time.perf_counter() - started
        last = activity["day"].max()
        if name == "cdnow":
            # Purchases thin out after the first quarter (every customer joined then): the
            # forecasts cover the busy first half year.
            last = date(1997, 6, 30)
        pooled: dict[str, list[float]] = {}
        for offset in range(args.days - 1, -1, -1):
            evaluation = forecast(activity, last - timedelta(days=7 * offset)).evaluation
            print(_row(name, evaluation))
            for key, value in evaluation.summary().items():
                if isinstance(value, float) and key.split("_", 1)[0] in ("model", "baseline"):
                    pooled.setdefault(key, []).append(value)
        means = {key: sum(values) / len(values) for key, values in pooled.items()}
        print(
            f"  mean over {args.days} days ({name}): "
            + "  ".join(
                f"{metric} {_number(means.get(f'model_{metric}'))}/"
                f"{_number(means.get(f'baseline_{metric}'))}"
                for metric in METRICS
            )
            + f"   [{activity.height} user-days, loaded in {loaded:.1f} s, "
            f"{time.perf_counter() - started:.1f} s in all]"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
