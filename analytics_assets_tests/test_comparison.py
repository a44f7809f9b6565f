"""Model comparison: significance tests with known values, and differences only when real."""

from __future__ import annotations

import random

import polars as pl
import pytest

from analytics_assets.analytics.comparison import compare, two_proportion_z, welch_z


def test_two_proportion_z_matches_the_textbook_value():
    z, p = two_proportion_z(60, 100, 40, 100)
    assert z == pytest.approx(2.8284, abs=1e-4)
    assert p == pytest.approx(0.004678, abs=1e-5)
    assert two_proportion_z(0, 0, 5, 10) == (0.0, 1.0)


def test_welch_z_on_known_means():
    z, p = welch_z(0.8, 0.04, 100, 0.7, 0.04, 100)
    assert z == pytest.approx(0.1 / (0.08 / 100) ** 0.5)
    assert p < 0.001


def analytics(quality_b: float, complaint_b: float, n: int = 400, seed: int = 3) -> pl.DataFrame:
    rng = random.Random(seed)
    rows = []
    for model, quality, complaint in (("a", 0.75, 0.1), ("b", quality_b, complaint_b)):
        for _ in range(n):
            rows.append(
                {
                    "model": model,
                    "quality_score": min(1.0, max(0.0, rng.gauss(quality, 0.15))),
                    "satisfaction_score": min(1.0, max(0.0, rng.gauss(0.7, 0.15))),
                    "latency_p50_ms": rng.gauss(1500, 300),
                    "total_tokens": rng.randint(100, 900),
                    "feedback_up": rng.randint(0, 1),
                    "feedback_down": rng.randint(0, 1),
                    "intent": "complaint" if rng.random() < complaint else "support",
                }
            )
    return pl.DataFrame(rows)


def test_a_real_difference_is_significant_and_noise_is_not():
    worse = compare(analytics(quality_b=0.65, complaint_b=0.2), "model", "a", "b")
    by_metric = {row["metric"]: row for row in worse.iter_rows(named=True)}
    assert by_metric["quality_score"]["significant"]
    assert by_metric["quality_score"]["difference"] == pytest.approx(0.1, abs=0.03)
    assert by_metric["complaint_share"]["significant"]
    assert not by_metric["satisfaction_score"]["significant"]  # same distribution for both

    same = compare(analytics(quality_b=0.75, complaint_b=0.1), "model", "a", "b")
    assert not same.filter(pl.col("metric").is_in(["quality_score", "complaint_share"]))[
        "significant"
    ].any()


def test_an_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="No conversations for model"):
        compare(analytics(0.7, 0.1), "model", "a", "zeta")


def test_a_rate_without_trials_is_absent_not_nan():
    """No thumbs given by either model: the rate is no number (it was NaN)."""
    thumbless = analytics(0.7, 0.1).with_columns(feedback_up=pl.lit(0), feedback_down=pl.lit(0))
    rows = {row["metric"]: row for row in compare(thumbless, "model", "a", "b").iter_rows(
        named=True)}  # fmt: skip
    thumbs = rows["thumbs_up_rate"]
    assert (thumbs["a"], thumbs["b"], thumbs["difference"]) == (None, None, None)
    assert not thumbs["significant"]
