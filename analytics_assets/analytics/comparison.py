"""Model (or channel) comparison with significance: a difference is reported as real only
when a test says so (two-proportion z-test for rates, Welch's z for means at these sizes)."""

from __future__ import annotations

import math

import polars as pl

SIGNIFICANCE = 0.05
_THUMBS = (pl.col("feedback_up") + pl.col("feedback_down")).sum()
RATE_METRICS = {
    # metric: (successes expression, trials expression)
    "thumbs_up_rate": (pl.col("feedback_up").sum(), _THUMBS),
    "complaint_share": ((pl.col("intent") == "complaint").sum(), pl.len()),
    "troubleshooting_share": ((pl.col("intent") == "troubleshooting").sum(), pl.len()),
}  # fmt: skip
MEAN_METRICS = ("quality_score", "satisfaction_score", "latency_p50_ms", "total_tokens")


def normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """z and two-sided p for H0: the two rates are equal (pooled standard error)."""
    if not n1 or not n2:
        return 0.0, 1.0
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (x1 / n1 - x2 / n2) / se
    return z, normal_two_sided_p(z)


def welch_z(mean1: float, var1: float, n1: int, mean2: float, var2: float, n2: int):
    """z and two-sided p for H0: equal means (normal approximation, fine from ~30 each)."""
    if n1 < 2 or n2 < 2:
        return 0.0, 1.0
    se = math.sqrt(var1 / n1 + var2 / n2)
    if se == 0:
        return 0.0, 1.0
    z = (mean1 - mean2) / se
    return z, normal_two_sided_p(z)


def group_stats(analytics: pl.DataFrame, by: str) -> pl.DataFrame:
    """Per model (or channel): volume, means with variances, and the rates' counts."""
    aggregations = [pl.len().alias("conversations")]
    for metric in MEAN_METRICS:
        aggregations += [
            pl.col(metric).mean().alias(f"{metric}_mean"),
            pl.col(metric).var().alias(f"{metric}_var"),
            pl.col(metric).count().alias(f"{metric}_n"),
        ]
    for metric, (successes, trials) in RATE_METRICS.items():
        aggregations += [successes.alias(f"{metric}_x"), trials.alias(f"{metric}_n")]
    stats = analytics.group_by(by).agg(aggregations).sort(by)
    # No trials (no thumbs given) is no rate, not NaN.
    return stats.with_columns(
        pl.when(pl.col(f"{m}_n") > 0).then(pl.col(f"{m}_x") / pl.col(f"{m}_n")).alias(m)
        for m in RATE_METRICS
    )


def compare(analytics: pl.DataFrame, by: str, a: str, b: str) -> pl.DataFrame:
    """A/B: every metric for `a` and `b`, their difference, p-value and whether it is real."""
    stats = {row[by]: row for row in group_stats(analytics, by).iter_rows(named=True)}
    missing = [name for name in (a, b) if name not in stats]
    if missing:
        raise ValueError(f"No conversations for {by} {missing}; have {sorted(stats)}")
    first, second = stats[a], stats[b]
    rows = []
    for metric in MEAN_METRICS:
        z, p = welch_z(
            first[f"{metric}_mean"] or 0.0, first[f"{metric}_var"] or 0.0, first[f"{metric}_n"],
            second[f"{metric}_mean"] or 0.0, second[f"{metric}_var"] or 0.0, second[f"{metric}_n"],
        )  # fmt: skip
        rows.append((metric, first[f"{metric}_mean"], second[f"{metric}_mean"], z, p))
    for metric in RATE_METRICS:
        z, p = two_proportion_z(
            first[f"{metric}_x"], first[f"{metric}_n"], second[f"{metric}_x"], second[f"{metric}_n"]
        )
        rows.append((metric, first[metric], second[metric], z, p))
    return pl.DataFrame(rows, schema=["metric", a, b, "z", "p_value"], orient="row").with_columns(
        (pl.col(a) - pl.col(b)).alias("difference"),
        (pl.col("p_value") < SIGNIFICANCE).alias("significant"),
    )
