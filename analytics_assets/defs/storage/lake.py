"""The lake in Dagster: a resource for steps that read or rewrite days themselves, and the
IO manager that stores every asset's output in it.

Both are thin: the lake's layout, reads and atomic writes are `storage/lake.py`'s. What the
IO manager adds is Dagster's side: an output spanning several days (a single-run backfill)
is split by its `day` column into one file per day, which `UPathIOManager` refuses to do
(dagster issue 14332), and the write is reported as materialization metadata.
"""

from __future__ import annotations

import time
from datetime import date
from typing import Any

import polars as pl
from dagster import (
    Config,
    ConfigurableIOManagerFactory,
    ConfigurableResource,
    InputContext,
    MetadataValue,
    OutputContext,
    UPathIOManager,
)
from dagster_aws.s3 import S3Resource
from pydantic import Field
from upath import UPath

from analytics_assets.defs.metadata import shape_metadata
from analytics_assets.storage.lake import (
    DEFAULT_COMPRESSION_LEVEL,
    DEFAULT_ROW_GROUP_SIZE,
    EXTENSION,
    Lake,
    day_folder_name,
    s3_storage_options,
)


def s3fs_options(url: str, s3: S3Resource | None) -> dict[str, Any]:
    """An S3Resource's settings in s3fs's terms for `url` (secrets stay in memory, never
    logged); nothing for a local path. Shared by the lake and the state (checkpoints, heads)."""
    if not str(url).startswith("s3://") or s3 is None:
        return {}
    return s3_storage_options(
        endpoint_url=s3.endpoint_url,
        region_name=s3.region_name,
        profile=s3.profile_name,
        key=s3.aws_access_key_id,
        secret=s3.aws_secret_access_key,
        token=s3.aws_session_token,
        anon=bool(s3.use_unsigned_session),
    )


class LakeConfig(Config):
    """Where the lake is and how it writes; shared by the resource and the IO managers."""

    base_url: str = Field(description="A local folder or an s3://bucket/prefix URL.")
    s3: S3Resource | None = Field(
        default=None,
        description="dagster-aws's S3Resource: endpoint (MinIO, a test server), region, "
        "profile or keys. Without it, or without keys in it, the standard AWS chain applies.",
    )
    compression_level: int = Field(
        default=DEFAULT_COMPRESSION_LEVEL, description="zstd level; 3 keeps writes fast."
    )
    row_group_size: int = Field(
        default=DEFAULT_ROW_GROUP_SIZE,
        description="Rows per Parquet row group; large enough for scans, small enough to skip.",
    )

    def storage_options(self) -> dict[str, Any]:
        return s3fs_options(self.base_url, self.s3)

    def lake(self) -> Lake:
        return Lake(
            UPath(self.base_url, **self.storage_options()),
            compression_level=self.compression_level,
            row_group_size=self.row_group_size,
        )


class LakeResource(ConfigurableResource, LakeConfig):
    """The lake for steps that read other days or rewrite days themselves (checks, sensors,
    retention, erasure); `lake()` gives the pure `storage.lake.Lake`."""


class PolarsParquetLake(UPathIOManager):
    """`UPathIOManager` (as dagster-polars builds on) over a `Lake`."""

    extension = EXTENSION

    def __init__(self, lake: Lake):
        super().__init__(base_path=lake.base_path)
        self.lake = lake

    def get_path_for_partition(
        self, context: InputContext | OutputContext, path: UPath, partition: str
    ) -> UPath:
        return path / day_folder_name(partition) / "data"

    def dump_to_path(self, context: OutputContext, obj: pl.DataFrame, path: UPath) -> int:
        return self.lake.write_path(path, obj)

    def load_from_path(self, context: InputContext, path: UPath) -> pl.DataFrame:
        return self.lake.read_path(path)

    def handle_output(self, context: OutputContext, obj: pl.DataFrame) -> None:
        if not context.has_asset_partitions:
            super().handle_output(context, obj)
            return
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(f"The Parquet lake stores polars DataFrames, got {type(obj)}.")
        asset_name = context.asset_key.to_user_string()
        paths = self._get_paths_for_partitions(context)
        if "day" not in obj.columns:
            raise ValueError(
                f"{asset_name}: a day-partitioned output needs a `day` column to be split "
                "into its partitions."
            )
        by_day = {
            key[0].isoformat(): frame
            for key, frame in obj.partition_by("day", as_dict=True, maintain_order=True).items()
        }
        outside = sorted(set(by_day) - set(paths))
        if outside:
            raise ValueError(
                f"{asset_name} has rows for day(s) {outside} outside this run's partitions "
                f"{sorted(paths)}."
            )
        started = time.perf_counter()
        written_bytes = 0
        rows_per_day: dict[str, int] = {}
        for partition_key, path in sorted(paths.items()):
            # A day without rows still gets its (empty) file: "nothing happened" is data too.
            frame = by_day.get(partition_key, obj.clear())
            written_bytes += self.dump_to_path(context, frame, path)
            rows_per_day[partition_key] = frame.height
        seconds = time.perf_counter() - started
        first_path = paths[min(paths)]
        metadata: dict[str, Any] = {
            "path": MetadataValue.path(
                str(first_path) if len(paths) == 1 else str(first_path.parents[1])
            ),
            "partitions_written": len(paths),
            "bytes_written": written_bytes,
            "write_seconds": round(seconds, 3),
            "write_mb_per_s": round(written_bytes / 1e6 / seconds, 2) if seconds else None,
            # Never a preview: the asset's own metadata shows what it may of its rows (the
            # restricted raw table shows no record), and this would replace it.
            **shape_metadata(obj, days=len(paths)),
        }
        if len(paths) > 1:
            metadata["rows_per_day"] = MetadataValue.json(rows_per_day)
        context.add_output_metadata(metadata)

    def load_input(self, context: InputContext) -> pl.DataFrame | pl.LazyFrame:
        if context.dagster_type.typing_type is pl.LazyFrame and context.has_asset_partitions:
            days = [date.fromisoformat(key) for key in context.asset_partition_keys]
            return self.lake.scan_days(context.asset_key.path[-1], days)
        if context.has_asset_partitions and _optional_days(context):
            return self._load_present_days(context)
        loaded = super().load_input(context)
        if isinstance(loaded, dict):
            # Several days (a partition mapping or a range): one frame, days in order. Days
            # written before a column was added lack it: diagonal fills it with nulls there.
            frames = [loaded[key] for key in sorted(loaded)]
            return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
        return loaded

    def _load_present_days(self, context: InputContext) -> pl.DataFrame:
        """The days of an input whose mapping reads neighbour days that need not exist (the
        next day, the previous week, every day): only those the lake holds, found by one
        listing. UPathIOManager would try each day's file and log a warning for every absent
        one, though the input declared them optional: on a clean run over a past sample that
        is the day after it, the week before it, and so on."""
        paths = self._get_paths_for_partitions(context)
        days = {date.fromisoformat(key): key for key in paths}
        present = self.lake.present_among(context.asset_key.path[-1], days)
        absent = sorted(set(days) - set(present))
        if absent:
            context.log.debug(
                f"{context.asset_key.to_user_string()}: {len(absent)} optional day(s) not in "
                f"the lake (not materialized yet): {absent[0]}..{absent[-1]}"
            )
        # Days written before a column was added lack it: diagonal fills it with nulls there.
        frames = [self.load_from_path(context, paths[days[day]]) for day in present]
        return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def _optional_days(context: InputContext) -> bool:
    """Whether the input says absent days are expected (`allow_missing_partitions`)."""
    return bool((context.definition_metadata or {}).get("allow_missing_partitions"))


class ParquetLakeIOManager(ConfigurableIOManagerFactory, LakeConfig):
    """Writes each asset as `<base_url>/<asset>/day=YYYY-MM-DD/data.parquet`."""

    def create_io_manager(self, context: Any) -> PolarsParquetLake:
        return PolarsParquetLake(self.lake())
