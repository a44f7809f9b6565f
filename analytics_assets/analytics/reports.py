"""Daily, weekly and monthly reports.

A report is one row of additive parts (counts, sums, sums of squares, distributions, user
ids), so a week or a month is exactly the combination of its days. What is derived from the
parts (means, the per-model comparison, the change against the previous period and the rising
topics) is computed after combining, never summed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from datetime import date, timedelta

import polars as pl

from analytics_assets import tables
from analytics_assets.analytics.comparison import (
    SIGNIFICANCE,
    holm,
    rate_metrics,
    two_proportion_z,
    welch_z,
)

DISTRIBUTIONS = {"topics": "topic", "intents": "intent", "sentiments": "sentiment",
                 "languages": "language"}  # fmt: skip
# Per-model means compared between models: the report keeps sum, sum of squares and count of
# each, which give the mean and variance of any union of days.
MODEL_MEANS = {
    "quality": "quality_score",
    "satisfaction": "satisfaction_score",
    "latency_p50_ms": "latency_p50_ms",
    "total_tokens": "total_tokens",
}
# Per-model rates: (successes, trials) among the per-model parts.
MODEL_RATES = {
    "thumbs_up_rate": ("thumbs_up", "thumbs"),
    # Among the categorized conversations, as `compare` counts them: one not categorized yet
    # is neither, and counted as "no complaint" a model whose conversations were labelled
    # later (a language through translation, an LLM tier over budget) looked better.
    "complaint_share": ("complaints", "categorized"),
    "troubleshooting_share": ("troubleshooting", "categorized"),
}
# The columns of conversation analytics a daily report reads.
REPORT_COLUMNS = [
    "day", "user_id", "model", *DISTRIBUTIONS.values(), "quality_score", "satisfaction_score",
    "latency_p50_ms", "prompt_tokens", "completion_tokens", "total_tokens", "feedback_up",
    "feedback_down", "categorized_via_translation", "complaint",
]  # fmt: skip
VOLUMES = ("conversations", "messages", "users")
# A topic "rises" when its share grew significantly; below this many conversations in the
# period the normal approximation behind the z-test is not trustworthy (n*p >= 5).
RISING_MIN_COUNT = 5
RISING_TOPICS_SHOWN = 5

COUNT_STRUCT = pl.List(pl.Struct({"value": pl.String(), "count": pl.UInt32()}))
MODEL_STRUCT = pl.List(
    pl.Struct(
        {
            "model": pl.String(),
            "conversations": pl.UInt32(),
            **{
                f"{name}_{part}": dtype
                for name in MODEL_MEANS
                for part, dtype in (
                    ("sum", pl.Float64()),
                    ("sq_sum", pl.Float64()),
                    ("count", pl.UInt32()),
                )
            },
            "thumbs_up": pl.UInt32(),
            "thumbs_down": pl.UInt32(),
            "complaints": pl.UInt32(),
            "troubleshooting": pl.UInt32(),
            # Conversations with an intent; null in reports written before 2026-12-06,
            # which count all their conversations (`_trials`).
            "categorized": pl.UInt32(),
        }
    )
)
CHANGE_STRUCT = pl.List(
    pl.Struct(
        {
            "dimension": pl.String(),
            "value": pl.String(),
            "count": pl.UInt32(),
            "previous_count": pl.UInt32(),
            "count_change": pl.Float64(),
            "share": pl.Float64(),
            "previous_share": pl.Float64(),
            "share_change": pl.Float64(),
            "p_value": pl.Float64(),
        }
    )
)
COMPARISON_STRUCT = pl.List(
    pl.Struct(
        {
            "model": pl.String(),
            "metric": pl.String(),
            "value": pl.Float64(),
            "others": pl.Float64(),
            "difference": pl.Float64(),
            "n": pl.UInt32(),
            "others_n": pl.UInt32(),
            "p_value": pl.Float64(),
            "significant": pl.Boolean(),
        }
    )
)
REPORT_SCHEMA: dict[str, pl.DataType] = {
    "kind": pl.String(),
    "period": pl.String(),
    "conversations": pl.UInt32(),
    "messages": pl.UInt32(),
    "users": pl.UInt32(),
    "new_users": pl.UInt32(),
    "returning_users": pl.UInt32(),
    "user_ids": pl.List(pl.String()),
    "new_user_ids": pl.List(pl.String()),
    **{name: COUNT_STRUCT for name in DISTRIBUTIONS},
    "quality_sum": pl.Float64(),
    "quality_count": pl.UInt32(),
    "quality_mean": pl.Float64(),
    "quality_histogram": pl.List(pl.UInt32()),
    "satisfaction_sum": pl.Float64(),
    "satisfaction_count": pl.UInt32(),
    "satisfaction_mean": pl.Float64(),
    "satisfaction_histogram": pl.List(pl.UInt32()),
    "latency_p50_sum": pl.Float64(),
    "latency_count": pl.UInt32(),
    "latency_p50_mean": pl.Float64(),
    "prompt_tokens": pl.Int64(),
    "completion_tokens": pl.Int64(),
    "total_tokens": pl.Int64(),
    "per_model": MODEL_STRUCT,
    "model_comparison": COMPARISON_STRUCT,
    "previous_period": pl.String(),
    "changes": CHANGE_STRUCT,
    "rising_topics": CHANGE_STRUCT,
    "errors": pl.UInt32(),
    # Conversations whose topic and intent were read from a translation (docs/translation.md).
    "categorized_via_translation": pl.UInt32(),
    # False when an input the report is built from was missing ("<asset> <day>" each): its
    # numbers, or its change against the period before, are then not to be trusted.
    "complete": pl.Boolean(),
    "missing_inputs": pl.List(pl.String()),
    "day": pl.Date(),
}
# Scores in [0, 1] as ten bins of 0.1 (the last bin includes 1.0): a distribution that adds up.
HISTOGRAM_BINS = 10
_ADDITIVE_SUMS = (
    "conversations", "messages", "quality_sum", "quality_count", "satisfaction_sum",
    "satisfaction_count", "latency_p50_sum", "latency_count", "prompt_tokens",
    "completion_tokens", "total_tokens", "errors", "categorized_via_translation",
)  # fmt: skip


# A conversation without a label (its categories not built, or built before it arrived)
# counts as this, as the dashboard counts it: left out, the shares were taken over the
# labelled ones only, and half a day uncategorized read as every topic's share doubling.
UNLABELLED = "unknown"


def _counts(frame: pl.DataFrame, column: str) -> list[dict]:
    counts = (
        frame.select(pl.col(column).fill_null(UNLABELLED))
        .group_by(column)
        .len()
        .sort(["len", column], descending=[True, False])
    )
    return [{"value": value, "count": count} for value, count in counts.iter_rows()]


def _histogram(scores: pl.Series) -> list[int]:
    # Rounded before the floor: a score of exactly 0.4 computed as 0.39999999999999997
    # belongs in [0.4, 0.5), not one bin down.
    bins = (scores.drop_nulls() * HISTOGRAM_BINS).round(9).floor().clip(0, HISTOGRAM_BINS - 1)
    counts = dict(bins.cast(pl.Int32).value_counts().iter_rows())
    return [counts.get(index, 0) for index in range(HISTOGRAM_BINS)]


def _per_model(analytics: pl.DataFrame) -> list[dict]:
    # The parts of the shares, counted as `compare` counts them.
    rates = rate_metrics(analytics.columns)
    complaints, categorized = rates["complaint_share"]
    troubleshooting, _ = rates["troubleshooting_share"]
    aggregations = [pl.len().cast(pl.UInt32).alias("conversations")]
    for name, column in MODEL_MEANS.items():
        value = pl.col(column).cast(pl.Float64)
        aggregations += [
            value.sum().alias(f"{name}_sum"),
            (value * value).sum().alias(f"{name}_sq_sum"),
            value.count().cast(pl.UInt32).alias(f"{name}_count"),
        ]
    aggregations += [
        pl.col("feedback_up").sum().cast(pl.UInt32).alias("thumbs_up"),
        pl.col("feedback_down").sum().cast(pl.UInt32).alias("thumbs_down"),
        complaints.cast(pl.UInt32).alias("complaints"),
        troubleshooting.cast(pl.UInt32).alias("troubleshooting"),
        categorized.cast(pl.UInt32).alias("categorized"),
    ]
    # A conversation without a model (no model on its record and no reply to take one from:
    # mostly the ones the bot never answered) counts under `unknown`, as on the dashboard;
    # left out, the per-model parts did not add up to the day and flattered every model.
    per_model = (
        analytics.with_columns(pl.col("model").fill_null(UNLABELLED))
        .group_by("model")
        .agg(aggregations)
    )
    return per_model.sort("model").to_dicts()


def daily_report(
    day: date,
    analytics: pl.DataFrame,
    *,
    messages: int,
    errors: int,
    new_user_ids: Iterable[str] = (),
) -> pl.DataFrame:
    """The day's report from its conversations' analytics; `messages` and `errors` are the
    day's counts, `new_user_ids` the users not seen in the 30 days before (user analytics)."""
    users = set(analytics["user_id"].drop_nulls().to_list())
    row = {
        "kind": "daily",
        "period": day.isoformat(),
        "day": day,
        "conversations": analytics.height,
        "messages": messages,
        "user_ids": sorted(users),
        "new_user_ids": sorted(users & set(new_user_ids)),
        **{name: _counts(analytics, column) for name, column in DISTRIBUTIONS.items()},
        "quality_sum": float(analytics["quality_score"].sum() or 0.0),
        "quality_count": analytics["quality_score"].count(),
        "quality_histogram": _histogram(analytics["quality_score"]),
        "satisfaction_sum": float(analytics["satisfaction_score"].sum() or 0.0),
        "satisfaction_count": analytics["satisfaction_score"].count(),
        "satisfaction_histogram": _histogram(analytics["satisfaction_score"]),
        "latency_p50_sum": float(analytics["latency_p50_ms"].sum() or 0.0),
        "latency_count": analytics["latency_p50_ms"].count(),
        "prompt_tokens": int(analytics["prompt_tokens"].sum() or 0),
        "completion_tokens": int(analytics["completion_tokens"].sum() or 0),
        "total_tokens": int(analytics["total_tokens"].sum() or 0),
        "per_model": _per_model(analytics),
        "errors": errors,
        "categorized_via_translation": int(
            analytics["categorized_via_translation"].sum()
            if "categorized_via_translation" in analytics.columns
            else 0
        ),
    }
    return _finish(row)


def combine(kind: str, period: str, start: date, days: pl.DataFrame) -> pl.DataFrame:
    """A week or a month from its daily reports, never from raw records."""

    def merged_counts(column: str) -> list[dict]:
        exploded = days.select(pl.col(column).explode()).unnest(column).drop_nulls("value")
        totals = exploded.group_by("value").agg(pl.col("count").sum())
        return totals.sort(["count", "value"], descending=[True, False]).to_dicts()

    def union(column: str) -> list[str]:
        return sorted(set(days.select(pl.col(column).explode()).to_series().drop_nulls()))

    def histogram(column: str) -> list[int]:
        bins = [0] * HISTOGRAM_BINS
        for day_bins in days[column].to_list():
            # A day reported before histograms existed has none: it adds nothing.
            added = day_bins or [0] * HISTOGRAM_BINS
            bins = [total + count for total, count in zip(bins, added, strict=True)]
        return bins

    models = days.select(pl.col("per_model").explode()).unnest("per_model").drop_nulls("model")
    # A day reported before `categorized` existed counts all its conversations, as it did.
    models = models.with_columns(
        pl.coalesce(
            pl.col("categorized") if "categorized" in models.columns else pl.lit(None),
            pl.col("conversations"),
        )
        .cast(pl.UInt32)
        .alias("categorized")
    )
    per_model = (
        models.group_by("model").agg(pl.all().sum()).sort("model").to_dicts()
        if models.height
        else []
    )
    row = {
        "kind": kind,
        "period": period,
        "day": start,
        **days.select(pl.col(_ADDITIVE_SUMS).sum()).to_dicts()[0],
        # A user new on one day of the period is new to the period: the 30-day look-back
        # spans any week or month, so no one is new twice in one.
        "user_ids": union("user_ids"),
        "new_user_ids": union("new_user_ids"),
        **{name: merged_counts(name) for name in DISTRIBUTIONS},
        "quality_histogram": histogram("quality_histogram"),
        "satisfaction_histogram": histogram("satisfaction_histogram"),
        "per_model": per_model,
    }
    return _finish(row)


def period_report(
    kind: str,
    start: date,
    end: date,
    previous_start: date,
    daily_rows: pl.DataFrame,
    *,
    period_of: Callable[[date], str],
    today: date,
    first_day: date | None = None,
) -> pl.DataFrame:
    """The week or month [start, end) from its daily reports (`daily_rows` may hold the
    previous period's too), with its change against the previous period [previous_start,
    start).

    Complete only when every day of it has passed and has a complete daily report; otherwise
    `missing_inputs` names each missing day, the days' own missing inputs, and a period still
    in progress. Days before `first_day` (the deployment's first) are no gap: the first week
    or month holds the history there is, and compares with nothing. Like is compared with
    like: a complete period with the whole previous one (when that is complete too), a
    period in progress or with a gap with the same days of the previous one (Monday to
    Wednesday against Monday to Wednesday), never three days against seven, which would
    read as a fall in every count. Two complete months are compared whole, whatever their
    lengths (month over month, as people read it)."""
    period_days = [start + timedelta(days=offset) for offset in range((end - start).days)]
    current = daily_rows.filter(pl.col("day").is_between(start, end, closed="left"))
    held = set(current["day"].to_list())
    before_history = first_day is not None and start < first_day
    gaps = [
        f"{tables.DAILY_REPORT} {day.isoformat()}"
        for day in period_days
        if day < today and day not in held and (first_day is None or day >= first_day)
    ]
    carried = sorted(set(current["missing_inputs"].explode().drop_nulls().to_list()))
    due = sum(day < today for day in period_days)
    in_progress = due < len(period_days)
    notes = [*gaps, *carried]
    if in_progress:
        notes.append(f"in progress: {len(held)} of {len(period_days)} days reported")

    previous_rows = daily_rows.filter(
        pl.col("day").is_between(previous_start, start, closed="left")
    )
    previous_held = set(previous_rows["day"].to_list())
    whole = not (gaps or in_progress or before_history)
    if whole:
        wanted = [previous_start + timedelta(days=k) for k in range((start - previous_start).days)]
    else:
        offsets = sorted((day - start).days for day in held)
        wanted = [
            previous_start + timedelta(days=offset)
            for offset in offsets
            if previous_start + timedelta(days=offset) < start
        ]
    report = combine(kind, period_of(start), start, current)
    if wanted and all(day in previous_held for day in wanted):
        label = period_of(previous_start)
        compared = report
        if not whole:
            label = f"{label} (the same {len(wanted)} days)"
            # This period's side holds the same days too: March 29-31 have no February
            # day to stand against, and are left out of the comparison (not the report).
            same = [start + (day - previous_start) for day in wanted]
            compared = combine(
                kind, period_of(start), start, current.filter(pl.col("day").is_in(same))
            )
        previous = combine(
            kind, label, previous_start, previous_rows.filter(pl.col("day").is_in(wanted))
        )
        changed = with_changes(compared, previous)
        report = report.with_columns(changed.select("previous_period", "changes", "rising_topics"))
    return with_missing_inputs(report, notes)


def _finish(row: dict) -> pl.DataFrame:
    def mean(total: str, count: str) -> float | None:
        return row[total] / row[count] if row[count] else None

    row["quality_mean"] = mean("quality_sum", "quality_count")
    row["satisfaction_mean"] = mean("satisfaction_sum", "satisfaction_count")
    row["latency_p50_mean"] = mean("latency_p50_sum", "latency_count")
    row["users"] = len(row["user_ids"])
    row["new_users"] = len(row["new_user_ids"])
    row["returning_users"] = row["users"] - row["new_users"]
    row["model_comparison"] = model_comparison(row["per_model"])
    row.setdefault("previous_period", None)
    row.setdefault("changes", [])
    row.setdefault("rising_topics", [])
    row.setdefault("missing_inputs", [])
    row["complete"] = not row["missing_inputs"]
    return pl.DataFrame([row], schema=REPORT_SCHEMA)


def with_missing_inputs(report: pl.DataFrame, missing: list[str]) -> pl.DataFrame:
    """The report marked incomplete for each missing input ("<asset> <day>")."""
    if not missing:
        return report
    listed = sorted(set(missing) | set(report["missing_inputs"].to_list()[0] or []))
    return report.with_columns(
        pl.lit(False).alias("complete"),
        pl.Series("missing_inputs", [listed], dtype=pl.List(pl.String())),
    )


def _mean_and_variance(total: float, squares: float, count: int) -> tuple[float, float]:
    mean = total / count
    variance = max(squares - total * total / count, 0.0) / (count - 1) if count > 1 else 0.0
    return mean, variance


def model_comparison(per_model: list[dict]) -> list[dict]:
    """Each model against all the others together, per metric, with a two-sided test: Welch's
    z for means, the two-proportion z-test for rates. `significant` only where the p-value
    stays under 0.05 once corrected for the report's number of tests (Holm): uncorrected,
    three identical models were "significantly" different on 59 % of days."""
    # Conversations without a model (`unknown`: mostly unanswered ones) count in the day's
    # parts, not as a model to compare: against one real model they made a "significant"
    # difference of every figure.
    per_model = [with_categorized(m) for m in per_model if m["model"] != UNLABELLED]
    if len(per_model) < 2:
        return []
    totals = {key: sum(m[key] or 0 for m in per_model) for key in per_model[0] if key != "model"}
    rows = []
    for model in per_model:
        others = {key: totals[key] - (model[key] or 0) for key in totals}
        for name in MODEL_MEANS:
            n, others_n = model[f"{name}_count"], others[f"{name}_count"]
            if not n or not others_n:
                continue
            mean, variance = _mean_and_variance(model[f"{name}_sum"], model[f"{name}_sq_sum"], n)
            others_mean, others_variance = _mean_and_variance(
                others[f"{name}_sum"], others[f"{name}_sq_sum"], others_n
            )
            _, p = welch_z(mean, variance, n, others_mean, others_variance, others_n)
            rows.append(_comparison_row(model["model"], name, mean, others_mean, n, others_n, p))
        for name, (successes, trials) in MODEL_RATES.items():
            n, x = _trials(model, trials), model[successes]
            others_n, others_x = _trials(others, trials), others[successes]
            if not n or not others_n:
                continue
            _, p = two_proportion_z(x, n, others_x, others_n)
            rows.append(_comparison_row(model["model"], name, x / n, others_x / others_n, n,
                                        others_n, p))  # fmt: skip
    # With two models, the second's tests are the first's mirrored: one family, not two.
    family = (
        [row for row in rows if row["model"] == per_model[0]["model"]]
        if len(per_model) == 2
        else rows
    )
    verdicts = dict(
        zip(
            ((row["model"], row["metric"]) for row in family),
            holm([row["p_value"] for row in family]),
            strict=True,
        )
    )
    for row in rows:
        row["significant"] = verdicts.get(
            (row["model"], row["metric"]),
            verdicts.get((per_model[0]["model"], row["metric"]), False),
        )
    return rows


def _trials(parts: dict, trials: str) -> int:
    if trials == "thumbs":
        return parts["thumbs_up"] + parts["thumbs_down"]
    return parts[trials]


def with_categorized(parts: dict) -> dict:
    """A model's parts as a report written before `categorized` existed stored them, with
    all its conversations as categorized (the shares counted them all then)."""
    if parts.get("categorized") is not None:
        return parts
    return {**parts, "categorized": parts.get("conversations")}


def _comparison_row(model, metric, value, others, n, others_n, p) -> dict:
    return {
        "model": model,
        "metric": metric,
        "value": value,
        "others": others,
        "difference": value - others,
        "n": n,
        "others_n": others_n,
        "p_value": p,
        "significant": p < SIGNIFICANCE,
    }


def with_changes(report: pl.DataFrame, previous: pl.DataFrame | None) -> pl.DataFrame:
    """The report with its change against the previous period: volumes (relative change),
    every distribution's shares (a difference of shares, with a two-proportion z-test), and the
    topics whose share rose significantly. No previous period (or an empty one): no change."""
    current = report.row(0, named=True)
    before = previous.row(0, named=True) if previous is not None and previous.height else None
    if before is None or not before["conversations"]:
        return report
    changes = [
        {
            "dimension": "volume",
            "value": name,
            "count": current[name],
            "previous_count": before[name],
            "count_change": _relative(current[name], before[name]),
            "share": None,
            "previous_share": None,
            "share_change": None,
            "p_value": None,
        }
        for name in VOLUMES
    ]
    for name in DISTRIBUTIONS:
        changes += _distribution_changes(name, current[name], before[name])
    # More unlabelled conversations is a pipeline's news (the `changes` show it), not a topic
    # people talk about.
    topics = [c for c in changes if c["dimension"] == "topics" and c["value"] != UNLABELLED]
    # Significant after Holm's correction over every topic tested: one test per topic at
    # 0.05 named a rising topic on 30 % of days when nothing had changed (12 topics, a
    # reviewer's simulation).
    significant = holm([change["p_value"] for change in topics])
    rising = sorted(
        (
            change
            for change, real in zip(topics, significant, strict=True)
            if real and change["count"] >= RISING_MIN_COUNT and (change["share_change"] or 0) > 0
        ),
        key=lambda change: -change["share_change"],
    )[:RISING_TOPICS_SHOWN]
    return report.with_columns(
        pl.lit(before["period"], pl.String()).alias("previous_period"),
        pl.Series("changes", [changes], dtype=CHANGE_STRUCT),
        pl.Series("rising_topics", [rising], dtype=CHANGE_STRUCT),
    )


def _relative(now: int, then: int) -> float | None:
    return (now - then) / then if then else None


def _distribution_changes(dimension: str, now: list[dict], then: list[dict]) -> list[dict]:
    counts = {item["value"]: item["count"] for item in now}
    previous = {item["value"]: item["count"] for item in then}
    total, previous_total = sum(counts.values()), sum(previous.values())
    rows = []
    for value in sorted(set(counts) | set(previous)):
        count, previous_count = counts.get(value, 0), previous.get(value, 0)
        share = count / total if total else 0.0
        previous_share = previous_count / previous_total if previous_total else 0.0
        _, p = two_proportion_z(count, total, previous_count, previous_total)
        rows.append(
            {
                "dimension": dimension,
                "value": value,
                "count": count,
                "previous_count": previous_count,
                "count_change": _relative(count, previous_count),
                "share": share,
                "previous_share": previous_share,
                "share_change": share - previous_share,
                "p_value": p if math.isfinite(p) else 1.0,
            }
        )
    return rows
