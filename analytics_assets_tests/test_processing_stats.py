"""Issue 19: each heavy step records its CPU seconds, peak memory and rows/s; processing_stats
keeps the history of runs, and a range's duration is predicted from it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from dagster import (
    AssetKey,
    DagsterInstance,
    MaterializeResult,
    RetryPolicy,
    asset,
    materialize,
)

from analytics_assets.cli import main
from analytics_assets.defs.operations.history import read_run_history
from analytics_assets.operations.history import (
    RunRecord,
    StepFigures,
    measured_runs,
    runs_frame,
)
from analytics_assets.operations.prediction import (
    LEAST_SQUARES,
    NO_HISTORY,
    PER_DAY_MEAN,
    MeasuredRun,
    predict_duration,
)
from analytics_assets.operations.usage import STEP_PEAK, StepUsage
from analytics_assets.storage.lake import EXTENSION
from analytics_assets_tests.conftest import range_tags, sample_definitions

# --- the predictor -----------------------------------------------------------------------


def test_least_squares_recovers_an_exact_line():
    # seconds = 10 + 2·days
    runs = [MeasuredRun(days, 10 + 2 * days) for days in (1, 3, 7, 30)]
    prediction = predict_duration(runs, 90)
    assert prediction.method == LEAST_SQUARES
    assert prediction.intercept_seconds == pytest.approx(10)
    assert prediction.seconds_per_day == pytest.approx(2)
    assert prediction.seconds == pytest.approx(190)
    # On the line, so no residual and no error.
    assert prediction.error_seconds == pytest.approx(0, abs=1e-9)
    assert prediction.runs_used == 4


def test_the_error_grows_with_the_noise_and_away_from_the_history():
    runs = [MeasuredRun(1, 11), MeasuredRun(2, 15), MeasuredRun(3, 15), MeasuredRun(4, 19)]
    # Fitted by hand: mean days 2.5, mean seconds 15, slope 2.4, intercept 9, residuals
    # (-0.4, 1.2, -1.2, 0.4), residual variance 3.2 / 2 = 1.6.
    near = predict_duration(runs, 3)
    assert near.seconds == pytest.approx(9 + 2.4 * 3)
    assert near.error_seconds == pytest.approx((1.6 * (1 + 1 / 4 + 0.25 / 5)) ** 0.5)
    far = predict_duration(runs, 30)
    assert far.error_seconds > near.error_seconds


def test_two_runs_fit_exactly_and_give_no_error():
    prediction = predict_duration([MeasuredRun(1, 20), MeasuredRun(3, 30)], 5)
    assert prediction.method == LEAST_SQUARES
    assert prediction.seconds == pytest.approx(40)
    assert prediction.error_seconds is None


def test_no_history_gives_no_prediction():
    prediction = predict_duration([], 7)
    assert (prediction.seconds, prediction.error_seconds) == (None, None)
    assert prediction.method == NO_HISTORY and prediction.runs_used == 0
    assert "no prediction" in prediction.describe()


def test_one_run_is_scaled_by_days():
    prediction = predict_duration([MeasuredRun(2, 30)], 10)
    assert prediction.method == PER_DAY_MEAN
    assert prediction.seconds == pytest.approx(150)
    assert prediction.error_seconds is None


def test_runs_over_the_same_days_give_the_mean_rate_and_its_spread():
    prediction = predict_duration([MeasuredRun(1, 10), MeasuredRun(1, 14)], 3)
    assert prediction.method == PER_DAY_MEAN
    assert prediction.seconds == pytest.approx(36)
    # Sample standard deviation of (10, 14) is 2√2, per day, times 3 days.
    assert prediction.error_seconds == pytest.approx(3 * 2 * 2**0.5)


def test_a_falling_line_falls_back_to_the_mean_rate():
    # A cold first run can be slower than a longer warm one: no negative cost per day.
    prediction = predict_duration([MeasuredRun(1, 40), MeasuredRun(3, 30)], 3)
    assert prediction.method == PER_DAY_MEAN
    assert prediction.seconds == pytest.approx((40 + 10) / 2 * 3)


def test_a_range_has_at_least_one_day():
    with pytest.raises(ValueError):
        predict_duration([MeasuredRun(1, 1)], 0)


# --- the history table -------------------------------------------------------------------


def _step(asset: str, rows: int, cpu: float = 1.0, peak: float = 100.0) -> StepFigures:
    return StepFigures(asset, cpu, 1.0, peak, True, rows)


def test_runs_frame_sums_cpu_takes_the_highest_peak_and_the_first_steps_rows():
    started = datetime(2026, 11, 1, 3, tzinfo=UTC)
    runs = [
        RunRecord("b", "ingestion_job", "SUCCESS", started + timedelta(hours=1), 40.0,
                  ["2026-11-02", "2026-11-03", "2026-11-02"],
                  [_step("nocodb_raw_pages", 800, 2.0, 300.0), _step("daily_report", 90, 0.5)],
                  retries=1, rejected_records=7),
        RunRecord("a", "ingestion_job", "SUCCESS", started, 10.0, ["2026-11-01"],
                  [_step("nocodb_raw_pages", 200)], retries=0, rejected_records=2),
        RunRecord("c", "ingestion_job", "FAILURE", started + timedelta(hours=2), 5.0,
                  ["2026-11-04"], [_step("nocodb_raw_pages", 10)], 0, 0),
    ]  # fmt: skip
    frame = runs_frame(runs)
    assert frame["run_id"].to_list() == ["a", "b", "c"]
    second = frame.row(1, named=True)
    assert second["days"] == 2
    assert (second["first_day"], second["last_day"]) == ("2026-11-02", "2026-11-03")
    assert second["rows"] == 800 and second["rows_per_second"] == 20.0
    assert second["cpu_seconds"] == 2.5 and second["peak_rss_mb"] == 300.0
    assert second["peak_rss_growth_mb"] is None
    assert second["seconds_per_day"] == 20.0 and second["steps_measured"] == 2
    assert (second["retries"], second["rejected_records"]) == (1, 7)
    assert second["run_attempt"] == 1
    # The failed run is kept in the table, but not fitted.
    assert measured_runs(frame, "ingestion_job") == [MeasuredRun(1, 10.0), MeasuredRun(2, 40.0)]
    assert measured_runs(frame, "another_job") == []


def test_step_usage_counts_cpu_and_reads_a_peak_at_least_the_memory_the_step_held():
    usage = StepUsage.start()
    held = pl.DataFrame({"x": range(2_000_000)}).with_columns(y=pl.col("x") * 2)
    busy = sum(i * i for i in range(200_000))
    figures = usage.figures(held.height)
    assert busy > 0 and figures["rows"] == 2_000_000
    assert figures["cpu_seconds"] > 0 and figures["wall_seconds"] > 0
    assert figures["rows_per_second"] > 0
    # Two 16 MB columns were resident during the step.
    peak = figures.get(STEP_PEAK, figures.get("process_peak_rss_mb"))
    assert peak >= held.estimated_size() / 2**20
    if STEP_PEAK in figures:
        # Growth can be less than the frame: memory the process freed earlier (other tests,
        # in a full run) is reused before the resident size grows.
        assert 0 <= figures["peak_rss_growth_mb"] <= peak


def _high_water_mark_mib() -> float:
    status = Path("/proc/self/status").read_text()
    [line] = [line for line in status.splitlines() if line.startswith("VmHWM:")]
    return int(line.split()[1]) / 1024


def test_the_peak_is_the_steps_own_not_the_processes_since_it_started():
    if not Path("/proc/self/status").exists():
        pytest.skip("no /proc: the process's peak is reported, named as such")
    # 300 MB resident, then freed (a block this size is its own mapping, returned on free).
    spike = b"x" * (300 * 2**20)
    del spike
    peak_before_the_step = _high_water_mark_mib()
    usage = StepUsage.start()
    figures = usage.figures(rows=0)
    assert peak_before_the_step >= 300
    assert figures[STEP_PEAK] < peak_before_the_step - 200


def test_a_step_that_failed_once_counts_one_retry():
    attempts = []

    # Stands in for the real step under its name: the history reads these keys' metadata.
    @asset(name="nocodb_raw_pages", retry_policy=RetryPolicy(max_retries=2))
    def flaky_fetch() -> MaterializeResult:
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("NocoDB restarting")
        return MaterializeResult(
            metadata={"run/cpu_seconds": 0.5, f"run/{STEP_PEAK}": 120.0, "run/rows": 3}
        )

    instance = DagsterInstance.ephemeral()
    assert materialize([flaky_fetch], instance=instance).success
    [run] = read_run_history(instance)
    assert run.retries == 1 and len(attempts) == 2
    assert [(step.asset, step.rows, step.cpu_seconds) for step in run.steps] == [
        ("nocodb_raw_pages", 3, 0.5)
    ]
    assert run.status == "SUCCESS" and run.duration_seconds > 0


# --- the assets, on the sample -----------------------------------------------------------

ONE_DAY = [date(2026, 11, 8)]
THREE_DAYS = [date(2026, 11, 9) + timedelta(days=n) for n in range(3)]
MEASURED = (
    "nocodb_raw_pages",
    "conversation_messages",
    "message_signals",
    "conversation_translations",
    "conversation_categories",
    "conversation_analytics",
    "daily_report",
)


@pytest.fixture(scope="module")
def two_runs_and_the_stats(tmp_path_factory, mongo_server):
    root = tmp_path_factory.mktemp("processing_stats")
    defs, lake, _ = sample_definitions(root, mongo_server, "processing_stats_test")
    # On disk (SQLite), so that the command line reads the same history from DAGSTER_HOME.
    home = root / "dagster_home"
    home.mkdir()
    instance = DagsterInstance.local_temp(tempdir=str(home))
    job = defs.resolve_job_def("ingestion_job")
    runs = [
        job.execute_in_process(instance=instance, tags=range_tags(days[0], days[-1]))
        for days in (ONE_DAY, THREE_DAYS)
    ]
    assert all(run.success for run in runs)
    stats = defs.resolve_job_def("processing_stats_job").execute_in_process(
        instance=instance,
        run_config={"ops": {"processing_stats": {"config": {"predict_days": [2, 3]}}}},
    )
    assert stats.success
    yield instance, runs, stats, lake
    instance.dispose()


def test_each_heavy_step_records_its_cost(two_runs_and_the_stats):
    _, runs, _, _ = two_runs_and_the_stats
    for run in runs:
        seen = set()
        for event in run.get_asset_materialization_events():
            materialization = event.step_materialization_data.materialization
            asset = materialization.asset_key.to_user_string()
            if asset not in MEASURED:
                continue
            seen.add(asset)
            metadata = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
            assert metadata["run/cpu_seconds"] > 0, asset
            assert metadata["run/wall_seconds"] > 0, asset
            assert metadata[f"run/{STEP_PEAK}"] >= metadata["run/peak_rss_growth_mb"] >= 0, asset
            assert metadata[f"run/{STEP_PEAK}"] > 0, asset
            assert metadata["run/rows"] >= 0, asset
        assert seen == set(MEASURED)


def test_message_signals_give_each_day_of_a_range_its_own_numbers(two_runs_and_the_stats):
    """The three-day run: each day's user messages, languages and sentiment methods are that
    day's rows in the lake, not the run's."""
    _, runs, _, lake = two_runs_and_the_stats
    stored = lake.lake()
    days = {}
    for event in runs[1].get_asset_materialization_events():
        materialization = event.step_materialization_data.materialization
        if materialization.asset_key.to_user_string() == "message_signals":
            metadata = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
            days[materialization.partition] = metadata
    assert len(days) == 3
    for day, metadata in days.items():
        rows = stored.read_path(
            stored.base_path / "message_signals" / f"day={day}" / f"data{EXTENSION}"
        )
        assert metadata["user_messages"] == rows.height > 0
        assert sum(metadata["sentiment_methods"].values()) == rows.height
        assert sum(metadata["languages"].values()) == rows.height


def test_processing_stats_has_a_row_per_run_and_a_prediction_between_them(
    two_runs_and_the_stats,
):
    _, runs, stats, lake = two_runs_and_the_stats
    table = stats.asset_value("processing_stats")
    assert table["run_id"].to_list() == [run.run_id for run in runs]
    assert table["days"].to_list() == [1, 3]
    assert table["first_day"].to_list() == ["2026-11-08", "2026-11-09"]
    assert table["status"].to_list() == ["SUCCESS", "SUCCESS"]
    # Nothing failed: no step retried, no run re-ran.
    assert table["retries"].to_list() == [0, 0] and table["run_attempt"].to_list() == [1, 1]
    assert table["steps_measured"].to_list() == [len(MEASURED)] * 2
    for name in ("duration_seconds", "cpu_seconds", "peak_rss_mb", "rows", "rows_per_second"):
        assert (table[name] > 0).all(), name
    # Three days read more records than one.
    assert table["rows"][1] > table["rows"][0]
    assert table["peak_rss_scope"].to_list() == ["step", "step"]
    # Stored in the lake like every other asset (one file: the asset is not partitioned).
    stored = lake.lake()
    assert stored.read_path(stored.base_path / f"processing_stats{EXTENSION}").equals(table)

    [materialization] = [
        event.step_materialization_data.materialization
        for event in stats.get_asset_materialization_events()
    ]
    metadata = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
    assert metadata["runs"] == 2 and metadata["prediction_runs_used"] == 2
    chart = metadata["seconds_per_day_vega_lite"]
    assert [point["days"] for point in chart["data"]["values"]] == [1, 3]
    # The prediction is fitted on the two runs: for 3 days it is on the scale of what they
    # took (at least the shorter run, at most the longer run's per-day cost times three),
    # and it is what the predictor gives on the table's own durations.
    one_day, three_days = table["duration_seconds"].to_list()
    predicted = metadata["predicted_seconds_3_days"]
    assert min(one_day, three_days) <= predicted <= 3 * max(one_day, three_days)
    expected = predict_duration([MeasuredRun(1, one_day), MeasuredRun(3, three_days)], 3)
    assert predicted == pytest.approx(expected.seconds)
    assert metadata["predicted_seconds_2_days"] > 0
    assert "3 day(s):" in metadata["predicted_durations"]
    # The newest run first.
    latest = metadata["latest_runs"].splitlines()
    assert latest[0].startswith("| run_id | started | status | days |")
    assert latest[2].startswith(f"| {runs[1].run_id} ") and latest[3].startswith(
        f"| {runs[0].run_id} "
    )


def test_the_table_reads_rejected_records_from_processing_errors(two_runs_and_the_stats):
    _, runs, stats, _ = two_runs_and_the_stats
    table = stats.asset_value("processing_stats")
    for run, rejected in zip(runs, table["rejected_records"].to_list(), strict=True):
        per_day = [
            metadata["errors"].value - metadata["kept_without_values"].value
            for metadata in (
                event.step_materialization_data.materialization.metadata
                for event in run.get_asset_materialization_events()
                if event.step_materialization_data.materialization.asset_key
                == AssetKey("processing_errors")
            )
        ]
        # A record kept with a wrong value left empty is in processing_errors, not rejected.
        assert rejected == sum(per_day)
    # The sample has rejected records, so this compares real counts, not zeros.
    assert table["rejected_records"].sum() > 0


def test_the_command_predicts_from_the_instances_history(
    two_runs_and_the_stats, monkeypatch, capsys
):
    instance, _, stats, _ = two_runs_and_the_stats
    table = stats.asset_value("processing_stats")
    one_day, three_days = table["duration_seconds"].to_list()
    monkeypatch.setenv("DAGSTER_HOME", instance.root_directory)
    assert main(["predict-duration", "--days", "10"]) == 0
    printed = capsys.readouterr().out
    expected = predict_duration([MeasuredRun(1, one_day), MeasuredRun(3, three_days)], 10)
    assert printed.splitlines()[0] == f"ingestion_job: {expected.describe()}"
    assert "basis: 2 successful run(s) of ingestion_job over [1, 3] day(s)" in printed


def test_the_command_says_when_there_is_no_history(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    assert main(["predict-duration", "--days", "7"]) == 1
    assert "7 day(s): no prediction (no measured run)" in capsys.readouterr().out
