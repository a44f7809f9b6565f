"""Return prediction (analytics/return_prediction.py): features from the past only, labels
from the 7 days after, the time-based split, the model against the last-week baseline on a
process whose return behaviour is known, and the asset and the API endpoint on the real
MongoDB wire-protocol server (nx-27017)."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import polars as pl
import pytest
from dagster import AssetKey, DagsterInstance
from fastapi.testclient import TestClient

from analytics_assets.analytics.return_prediction import (
    FEATURES,
    HORIZON_DAYS,
    MIN_TRAIN_ROWS,
    Split,
    auc,
    brier,
    calibration,
    calibration_error,
    forecast,
    forecasts,
    poisson_deviance,
    simulated_activity,
    user_day_rows,
)
from analytics_assets.api import keys
from analytics_assets.api.app import create_app
from analytics_assets_tests.conftest import sample_definitions

START = date(2026, 1, 1)
SIMULATED_DAYS = 120
LAST = START + timedelta(days=SIMULATED_DAYS - 1)


def day(offset: int) -> date:
    return START + timedelta(days=offset)


def activity_of(rows: list[tuple[str, int, int]]) -> pl.DataFrame:
    """(user, day offset, conversations) -> user_analytics' activity columns."""
    return pl.DataFrame(
        {
            "user_id": [user for user, _, _ in rows],
            "day": [day(offset) for _, offset, _ in rows],
            "conversations": [count for _, _, count in rows],
            "messages": [count * 4 for _, _, count in rows],
            "sentiment_end_mean": [0.5] * len(rows),
            "quality_mean": [None] * len(rows),
        },
        schema_overrides={"quality_mean": pl.Float64, "conversations": pl.UInt32},
    )


@pytest.fixture(scope="module")
def simulated() -> pl.DataFrame:
    return simulated_activity(users=800, days=SIMULATED_DAYS, first_day=START, seed=7)


def test_features_and_labels_of_a_small_history():
    history = activity_of([("u_a", 0, 2), ("u_a", 3, 1), ("u_a", 11, 1), ("u_b", 5, 1)])
    rows = user_day_rows(history, day(0), day(20))
    a = {row["day"]: row for row in rows.filter(pl.col("user_id") == "u_a").to_dicts()}
    assert a[day(0)]["conversations_1d"] == 2 and a[day(0)]["days_since_first"] == 0
    # The 7 days after day 0 hold day 3 (1 conversation), not day 11.
    assert a[day(0)]["conversations_next_7d"] == 1 and a[day(0)]["returned_7d"]
    assert a[day(4)]["conversations_next_7d"] == 1  # day 11 is within days 5..11
    assert a[day(3)]["conversations_next_7d"] == 0 and not a[day(3)]["returned_7d"]
    assert a[day(5)]["days_since_last"] == 2 and a[day(5)]["conversations_7d"] == 3
    assert a[day(9)]["conversations_7d"] == 1  # days 3..9
    assert a[day(10)]["conversations_7d"] == 0  # days 4..10: day 3 has left the week
    assert a[day(5)]["messages_28d"] == 12 and a[day(5)]["active_days_28d"] == 2
    assert a[day(5)]["sentiment_28d"] == 0.5 and a[day(5)]["quality_28d"] is None
    # Label windows closed by day 20: days up to 13; day 14's reaches day 21.
    assert a[day(13)]["label_observed"] and not a[day(14)]["label_observed"]
    # A user is a row from their first conversation on, for 28 days after their last.
    assert min(rows.filter(pl.col("user_id") == "u_b")["day"]) == day(5)
    assert max(a) == day(20)


def test_a_days_mean_weighs_its_scored_conversations_not_all_of_them():
    """Day 0: ten conversations, one scored 0.9; day 1: one, scored -0.5; day 2: two, both
    scored -0.1. The 28-day mean is over the four scored: (0.9 - 0.5 - 0.2) / 4 = 0.05.
    Weighted by all conversations it was (9 - 0.5 - 0.2) / 13 = 0.64."""
    history = activity_of([("u_a", 0, 10), ("u_a", 1, 1), ("u_a", 2, 2)]).with_columns(
        pl.Series("sentiment_end_mean", [0.9, -0.5, -0.1]),
        pl.Series("sentiment_end_scored", [1, 1, 2], pl.UInt32),
        pl.Series("quality_mean", [0.2, None, 0.8]),
        pl.Series("quality_scored", [10, 0, 1], pl.UInt32),
    )
    rows = user_day_rows(history, day(0), day(5)).filter(pl.col("day") == day(2))
    assert rows["sentiment_28d"].item() == pytest.approx(0.05)
    assert rows["quality_28d"].item() == pytest.approx((0.2 * 10 + 0.8) / 11)
    # Days written before the counts existed weigh all their conversations, as before.
    older = history.drop("sentiment_end_scored", "quality_scored")
    rows = user_day_rows(older, day(0), day(5)).filter(pl.col("day") == day(2))
    assert rows["sentiment_28d"].item() == pytest.approx((9 - 0.5 - 0.2) / 13)


def test_a_days_features_do_not_change_when_later_days_are_appended(simulated):
    """No leakage: the features of (user, d) are the same whether the history stops at d or
    goes on for 60 more days; only the labels may differ."""
    cut = day(59)
    truncated = user_day_rows(simulated, START, cut).filter(pl.col("day") == cut)
    full = user_day_rows(simulated, START, LAST).filter(pl.col("day") == cut)
    assert truncated.height > 100
    columns = ["user_id", "day", *FEATURES]
    assert truncated.select(columns).equals(full.select(columns))
    assert not truncated["label_observed"].any() and full["label_observed"].all()


def test_the_split_trains_only_on_labels_known_on_the_first_evaluated_day():
    split = Split.of(LAST)
    assert split.evaluation_last + timedelta(days=HORIZON_DAYS) == LAST
    assert split.train_last + timedelta(days=HORIZON_DAYS) <= split.evaluation_first
    assert split.history_start == LAST - timedelta(days=89)
    rows = pl.DataFrame({"day": [split.train_last, split.evaluation_first, split.as_of]})
    assert split.train(rows)["day"].to_list() == [split.train_last]
    assert split.evaluation(rows)["day"].to_list() == [split.evaluation_first]
    assert split.as_of not in split.labelled(rows)["day"].to_list()


def test_a_forecast_ignores_days_after_it_and_before_its_history(simulated):
    as_of = day(99)
    alone = forecast(simulated.filter(pl.col("day") <= as_of), as_of)
    with_more = forecast(simulated, as_of)
    assert alone.predictions.equals(with_more.predictions)
    assert alone.evaluation.summary() == with_more.evaluation.summary()
    older = simulated.filter(pl.col("day") >= as_of - timedelta(days=89))
    assert forecast(older, as_of).predictions.equals(alone.predictions)


def test_forecasts_over_a_range_equal_a_forecast_per_day(simulated):
    """What a range backfill computes (features shared, each fit started from the day
    before's) equals what day-by-day runs compute: predictions, methods and the evaluation's
    figures to the last digit they are written with. The range has a gap and starts before
    the history is long enough to train on; a history shorter than the 28-day window takes
    the per-day path."""
    days = [day(offset) for offset in (*range(20, 24), *range(40, 100))]
    for history_days, checked in ((90, days), (20, days[:6])):
        ranged = list(forecasts(simulated, checked, history_days=history_days))
        assert len(ranged) == len(checked)
        for as_of, result in zip(checked, ranged, strict=True):
            alone = forecast(simulated, as_of, history_days=history_days)
            assert result.predictions.equals(alone.predictions), as_of
            assert result.evaluation.summary() == alone.evaluation.summary(), as_of
            for bins, bins_alone in (
                (result.evaluation.model_calibration, alone.evaluation.model_calibration),
                (result.evaluation.baseline_calibration, alone.evaluation.baseline_calibration),
            ):
                # Unrounded means: the fits agree to the last bits, not to every bit.
                assert [b.rows for b in bins] == [b.rows for b in bins_alone], as_of
                assert [b.mean_predicted for b in bins] == pytest.approx(
                    [b.mean_predicted for b in bins_alone], abs=1e-12, nan_ok=True
                )
    assert {r.evaluation.method for r in ranged} >= {"baseline"}
    assert {r.evaluation.method for r in forecasts(simulated, days)} >= {"model", "baseline"}
    # A null user id (validation rejects it; the model does not depend on that) is one user.
    holed = (
        simulated.with_row_index("n")
        .with_columns(
            pl.when(pl.col("n") % 50 == 0).then(None).otherwise(pl.col("user_id")).alias("user_id")
        )
        .drop("n")
    )
    for as_of, result in zip(days[-3:], forecasts(holed, days[-3:]), strict=True):
        assert result.predictions.equals(forecast(holed, as_of).predictions), as_of


def test_the_model_beats_the_last_week_baseline_on_a_known_process(simulated):
    """Users with different, lasting conversation rates, who leave after a random lifetime:
    28 days of history estimate a user's rate better than last week alone."""
    result = forecast(simulated, LAST)
    evaluation = result.evaluation
    assert evaluation.method == "model", evaluation.reason
    assert evaluation.train_rows > 5000 and evaluation.evaluation_rows > 1000
    assert evaluation.model.auc > evaluation.baseline.auc + 0.01
    assert evaluation.model.brier < evaluation.baseline.brier
    assert evaluation.model.log_loss < evaluation.baseline.log_loss
    assert evaluation.model.count_poisson_deviance < evaluation.baseline.count_poisson_deviance
    # Every user active in the 28 days up to the day is scored, once.
    active = simulated.filter(pl.col("day") > LAST - timedelta(days=28))["user_id"].unique()
    assert sorted(result.predictions["user_id"]) == sorted(active)
    assert (result.predictions["method"] == "model").all()
    assert (result.predictions["count_method"] == "model").all()
    assert result.predictions["return_probability_7d"].is_between(0, 1).all()


def test_the_models_probabilities_are_calibrated(simulated):
    """On the evaluation days of several forecasts: the expected calibration error of each
    is small, and pooled, each well-filled reliability bin's observed return rate is close to
    its mean prediction (a bin of 300 user-days has a standard error of about 0.03)."""
    pooled: dict[float, list[float]] = {}
    for as_of in (day(99), day(109), LAST):
        evaluation = forecast(simulated, as_of).evaluation
        assert evaluation.model.calibration_error < 0.05, (as_of, evaluation.summary())
        for b in evaluation.model_calibration:
            if b.rows:
                rows, predicted, observed = pooled.setdefault(b.lower, [0, 0.0, 0.0])
                pooled[b.lower] = [rows + b.rows, predicted + b.rows * b.mean_predicted,
                                   observed + b.rows * b.observed_rate]  # fmt: skip
    gaps = {lower: abs(p - o) / n for lower, (n, p, o) in pooled.items() if n >= 300}
    assert len(gaps) >= 6 and max(gaps.values()) < 0.06, gaps


def test_a_few_very_heavy_users_do_not_blow_up_the_count_model():
    """As in the sample generator: most users at one constant low rate, five at 2 to 38
    conversations a day. Undamped Newton steps oscillated there and predicted counts in the
    thousands (MAE 91 against the baseline's 0.65); the damped ones converge."""
    rng = np.random.default_rng(3)
    rates = np.full(1500, 0.06)
    rates[:5] = [38, 12, 5.3, 3.4, 2.1]
    counts = rng.poisson(np.repeat(rates[:, None], SIMULATED_DAYS, axis=1))
    user, offset = np.nonzero(counts)
    activity = activity_of(
        [(f"u_{u:020x}", int(o), int(counts[u, o])) for u, o in zip(user, offset, strict=True)]
    )
    result = forecast(activity, LAST)
    model, baseline = result.evaluation.model, result.evaluation.baseline
    assert model.count_mae < baseline.count_mae
    assert model.count_poisson_deviance < baseline.count_poisson_deviance
    # Each target is served by whichever wins on it: here the count comes from the model.
    assert result.evaluation.count_method == "model"
    assert (result.predictions["count_method"] == "model").all()
    expected = dict(result.predictions.select("user_id", "expected_conversations_7d").iter_rows())
    assert 200 < expected[f"u_{0:020x}"] < 330  # 266 a week
    assert max(expected.values()) < 330


def test_too_little_history_serves_the_baseline_and_says_so(simulated):
    as_of = day(30)
    result = forecast(simulated.filter(pl.col("day") <= as_of), as_of)
    assert result.evaluation.method == "baseline"
    assert result.evaluation.reason.startswith("too little history")
    assert result.evaluation.train_rows < MIN_TRAIN_ROWS and result.evaluation.model is None
    predictions = result.predictions
    assert predictions.height > 0 and (predictions["method"] == "baseline").all()
    assert (predictions["count_method"] == "baseline").all()
    assert result.evaluation.count_reason == result.evaluation.reason
    assert predictions["return_probability_7d"].equals(
        predictions["baseline_return_probability_7d"], check_names=False
    )
    assert predictions["expected_conversations_7d"].equals(
        predictions["conversations_7d"].cast(pl.Float64), check_names=False
    )


def test_training_rows_of_one_class_serve_the_baseline():
    everyone_daily = activity_of(
        [(f"u_{user:020x}", offset, 1) for user in range(12) for offset in range(90)]
    )
    result = forecast(everyone_daily, day(89))
    assert result.evaluation.method == "baseline"
    assert result.evaluation.reason == "training rows of one class only"
    assert result.predictions.height == 12


def test_the_metrics_on_hand_computed_cases():
    returned = np.array([0, 0, 1, 1])
    assert auc(returned, np.array([0.1, 0.4, 0.35, 0.8])) == 0.75
    assert auc(returned, np.array([0.5, 0.5, 0.5, 0.5])) == 0.5  # ties count half
    assert auc(np.array([1, 1]), np.array([0.2, 0.9])) is None
    assert brier(returned, np.array([0.0, 0.0, 1.0, 0.5])) == pytest.approx(0.0625)
    assert poisson_deviance(np.array([0.0, 2.0, 5.0]), np.array([0.0, 2.0, 5.0])) == (
        pytest.approx(0.1 * 2 / 3)  # the zero prediction is floored to 0.1
    )
    bins = calibration(returned, np.array([0.05, 0.15, 0.95, 0.95]))
    assert [b.rows for b in bins] == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert calibration_error(bins) == pytest.approx((0.05 + 0.15 + 2 * 0.05) / 4)


@pytest.fixture(scope="module")
def predicted(mongo_server, tmp_path_factory, simulated):
    """The simulated history written to the lake as user_analytics, then the prediction
    asset materialized for its last day through the code location's own job."""
    defs, lake_io, mongo = sample_definitions(
        tmp_path_factory.mktemp("predictions"), mongo_server, "predictions_test"
    )
    lake = lake_io.lake()
    for (offset_day,), rows in simulated.partition_by("day", as_dict=True).items():
        lake.write_day("user_analytics", offset_day, rows)
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(),
        partition_key=LAST.isoformat(),
        asset_selection=[AssetKey("user_return_predictions")],
    )
    assert result.success
    db = mongo.db()
    client = TestClient(create_app(mongo.db))
    headers = {"X-API-Key": keys.create_key(db, ["users:read"])}
    return {"result": result, "db": db, "lake": lake, "client": client, "headers": headers}


def test_a_day_of_user_analytics_missing_from_the_history_is_named(
    mongo_server, tmp_path, simulated
):
    """The day before missing: five users went unscored and the mean probability fell from
    0.435 to 0.411, and nothing said so."""
    defs, lake_io, _ = sample_definitions(tmp_path, mongo_server, "predictions_gap")
    gap = LAST - timedelta(days=1)
    for (offset_day,), rows in simulated.partition_by("day", as_dict=True).items():
        if offset_day != gap:
            lake_io.lake().write_day("user_analytics", offset_day, rows)
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(),
        partition_key=LAST.isoformat(),
        asset_selection=[AssetKey("user_return_predictions")],
    )
    [materialization] = result.asset_materializations_for_node("user_return_predictions")
    assert materialization.metadata["user_analytics_days_missing"].value == 1
    assert materialization.metadata["user_analytics_missing"].value == gap.isoformat()


def test_a_history_written_before_the_scored_counts_existed_still_predicts(
    mongo_server, tmp_path, simulated
):
    """Every day read lacks `sentiment_end_scored` and `quality_scored`: they read as null and
    each day's mean weighs its conversations, as before (the simulated counts equal them)."""
    defs, lake_io, _ = sample_definitions(tmp_path, mongo_server, "predictions_old_days")
    older = simulated.drop("sentiment_end_scored", "quality_scored")
    for (offset_day,), rows in older.partition_by("day", as_dict=True).items():
        lake_io.lake().write_day("user_analytics", offset_day, rows)
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(),
        partition_key=LAST.isoformat(),
        asset_selection=[AssetKey("user_return_predictions")],
    )
    assert result.success
    lake_rows = lake_io.lake().scan_days("user_return_predictions", [LAST]).collect()
    expected = forecast(simulated, LAST).predictions
    assert lake_rows.sort("user_id")["return_probability_7d"].to_list() == (
        expected["return_probability_7d"].to_list()
    )


def test_the_asset_writes_the_days_predictions_and_its_evaluation(predicted, simulated):
    lake_rows = predicted["lake"].scan_days("user_return_predictions", [LAST]).collect()
    expected = forecast(simulated, LAST).predictions
    assert lake_rows.height == expected.height > 100
    assert lake_rows.sort("user_id")["return_probability_7d"].to_list() == (
        expected["return_probability_7d"].to_list()
    )
    documents = list(predicted["db"]["user_return_predictions"].find({"day": LAST.isoformat()}))
    assert len(documents) == expected.height
    assert {d["method"] for d in documents} == {"model"}
    materialization = predicted["result"].asset_materializations_for_node(
        "user_return_predictions"
    )[0]
    metadata = {
        key: getattr(value, "value", value) for key, value in materialization.metadata.items()
    }
    assert metadata["users_scored"] == expected.height
    assert metadata["method"] == metadata["count_method"] == "model"
    assert metadata["model_auc"] > metadata["baseline_auc"]
    assert metadata["model_brier"] < metadata["baseline_brier"]
    assert metadata["train_rows"] > 5000 and metadata["evaluation_rows"] > 1000
    assert metadata["user_analytics_days_missing"] == 0
    assert "data:image/png;base64," in metadata["calibration"]
    assert metadata["evaluation"]["evaluation_days"][1] == (LAST - timedelta(days=7)).isoformat()
    # Pseudonyms only: no user id is shown in the metadata.
    assert expected["user_id"][0] not in str(metadata)


def test_the_endpoint_returns_a_users_predictions_by_pseudonym(predicted, simulated):
    client, headers = predicted["client"], predicted["headers"]
    user = predicted["db"]["user_return_predictions"].find_one({})
    response = client.get(f"/users/{user['user_id']}/predictions", headers=headers)
    assert response.status_code == 200
    body = response.json()
    assert body["user_id"] == user["user_id"]
    [prediction] = body["predictions"]
    assert prediction["day"] == LAST.isoformat()
    assert prediction["return_probability_7d"] == user["return_probability_7d"]
    assert prediction["method"] == prediction["count_method"] == "model"
    assert client.get(f"/users/u_{'f' * 20}/predictions", headers=headers).status_code == 404
    assert client.get("/users/user-00001/predictions", headers=headers).status_code == 422
    assert client.get(f"/users/{user['user_id']}/predictions").status_code == 401


def test_the_count_floor_applies_to_a_zero_expectation_only():
    """The baseline's 0 is taken as 0.1 so that a return keeps the deviance finite; a model's
    0.02 for a quiet user is taken as it is (it was raised to 0.1 too, hiding its lead)."""
    from analytics_assets.analytics.return_prediction import poisson_deviance

    quiet = np.zeros(4)
    assert poisson_deviance(quiet, np.full(4, 0.02)) == pytest.approx(0.04)
    assert poisson_deviance(quiet, np.zeros(4)) == pytest.approx(0.2)
