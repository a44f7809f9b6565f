"""Model (or channel) comparison with significance: a difference is reported as real only
when a test says so (two-proportion z-test for rates, Welch's z for means at these sizes)."""

from __future__ import annotations

import math

import polars as pl

from analytics_assets.analytics.scores import INTENT_FALLBACKS

SIGNIFICANCE = 0.05
_THUMBS = (pl.col("feedback_up") + pl.col("feedback_down")).sum()
RATE_METRICS = ("thumbs_up_rate", "complaint_share", "troubleshooting_share")


def intent_known(names: list[str]) -> pl.Expr:
    """Whether a conversation's intent is known: categorized, and not the categorizer's
    abstention. Where the frame has `complaint` (conversation_analytics), it is known exactly
    where that is, as the quality score reads it; else where the intent is set and not a
    fallback. Counted among the categorized, the `uncertain` ones had no complaint, and a
    model whose conversations the categorizer was less sure of had the lower complaint share."""
    if "complaint" in names:
        return pl.col("complaint").is_not_null()
    return pl.col("intent").is_not_null() & ~pl.col("intent").is_in(INTENT_FALLBACKS)


def rate_metrics(names: list[str]) -> dict[str, tuple[pl.Expr, pl.Expr]]:
    """metric: (successes, trials). Shares of complaints and troubleshooting are among the
    conversations whose intent is known: one not categorized yet, or on which the categorizer
    abstained, is neither."""
    known = intent_known(names)
    return {
        "thumbs_up_rate": (pl.col("feedback_up").sum(), _THUMBS),
        "complaint_share": (((pl.col("intent") == "complaint") & known).sum(), known.sum()),
        "troubleshooting_share": (
            ((pl.col("intent") == "troubleshooting") & known).sum(),
            known.sum(),
        ),
    }


MEAN_METRICS = ("quality_score", "satisfaction_score", "latency_p50_ms", "total_tokens")


def normal_two_sided_p(z: float) -> float:
    return math.erfc(abs(z) / math.sqrt(2))


# Below this expected count in any cell of the 2x2 table, the normal approximation is off by
# orders of magnitude (one complaint in one conversation against 1 in 20 read p = 0.0016;
# Fisher's exact test gives 0.095), and the exact test is used instead.
MIN_EXPECTED_COUNT = 5


def two_proportion_z(x1: int, n1: int, x2: int, n2: int) -> tuple[float, float]:
    """z and two-sided p for H0: the two rates are equal (pooled standard error); the p of
    Fisher's exact test where a cell's expected count is under `MIN_EXPECTED_COUNT`."""
    if not n1 or not n2:
        return 0.0, 1.0
    pooled = (x1 + x2) / (n1 + n2)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    if se == 0:
        return 0.0, 1.0
    z = (x1 / n1 - x2 / n2) / se
    smallest_expected = min(n1, n2) * min(pooled, 1 - pooled)
    if smallest_expected < MIN_EXPECTED_COUNT:
        return z, fisher_exact_p(x1, n1, x2, n2)
    return z, normal_two_sided_p(z)


def fisher_exact_p(x1: int, n1: int, x2: int, n2: int) -> float:
    """Two-sided p of Fisher's exact test: the probability, given both margins, of every
    table at most as likely as the one observed."""
    successes, total = x1 + x2, n1 + n2

    def log_probability(k: int) -> float:
        return _log_comb(n1, k) + _log_comb(n2, successes - k) - _log_comb(total, successes)

    observed = log_probability(x1)
    tables = range(max(0, successes - n2), min(successes, n1) + 1)
    # A relative tolerance, as scipy's: tables as likely as the observed one, to rounding.
    p = sum(math.exp(log_p) for log_p in map(log_probability, tables) if log_p <= observed + 1e-7)
    return min(1.0, p)


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


# Below this many on either side a mean is not tested (p = 1): the normal approximation, and
# a variance from a handful of values (or none: three conversations all at quality 1.0),
# called a model of 3 to 5 conversations "significantly" different from identical others on
# 27-42 % of days, Holm's correction or not (a reviewer's simulation).
MIN_PER_SIDE_FOR_MEANS = 30


def welch_z(mean1: float, var1: float, n1: int, mean2: float, var2: float, n2: int):
    """z and two-sided p for H0: equal means (normal approximation); p = 1 with fewer than
    `MIN_PER_SIDE_FOR_MEANS` on a side, where the z is only a size of the difference."""
    if n1 < 2 or n2 < 2:
        return 0.0, 1.0
    se = math.sqrt(var1 / n1 + var2 / n2)
    if se == 0:
        # No spread on either side: equal means are no difference, unequal ones a sure one
        # (40 conversations all at 1.0 against 40 all at 0.5 read p = 1). Equal to rounding:
        # means worked out from sums (0.3 and 0.30000000000000004) read p = 0.
        same = math.isclose(mean1, mean2, rel_tol=1e-9, abs_tol=1e-12)
        z, p = (0.0, 1.0) if same else (math.copysign(math.inf, mean1 - mean2), 0.0)
    else:
        z = (mean1 - mean2) / se
        p = normal_two_sided_p(z)
    return z, (1.0 if min(n1, n2) < MIN_PER_SIDE_FOR_MEANS else p)


def holm(p_values: list[float], alpha: float = SIGNIFICANCE) -> list[bool]:
    """Which of a family of tests are significant by Holm's step-down correction: the k-th
    smallest p-value (of m) must be under alpha / (m - k + 1), and so must every one before
    it. It holds the chance of any false alarm in the family at alpha, under any dependence
    between the tests (each model against the rest shares its data with the others')."""
    significant = [False] * len(p_values)
    for rank, index in enumerate(sorted(range(len(p_values)), key=p_values.__getitem__)):
        if p_values[index] >= alpha / (len(p_values) - rank):
            break
        significant[index] = True
    return significant


def group_stats(analytics: pl.DataFrame, by: str) -> pl.DataFrame:
    """Per model (or channel): volume, means with variances, and the rates' counts."""
    aggregations = [pl.len().alias("conversations")]
    for metric in MEAN_METRICS:
        aggregations += [
            pl.col(metric).mean().alias(f"{metric}_mean"),
            pl.col(metric).var().alias(f"{metric}_var"),
            pl.col(metric).count().alias(f"{metric}_n"),
        ]
    for metric, (successes, trials) in rate_metrics(analytics.columns).items():
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
    significant = holm([row[-1] for row in rows])
    return pl.DataFrame(rows, schema=["metric", a, b, "z", "p_value"], orient="row").with_columns(
        (pl.col(a) - pl.col(b)).alias("difference"),
        # Corrected over the metrics compared: seven uncorrected tests at 0.05 flag a
        # difference between identical arms about a third of the time.
        pl.Series("significant", significant, dtype=pl.Boolean),
    )
