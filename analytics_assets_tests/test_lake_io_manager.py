"""The Parquet lake IO manager on a local folder and on the moto S3 server."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl
import pytest
from dagster import (
    AssetIn,
    BackfillPolicy,
    DagsterInstance,
    TimeWindowPartitionMapping,
    asset,
    materialize,
)

from analytics_assets.defs.partitions import daily_partitions, days_in
from analytics_assets.defs.storage.lake import ParquetLakeIOManager
from analytics_assets_tests.conftest import range_tags


def rows_for(days: list[date], per_day: int = 3) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "id": [f"{day}-{n}" for day in days for n in range(per_day)],
            "value": [n for _ in days for n in range(per_day)],
            "day": [day for day in days for _ in range(per_day)],
        }
    )


# The run's version, so a test can tell a replaced day from the previous one.
VERSION = {"value": 1}


@asset(partitions_def=daily_partitions, backfill_policy=BackfillPolicy.single_run())
def events(context) -> pl.DataFrame:
    days = days_in(context.partition_time_window)
    # One day of a range is empty on purpose: it must still get its (empty) file.
    frame = rows_for([day for day in days if day != date(2026, 11, 3)])
    return frame.with_columns(pl.lit(VERSION["value"]).alias("version"))


@asset(
    partitions_def=daily_partitions,
    ins={
        "events": AssetIn(
            partition_mapping=TimeWindowPartitionMapping(start_offset=-1, end_offset=0)
        )
    },
)
def events_with_previous_day(events: pl.DataFrame) -> pl.DataFrame:
    return events.filter(pl.col("day") == pl.col("day").max())


@pytest.fixture(params=["local", "s3"])
def lake(request, tmp_path) -> ParquetLakeIOManager:
    if request.param == "local":
        return ParquetLakeIOManager(base_url=str(tmp_path / "lake"))
    s3 = request.getfixturevalue("s3_server")
    return ParquetLakeIOManager(base_url=f"s3://{s3.bucket}/{tmp_path.name}/lake", s3=s3.resource())


def read_day(lake: ParquetLakeIOManager, asset_name: str, day: str) -> pl.DataFrame:
    path = lake.lake().day_file(asset_name, date.fromisoformat(day))
    with path.open("rb") as handle:
        return pl.read_parquet(handle)


def test_single_run_range_writes_one_file_per_day_and_reads_them_back(lake):
    VERSION["value"] = 1
    instance = DagsterInstance.ephemeral()
    result = materialize(
        [events],
        resources={"io_manager": lake},
        instance=instance,
        tags=range_tags("2026-11-01", "2026-11-04"),
    )
    assert result.success
    assert lake.lake().days_present("events") == [date(2026, 11, d) for d in (1, 2, 3, 4)]
    assert read_day(lake, "events", "2026-11-02")["id"].to_list() == [
        "2026-11-02-0",
        "2026-11-02-1",
        "2026-11-02-2",
    ]
    empty = read_day(lake, "events", "2026-11-03")
    assert empty.height == 0
    assert empty.columns == ["id", "value", "day", "version"]
    metadata = result.asset_materializations_for_node("events")[0].metadata
    assert metadata["rows_in_run"].value == 9
    assert metadata["rows_per_day"].value == {
        "2026-11-01": 3,
        "2026-11-02": 3,
        "2026-11-03": 0,
        "2026-11-04": 3,
    }
    assert metadata["partitions_written"].value == 4

    # A downstream partition reads its day and the day before through the mapping.
    downstream = materialize(
        [events, events_with_previous_day],
        selection=[events_with_previous_day],
        resources={"io_manager": lake},
        instance=instance,
        partition_key="2026-11-02",
    )
    assert downstream.success
    assert downstream.output_for_node("events_with_previous_day")["id"].to_list() == [
        "2026-11-02-0",
        "2026-11-02-1",
        "2026-11-02-2",
    ]


def test_rematerializing_a_day_replaces_it(lake):
    instance = DagsterInstance.ephemeral()
    for version in (1, 2):
        VERSION["value"] = version
        assert materialize(
            [events],
            resources={"io_manager": lake},
            instance=instance,
            partition_key="2026-11-05",
        ).success
    day = read_day(lake, "events", "2026-11-05")
    assert day.height == 3
    assert day["version"].unique().to_list() == [2]


def test_rows_outside_the_runs_partitions_are_refused(tmp_path):
    @asset(partitions_def=daily_partitions, name="events")
    def leaky_events() -> pl.DataFrame:
        return rows_for([date(2026, 11, 6), date(2026, 11, 7)])

    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake"))
    result = materialize(
        [leaky_events],
        resources={"io_manager": lake},
        partition_key="2026-11-06",
        raise_on_error=False,
    )
    assert not result.success
    assert lake.lake().days_present("events") == []


def test_local_replace_is_atomic_and_leaves_no_staging_files(tmp_path):
    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake"))
    instance = DagsterInstance.ephemeral()
    for _ in range(3):
        assert materialize(
            [events],
            resources={"io_manager": lake},
            instance=instance,
            tags=range_tags("2026-11-01", "2026-11-02"),
        ).success
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert files == [
        "lake/events/day=2026-11-01/data.parquet",
        "lake/events/day=2026-11-02/data.parquet",
    ]


def test_s3_files_are_zstd_parquet(s3_server, tmp_path):
    import pyarrow.parquet as pq

    lake = ParquetLakeIOManager(
        base_url=f"s3://{s3_server.bucket}/{tmp_path.name}", s3=s3_server.resource()
    )
    assert materialize([events], resources={"io_manager": lake}, partition_key="2026-11-08").success
    key = f"{tmp_path.name}/events/day=2026-11-08/data.parquet"
    body = s3_server.client().get_object(Bucket=s3_server.bucket, Key=key)["Body"].read()
    import io

    metadata = pq.ParquetFile(io.BytesIO(body)).metadata
    assert metadata.num_rows == 3
    assert metadata.row_group(0).column(0).compression == "ZSTD"


@asset(
    partitions_def=daily_partitions,
    ins={
        "events": AssetIn(
            partition_mapping=TimeWindowPartitionMapping(start_offset=-3, end_offset=0)
        )
    },
    io_manager_key="mem",
)
def lazy_four_days(events: pl.LazyFrame) -> pl.DataFrame:
    # A lazy scan: only the filtered column and matching rows are read.
    return events.filter(pl.col("value") == 0).select("id", "day").collect()


def test_a_range_of_days_loads_as_one_lazy_scan(lake):
    from dagster import InMemoryIOManager

    VERSION["value"] = 1
    instance = DagsterInstance.ephemeral()
    assert materialize(
        [events],
        resources={"io_manager": lake},
        instance=instance,
        tags=range_tags("2026-11-10", "2026-11-13"),
    ).success
    result = materialize(
        [events, lazy_four_days],
        selection=[lazy_four_days],
        resources={"io_manager": lake, "mem": InMemoryIOManager()},
        instance=instance,
        partition_key="2026-11-13",
    )
    assert result.success
    frame = result.output_for_node("lazy_four_days")
    assert frame["id"].to_list() == ["2026-11-10-0", "2026-11-11-0", "2026-11-12-0", "2026-11-13-0"]


def test_a_write_failing_half_way_leaves_the_previous_day_readable(lake, monkeypatch):
    instance = DagsterInstance.ephemeral()
    VERSION["value"] = 1
    assert materialize(
        [events], resources={"io_manager": lake}, instance=instance, partition_key="2026-11-20"
    ).success
    manager = lake.lake()
    fs = manager.day_file("events", date(2026, 11, 20)).fs

    def broken_upload(path, payload, *args, **kwargs):
        # The connection drops after half the bytes: the store must not keep a torn file.
        raise ConnectionResetError(f"injected: reset after {len(payload) // 2} bytes")

    # fsspec caches filesystem instances, so the run below writes through this one.
    monkeypatch.setattr(fs, "pipe_file", broken_upload)
    real_replace = __import__("os").replace
    monkeypatch.setattr(
        "analytics_assets.storage.lake.os.replace",
        lambda *args: (_ for _ in ()).throw(OSError("injected: disk full at rename")),
    )
    VERSION["value"] = 2
    failed = materialize(
        [events],
        resources={"io_manager": lake},
        instance=instance,
        partition_key="2026-11-20",
        raise_on_error=False,
    )
    assert not failed.success
    monkeypatch.setattr("analytics_assets.storage.lake.os.replace", real_replace)
    day = read_day(lake, "events", "2026-11-20")
    assert day.height == 3
    assert day["version"].unique().to_list() == [1]
    folder = manager.day_file("events", date(2026, 11, 20)).parent
    assert [child.name for child in folder.iterdir()] == ["data.parquet"]


def test_a_first_write_of_a_day_killed_before_its_file_leaves_no_day(tmp_path):
    """The day's folder is made before its file: a write killed in between left a folder
    that counted as a day, and every read over it failed with FileNotFoundError."""
    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake"))
    assert materialize([events], resources={"io_manager": lake},
                       partition_key="2026-11-10").success  # fmt: skip
    manager = lake.lake()
    orphan = manager.day_file("events", date(2026, 11, 11)).parent
    orphan.mkdir(parents=True)
    (orphan / ".data.parquet.dead.tmp").write_bytes(b"PAR1 half")
    assert manager.days_present("events") == [date(2026, 11, 10)]
    frame, days = manager.read_days("events", [date(2026, 11, 10), date(2026, 11, 11)])
    assert days == [date(2026, 11, 10)] and frame.height == 3
    assert manager.scan_days("events", [date(2026, 11, 11)]).collect().height == 0


def test_an_unreadable_day_file_is_named_with_how_to_rebuild_it(tmp_path):
    from analytics_assets.storage.lake import UnreadableLakeFileError

    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake"))
    instance = DagsterInstance.ephemeral()
    assert materialize([events], resources={"io_manager": lake}, instance=instance,
                       tags=range_tags("2026-11-10", "2026-11-12")).success  # fmt: skip
    broken = lake.lake().day_file("events", date(2026, 11, 11))
    broken.write_bytes(b"PAR1 half a file")
    expected = [str(broken), "events, day 2026-11-11", "--select events --partition 2026-11-11"]

    result = materialize(
        [events, events_with_previous_day],
        selection=[events_with_previous_day],
        resources={"io_manager": lake},
        instance=instance,
        partition_key="2026-11-12",
        raise_on_error=False,
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.to_string()
    assert all(part in message for part in expected), message
    with pytest.raises(UnreadableLakeFileError) as raised:
        lake.lake().read_days("events", [date(2026, 11, 10), date(2026, 11, 11)])
    assert all(part in str(raised.value) for part in expected)


def test_days_written_before_and_after_a_release_changed_the_columns_read_as_one(tmp_path):
    """A scan took the first file's schema for every file: once a release added a column or
    widened one, every read mixing older and newer days failed (a look-back, an erasure)."""
    manager = ParquetLakeIOManager(base_url=str(tmp_path / "lake")).lake()
    old, new = date(2026, 11, 10), date(2026, 11, 11)
    manager.write_day("events", old, pl.DataFrame(
        {"day": [old], "count": pl.Series([1], dtype=pl.Int32), "note": [None],
         "gone": ["x"]}
    ))  # fmt: skip
    manager.write_day("events", new, pl.DataFrame(
        {"day": [new], "count": pl.Series([2**40], dtype=pl.Int64), "note": ["text"],
         "added": [1.5]}
    ))  # fmt: skip
    frame, days = manager.read_days("events", [old, new])
    assert days == [old, new]
    assert frame.sort("day").rows(named=True) == [
        {"day": old, "count": 1, "note": None, "added": None, "gone": "x"},
        {"day": new, "count": 2**40, "note": "text", "added": 1.5, "gone": None},
    ]
    assert manager.scan_days("events", [old, new]).select("day", "count").collect().height == 2
    assert manager.scan_all("events").select(pl.col("added").sum()).collect().item() == 1.5


def test_a_type_that_changed_between_the_first_and_last_day_still_reads(tmp_path):
    """The merged schema of the two ends refused what a day between them held: integers
    where the newest day holds floats, text where both ends are all null, nanoseconds, a
    categorical, and a struct field a middle day had."""
    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake")).lake()
    days = [date(2026, 11, 10) + timedelta(days=n) for n in range(3)]

    def at(day: int, unit: str) -> pl.Series:
        return pl.Series([datetime(2026, 11, day)], dtype=pl.Datetime(unit))

    columns = [
        {"ratio": [1], "note": [None], "at": at(10, "us"),
         "label": pl.Series(["a"], dtype=pl.String), "parts": [{"a": 1}]},
        {"ratio": [2], "note": ["text"], "at": at(11, "ns"),
         "label": pl.Series(["b"], dtype=pl.Categorical), "parts": [{"a": 2, "b": "x"}]},
        {"ratio": [2.5], "note": [None], "at": at(12, "us"),
         "label": pl.Series(["c"], dtype=pl.String), "parts": [{"a": 3}]},
    ]  # fmt: skip
    for day, values in zip(days, columns, strict=True):
        lake.write_day("events", day, pl.DataFrame({"day": [day], **values}))
    frame, _ = lake.read_days("events", days)
    assert frame.sort("day").select("ratio", "note", "label").rows() == [
        (1.0, None, "a"),
        (2.0, "text", "b"),
        (2.5, None, "c"),
    ]
    assert frame["parts"].struct.field("a").sort().to_list() == [1, 2, 3]


def test_days_another_process_wrote_to_s3_are_seen_by_a_long_lived_one(s3_server, tmp_path):
    """s3fs kept the first listing of a table for the process's life: a code server's
    reconciliation sensor never saw days written since by run workers."""
    lake = ParquetLakeIOManager(
        base_url=f"s3://{s3_server.bucket}/{tmp_path.name}", s3=s3_server.resource()
    ).lake()
    first, second = date(2026, 11, 8), date(2026, 11, 9)
    lake.write_day("events", first, pl.DataFrame({"day": [first], "value": [1]}))
    assert lake.days_present("events") == [first] and lake.tables() == ["events"]
    # Another process: written with boto3, past this process's s3fs.
    for table, day in (("events", second), ("other", second)):
        s3_server.client().put_object(
            Bucket=s3_server.bucket,
            Key=f"{tmp_path.name}/{table}/day={day.isoformat()}/data.parquet",
            Body=lake.encode(pl.DataFrame({"day": [day], "value": [2]})),
        )
    assert lake.days_present("events") == [first, second]
    assert lake.tables() == ["events", "other"]
    frame, days = lake.read_days("events", [first, second])
    assert days == [first, second] and frame["value"].to_list() == [1, 2]
