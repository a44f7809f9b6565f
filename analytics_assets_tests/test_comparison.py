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


def test_holm_keeps_the_chance_of_any_false_alarm_at_five_percent():
    from analytics_assets.analytics.comparison import holm

    assert holm([0.01, 0.04, 0.03]) == [True, False, False]  # 0.03 >= 0.05 / 2
    assert holm([0.001, 0.02, 0.03]) == [True, True, True]  # 0.02 < 0.025, 0.03 < 0.05
    assert holm([]) == []


def test_identical_models_are_rarely_called_different():
    """Three models drawn from one distribution, 900 conversations a day: uncorrected, some
    difference was "significant" on 59 % of days (a reviewer's simulation)."""
    from analytics_assets.analytics.reports import model_comparison

    rng = random.Random(7)
    days_with_a_false_alarm = 0
    for _ in range(200):
        per_model = []
        for name in ("a", "b", "c"):
            scores = [rng.random() for _ in range(300)]
            up = sum(rng.random() < 0.6 for _ in range(100))
            per_model.append({
                "model": name, "conversations": 300,
                **{f"{metric}_{part}": value for metric in ("quality", "satisfaction",
                   "latency_p50_ms", "total_tokens")
                   for part, value in (("sum", sum(scores)), ("sq_sum", sum(s * s for s in scores)),
                                       ("count", 300))},
                "thumbs_up": up, "thumbs_down": 100 - up,
                "complaints": sum(rng.random() < 0.1 for _ in range(300)),
                "troubleshooting": sum(rng.random() < 0.3 for _ in range(300)),
            })  # fmt: skip
        rows = model_comparison(per_model)
        days_with_a_false_alarm += any(row["significant"] for row in rows)
    assert days_with_a_false_alarm <= 0.1 * 200


def test_a_model_with_a_handful_of_conversations_is_rarely_called_different():
    """A model of 3 conversations against two of 300, all from one distribution: its means,
    tested by a normal approximation on a variance of three values (or none), were
    "significant" on 42 % of days, Holm's correction or not (a reviewer's simulation)."""
    from analytics_assets.analytics.reports import model_comparison

    rng = random.Random(11)
    days_with_a_false_alarm = 0
    for _ in range(200):
        per_model = []
        for name, size in (("small", 3), ("b", 300), ("c", 300)):
            # Scores in tenths, as quality is: three of them are often all alike.
            scores = [rng.choice((0.7, 0.8, 0.9, 1.0, 1.0)) for _ in range(size)]
            per_model.append({
                "model": name, "conversations": size,
                **{f"{metric}_{part}": value for metric in ("quality", "satisfaction",
                   "latency_p50_ms", "total_tokens")
                   for part, value in (("sum", sum(scores)),
                                       ("sq_sum", sum(s * s for s in scores)), ("count", size))},
                "thumbs_up": 0, "thumbs_down": 0, "complaints": 0, "troubleshooting": 0,
            })  # fmt: skip
        rows = model_comparison(per_model)
        days_with_a_false_alarm += any(row["significant"] for row in rows)
    assert days_with_a_false_alarm <= 0.1 * 200


def test_no_spread_on_either_side_with_different_means_is_a_sure_difference():
    assert welch_z(1.0, 0.0, 40, 0.5, 0.0, 40)[1] == 0.0
    assert welch_z(0.5, 0.0, 40, 0.5, 0.0, 40)[1] == 1.0
    # Three against three hundred is too few to tell, however sure it looks.
    assert welch_z(1.0, 0.0, 3, 0.86, 0.03, 300) == (pytest.approx(0.14 / 0.01), 1.0)
    assert welch_z(1.0, 0.0, 3, 0.5, 0.0, 3) == (float("inf"), 1.0)


def test_equal_means_worked_out_from_sums_are_no_difference():
    """Every conversation of both models at 0.3: the report's means come from sums (and the
    others' from the totals less the model's), 0.3 against 0.30000000000000004, which read
    as a sure difference (p = 0, significant)."""
    from analytics_assets.analytics.reports import model_comparison

    def part(model: str, n: int) -> dict:
        sums = {"conversations": n, "thumbs_up": 0, "thumbs_down": 0, "complaints": 0,
                "troubleshooting": 0}  # fmt: skip
        for name in ("quality", "satisfaction", "latency_p50_ms", "total_tokens"):
            sums |= {f"{name}_count": n, f"{name}_sum": 0.0, f"{name}_sq_sum": 0.0}
        for _ in range(n):
            sums["quality_sum"] += 0.3
            sums["quality_sq_sum"] += 0.3 * 0.3
        return {"model": model, **sums}

    rows = model_comparison([part("a", 40), part("b", 30)])
    quality = [row for row in rows if row["metric"] == "quality"]
    assert quality and all(row["p_value"] == 1.0 and not row["significant"] for row in quality)


def test_rates_of_a_few_conversations_are_tested_exactly():
    """One complaint in a canary's one conversation against 1 in 20: the normal
    approximation said p = 0.0016 (significant); Fisher's exact test, 0.095."""
    from analytics_assets.analytics.comparison import fisher_exact_p

    assert two_proportion_z(1, 1, 1, 20)[1] == pytest.approx(2 / 21)
    assert fisher_exact_p(3, 10, 7, 10) == pytest.approx(0.17890, abs=1e-5)  # scipy's value
    assert fisher_exact_p(0, 5, 5, 5) == pytest.approx(2 / 252)
    # Where every cell expects 5 or more, the z-test as before.
    assert two_proportion_z(60, 100, 40, 100)[1] == pytest.approx(0.004678, abs=1e-5)


def test_shares_of_complaints_count_only_categorized_conversations():
    from analytics_assets.analytics.comparison import group_stats

    analytics = pl.DataFrame(
        {"model": ["m"] * 4, "intent": ["complaint", "support", None, None],
         "feedback_up": [0] * 4, "feedback_down": [0] * 4,
         **{metric: [1.0] * 4 for metric in ("quality_score", "satisfaction_score",
                                            "latency_p50_ms", "total_tokens")}}
    )  # fmt: skip
    stats = group_stats(analytics, "model").row(0, named=True)
    assert stats["complaint_share"] == 0.5 and stats["complaint_share_n"] == 2


def test_shares_leave_out_conversations_whose_intent_is_an_abstention():
    """`uncertain` is the categorizer abstaining, as `complaint` (null there) says: neither a
    complaint nor a conversation without one."""
    from analytics_assets.analytics.comparison import group_stats

    analytics = pl.DataFrame(
        {"model": ["m"] * 4, "intent": ["complaint", "support", "uncertain", "uncertain"],
         "complaint": [True, False, None, None],
         "feedback_up": [0] * 4, "feedback_down": [0] * 4,
         **{metric: [1.0] * 4 for metric in ("quality_score", "satisfaction_score",
                                            "latency_p50_ms", "total_tokens")}}
    )  # fmt: skip
    for frame in (analytics, analytics.drop("complaint")):
        stats = group_stats(frame, "model").row(0, named=True)
        assert stats["complaint_share"] == 0.5 and stats["complaint_share_n"] == 2
        assert stats["troubleshooting_share_n"] == 2
