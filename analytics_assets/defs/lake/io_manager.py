"""The Parquet lake: one zstd Parquet file per asset and UTC day, hive-style `day=YYYY-MM-DD`.

Built on Dagster's `UPathIOManager` (as dagster-polars is), so a local folder and an
`s3://bucket/prefix` URL run the same code. Two things it adds:
- an output spanning several days (a single-run backfill) is split by its `day` column into
  one file per day, which `UPathIOManager` refuses to do (dagster issue 14332);
- a day is replaced atomically: readers see the old file or the new one, never a torn one.
"""

from __future__ import annotations

import io
import os
import time
import uuid
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
from dagster import (
    ConfigurableIOManagerFactory,
    InputContext,
    MetadataValue,
    OutputContext,
    UPathIOManager,
)
from dagster_aws.s3 import S3Resource
from pydantic import Field
from upath import UPath

from analytics_assets.defs.metadata import frame_metadata

LOCAL_PROTOCOLS = ("", "file", "local")


def _is_local(path: UPath) -> bool:
    return path.protocol in LOCAL_PROTOCOLS


class PolarsParquetLake(UPathIOManager):
    extension = ".parquet"

    def __init__(self, base_path: UPath, *, compression_level: int, row_group_size: int):
        super().__init__(base_path=base_path)
        self.compression_level = compression_level
        self.row_group_size = row_group_size

    # -- layout ------------------------------------------------------------------------------

    def get_path_for_partition(
        self, context: InputContext | OutputContext, path: UPath, partition: str
    ) -> UPath:
        return path / f"day={partition}" / "data"

    # -- writing -----------------------------------------------------------------------------

    def _encode(self, frame: pl.DataFrame) -> bytes:
        buffer = io.BytesIO()
        frame.write_parquet(
            buffer,
            compression="zstd",
            compression_level=self.compression_level,
            row_group_size=self.row_group_size,
            statistics=True,
        )
        return buffer.getvalue()

    def dump_to_path(self, context: OutputContext, obj: pl.DataFrame, path: UPath) -> int:
        """Writes the day's file atomically; returns its size in bytes."""
        payload = self._encode(obj)
        if _is_local(path):
            # Write beside the target, then rename: a rename within a folder is atomic.
            path.parent.mkdir(parents=True, exist_ok=True)
            staging = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
            try:
                with open(staging.path, "wb") as handle:
                    handle.write(payload)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(staging.path, path.path)
            finally:
                # After a successful rename the staging name no longer exists.
                Path(staging.path).unlink(missing_ok=True)
        else:
            # One PUT of the finished file (multipart above the part size): S3 shows the new
            # object only once the upload completes, and keeps the old one if it fails.
            path.fs.pipe_file(path.path, payload)
        return len(payload)

    def handle_output(self, context: OutputContext, obj: pl.DataFrame) -> None:
        if not context.has_asset_partitions:
            super().handle_output(context, obj)
            return
        if not isinstance(obj, pl.DataFrame):
            raise TypeError(f"The Parquet lake stores polars DataFrames, got {type(obj)}.")
        paths = self._get_paths_for_partitions(context)
        if "day" not in obj.columns:
            raise ValueError(
                f"{context.asset_key.to_user_string()}: a day-partitioned output needs a `day` "
                "column to be split into its partitions."
            )
        by_day = {
            key[0].isoformat(): frame
            for key, frame in obj.partition_by("day", as_dict=True, maintain_order=True).items()
        }
        outside = sorted(set(by_day) - set(paths))
        if outside:
            raise ValueError(
                f"{context.asset_key.to_user_string()} has rows for day(s) {outside} outside "
                f"this run's partitions {sorted(paths)}."
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
            **frame_metadata(obj, days=len(paths)),
        }
        if len(paths) > 1:
            metadata["rows_per_day"] = MetadataValue.json(rows_per_day)
        context.add_output_metadata(metadata)

    # -- reading -----------------------------------------------------------------------------

    def load_from_path(self, context: InputContext, path: UPath) -> pl.DataFrame:
        if _is_local(path):
            return pl.read_parquet(path.path)
        with path.open("rb") as handle:
            return pl.read_parquet(handle)

    def load_input(self, context: InputContext) -> pl.DataFrame | pl.LazyFrame:
        if context.dagster_type.typing_type is pl.LazyFrame and context.has_asset_partitions:
            days = [date.fromisoformat(key) for key in context.asset_partition_keys]
            return self.scan_days(context.asset_key.path[-1], days)
        loaded = super().load_input(context)
        if isinstance(loaded, dict):
            # Several days (a partition mapping or a range): one frame, days in order. Days
            # written before a column was added lack it: diagonal fills it with nulls there.
            frames = [loaded[key] for key in sorted(loaded)]
            return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()
        return loaded

    @property
    def base_path(self) -> UPath:
        return self._base_path

    def day_file(self, asset_name: str, day: date) -> UPath:
        """Where a day of an asset lives; the same layout Dagster writes through."""
        return self._base_path / asset_name / f"day={day.isoformat()}" / f"data{self.extension}"

    def polars_storage_options(self) -> dict[str, str] | None:
        """The same S3 settings for polars' own object-store reader (credentials from env)."""
        if _is_local(self._base_path):
            return None
        options = dict(self._base_path.storage_options)
        client = options.get("client_kwargs", {})
        translated = {"aws_region": client.get("region_name", "us-east-1")}
        endpoint = options.get("endpoint_url")
        if endpoint:
            translated["aws_endpoint_url"] = endpoint
            translated["aws_allow_http"] = str(endpoint.startswith("http://")).lower()
        for ours, theirs in (
            ("key", "aws_access_key_id"),
            ("secret", "aws_secret_access_key"),
            ("token", "aws_session_token"),
        ):
            if options.get(ours):
                translated[theirs] = options[ours]
        return translated

    def scan_days(self, asset_name: str, days: list[date]) -> pl.LazyFrame:
        """A range of days as one lazy scan: polars reads only the columns and row groups the
        query needs. Days not in the lake are skipped."""
        return self._scan(asset_name, self.present_among(asset_name, days))

    def present_among(self, asset_name: str, days) -> list[date]:
        """Those of `days` the lake holds for the asset, in order."""
        present = set(self.days_present(asset_name))
        return sorted(day for day in set(days) if day in present)

    def read_days(
        self, asset_name: str, days, columns: list[str] | None = None
    ) -> tuple[pl.DataFrame | None, list[date]]:
        """The asset's rows (only `columns`) on those of `days` the lake holds, and which
        days those are; None when it holds none of them. One listing, one scan."""
        present = self.present_among(asset_name, days)
        if not present:
            return None, []
        scan = self._scan(asset_name, present)
        return (scan.select(columns) if columns else scan).collect(), present

    def scan_all(self, asset_name: str) -> pl.LazyFrame:
        """Every day of the asset in the lake (tools and retrieval, not Dagster)."""
        return self._scan(asset_name, self.days_present(asset_name))

    def _scan(self, asset_name: str, days: list[date]) -> pl.LazyFrame:
        if not days:
            return pl.LazyFrame()
        paths = [str(self.day_file(asset_name, day)) for day in days]
        return pl.scan_parquet(paths, storage_options=self.polars_storage_options())

    def tables(self) -> list[str]:
        """The assets the lake holds (its top-level folders; `_`-folders are bookkeeping)."""
        if not self._base_path.exists():
            return []
        return sorted(
            child.name
            for child in self._base_path.iterdir()
            if child.is_dir() and not child.name.startswith(("_", "."))
        )

    def write_day(self, asset_name: str, day: date, frame: pl.DataFrame) -> int:
        """Replaces one day of an asset outside a run (erasure): atomic, as a run writes it."""
        return self.dump_to_path(None, frame, self.day_file(asset_name, day))

    def write_file(self, relative_path: str, frame: pl.DataFrame) -> int:
        """A bookkeeping table beside the assets (`_privacy/…`), written atomically."""
        return self.dump_to_path(None, frame, self._base_path / relative_path)

    def read_file(self, relative_path: str) -> pl.DataFrame | None:
        path = self._base_path / relative_path
        return pl.read_parquet(path.read_bytes()) if path.exists() else None

    def delete_day(self, asset_name: str, day: date) -> None:
        """Removes one day of an asset (retention)."""
        folder = self.day_file(asset_name, day).parent
        if folder.exists():
            folder.fs.rm(folder.path, recursive=True)

    def days_present(self, asset_name: str) -> list[date]:
        """The days of an asset in the lake (for summaries and tools, not for Dagster)."""
        root = self._base_path / asset_name
        if not root.exists():
            return []
        return sorted(
            date.fromisoformat(child.name.removeprefix("day="))
            for child in root.iterdir()
            if child.name.startswith("day=")
        )


class ParquetLakeIOManager(ConfigurableIOManagerFactory):
    """Writes each asset as `<base_url>/<asset>/day=YYYY-MM-DD/data.parquet`."""

    base_url: str = Field(description="A local folder or an s3://bucket/prefix URL.")
    s3: S3Resource | None = Field(
        default=None,
        description="dagster-aws's S3Resource: endpoint (MinIO, a test server), region, "
        "profile or keys. Without it, or without keys in it, the standard AWS chain applies.",
    )
    compression_level: int = Field(
        default=3, description="zstd level; 3 keeps writes fast at a good ratio."
    )
    row_group_size: int = Field(
        default=128 * 1024,
        description="Rows per Parquet row group; large enough for scans, small enough to skip.",
    )

    def storage_options(self) -> dict[str, Any]:
        """The S3Resource's settings in s3fs's terms (secrets stay in memory, never logged)."""
        if not self.base_url.startswith("s3://") or self.s3 is None:
            return {}
        s3 = self.s3
        options: dict[str, Any] = {
            "client_kwargs": {"region_name": s3.region_name} if s3.region_name else {}
        }
        for option, value in (
            ("endpoint_url", s3.endpoint_url),
            ("profile", s3.profile_name),
            ("key", s3.aws_access_key_id),
            ("secret", s3.aws_secret_access_key),
            ("token", s3.aws_session_token),
        ):
            if value:
                options[option] = value
        if s3.use_unsigned_session:
            options["anon"] = True
        return options

    def lake(self) -> PolarsParquetLake:
        return PolarsParquetLake(
            UPath(self.base_url, **self.storage_options()),
            compression_level=self.compression_level,
            row_group_size=self.row_group_size,
        )

    def create_io_manager(self, context: Any) -> PolarsParquetLake:
        return self.lake()
