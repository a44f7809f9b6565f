"""The Parquet lake as a library: one zstd Parquet file per table and UTC day, hive-style.

`<base>/<table>/day=YYYY-MM-DD/data.parquet`, on a local folder or `s3://bucket/prefix`
(through universal_pathlib, so both run the same code). A day is replaced atomically:
readers see the old file or the new one, never a torn one.

Pure: no Dagster. The lake IO manager (`defs/storage/lake.py`) writes through
it, and everything else that reads or rewrites days outside Dagster's IO (checks, sensors,
privacy, the CLI, the summary) uses it directly.
"""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
from upath import UPath

from analytics_assets.settings import Settings

LOCAL_PROTOCOLS = ("", "file", "local")
EXTENSION = ".parquet"
DEFAULT_COMPRESSION_LEVEL = 3
DEFAULT_ROW_GROUP_SIZE = 128 * 1024


def s3_storage_options(
    *,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    profile: str | None = None,
    key: str | None = None,
    secret: str | None = None,
    token: str | None = None,
    anon: bool = False,
) -> dict[str, Any]:
    """S3 settings in s3fs's terms; unset values are left to the standard AWS chain."""
    options: dict[str, Any] = {"client_kwargs": {"region_name": region_name} if region_name else {}}
    for option, value in (
        ("endpoint_url", endpoint_url),
        ("profile", profile),
        ("key", key),
        ("secret", secret),
        ("token", token),
    ):
        if value:
            options[option] = value
    if anon:
        options["anon"] = True
    # botocore's standard retry mode, 8 attempts with exponential backoff and jitter (up to
    # about a minute in all): s3fs's own retries leave out a refused connection, and
    # botocore's default gave up within about 2 s, so an S3 endpoint restarting (a MinIO
    # pod rescheduled) failed the day's write it was in.
    options["config_kwargs"] = {"retries": {"max_attempts": 8, "mode": "standard"}}
    return options


def lake_from_settings(settings: Settings) -> Lake:
    """The deployment's lake, for commands and tools that run outside Dagster."""
    base_url = settings.lake_location
    if base_url is None:
        raise ValueError("The prod deployment needs ANALYTICS_LAKE_URL.")
    if not base_url.startswith("s3://"):
        return Lake.at(base_url)
    options = s3_storage_options(
        endpoint_url=settings.s3_endpoint_url, region_name=settings.aws_region
    )
    return Lake.at(base_url, **options)


class UnreadableLakeFileError(RuntimeError):
    """A day's file of the lake that cannot be read (truncated, overwritten, not Parquet)."""


def unreadable_file_message(path: UPath | str, error: BaseException) -> str:
    """Names the file, its table and day, and how to rebuild that day."""
    path = UPath(path)
    day = path.parent.name.removeprefix("day=")
    table = path.parent.parent.name
    return (
        f"The lake file {path} ({table}, day {day}) cannot be read "
        f"({type(error).__name__}: {str(error).splitlines()[0][:200] if str(error) else ''}). "
        f"Rebuild that day: materialize {table} for partition {day}, from the asset's page in "
        f"the UI or with `dagster asset materialize -m analytics_assets.definitions --select "
        f"{table} --partition {day}`."
    )


def is_local(path: UPath) -> bool:
    return path.protocol in LOCAL_PROTOCOLS


def day_folder_name(day: date | str) -> str:
    return f"day={day if isinstance(day, str) else day.isoformat()}"


class Lake:
    """Days of tables in a folder or bucket: find, scan, read, write and delete them."""

    def __init__(
        self,
        base_path: UPath,
        *,
        compression_level: int = DEFAULT_COMPRESSION_LEVEL,
        row_group_size: int = DEFAULT_ROW_GROUP_SIZE,
    ):
        self.base_path = base_path
        self.compression_level = compression_level
        self.row_group_size = row_group_size

    @classmethod
    def at(cls, base_url: str, **storage_options: Any) -> Lake:
        """A lake at a local folder or an `s3://` URL (storage options in s3fs's terms)."""
        return cls(UPath(base_url, **storage_options))

    def __repr__(self) -> str:
        return f"Lake({self.base_path!s})"

    # -- layout ------------------------------------------------------------------------------

    def day_file(self, table: str, day: date) -> UPath:
        """Where a day of a table lives; the same layout the IO manager writes through."""
        return self.base_path / table / day_folder_name(day) / f"data{EXTENSION}"

    def tables(self) -> list[str]:
        """The tables the lake holds (its top-level folders; `_`-folders are bookkeeping)."""
        _forget_listing(self.base_path)
        if not self.base_path.exists():
            return []
        return sorted(
            child.name
            for child in self.base_path.iterdir()
            if child.is_dir() and not child.name.startswith(("_", "."))
        )

    def days_present(self, table: str) -> list[date]:
        """The days of a table in the lake, in order."""
        root = self.base_path / table
        _forget_listing(root)
        if not root.exists():
            return []
        # A local day's folder is made before its file is written: a write killed in
        # between left a folder without a file, which every read over the day then failed
        # on. An object store has no folders of its own (one PUT makes the file and its
        # prefix), so there a listed day always has its file.
        local = is_local(root)
        return sorted(
            date.fromisoformat(child.name.removeprefix("day="))
            for child in root.iterdir()
            if child.name.startswith("day=")
            and (not local or (child / f"data{EXTENSION}").exists())
        )

    def present_among(self, table: str, days: Iterable[date]) -> list[date]:
        """Those of `days` the lake holds for the table, in order."""
        present = set(self.days_present(table))
        return sorted(day for day in set(days) if day in present)

    # -- reading -----------------------------------------------------------------------------

    def polars_storage_options(self) -> dict[str, str] | None:
        """The same S3 settings for polars' own object-store reader (credentials from env)."""
        if is_local(self.base_path):
            return None
        options = dict(self.base_path.storage_options)
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

    def read_path(self, path: UPath) -> pl.DataFrame:
        try:
            if is_local(path):
                return pl.read_parquet(path.path)
            with path.open("rb") as handle:
                return pl.read_parquet(handle)
        except (pl.exceptions.PolarsError, OSError) as error:
            if isinstance(error, FileNotFoundError):
                raise
            raise UnreadableLakeFileError(unreadable_file_message(path, error)) from error

    def scan_days(self, table: str, days: Iterable[date]) -> pl.LazyFrame:
        """A range of days as one lazy scan: polars reads only the columns and row groups the
        query needs. Days not in the lake are skipped."""
        return self._scan(table, self.present_among(table, days))

    def read_days(
        self, table: str, days: Iterable[date], columns: list[str] | None = None
    ) -> tuple[pl.DataFrame | None, list[date]]:
        """The table's rows (only `columns`) on those of `days` the lake holds, and which
        days those are; None when it holds none of them. One listing, one scan."""
        present = self.present_among(table, days)
        if not present:
            return None, []
        scan = self._scan(table, present)
        try:
            return (scan.select(columns) if columns else scan).collect(), present
        except (pl.exceptions.PolarsError, OSError) as error:
            self._raise_for_unreadable(table, present, error)
            raise

    def _raise_for_unreadable(self, table: str, days: list[date], error: BaseException) -> None:
        """A scan over many days failed: find the file that cannot be read and name it."""
        for day in days:
            path = self.day_file(table, day)
            try:
                self.read_path(path)
            except UnreadableLakeFileError as unreadable:
                raise unreadable from error

    def scan_all(self, table: str) -> pl.LazyFrame:
        """Every day of the table in the lake."""
        return self._scan(table, self.days_present(table))

    def _scan(self, table: str, days: list[date]) -> pl.LazyFrame:
        """The days' files as one frame, across releases that changed the table's columns.
        Polars takes the first file's schema for all: once a release added a column (or
        widened one: Int32 to Int64, Null to String), every scan mixing older and newer days
        failed, a look-back or an erasure included. The schema is the oldest and newest
        files' merged (every column either has, in the wider type; text where both are all
        null); a file without a column gets nulls, a column only files between them have is
        left out, and a file between them may hold a type the merged one takes (integers
        where it is a float, nanoseconds, a categorical, a struct field more)."""
        if not days:
            return pl.LazyFrame()
        paths = [str(self.day_file(table, day)) for day in days]
        options = self.polars_storage_options()
        if len(paths) == 1:
            return pl.scan_parquet(paths, storage_options=options)
        try:
            first, last = (
                pl.scan_parquet(path, storage_options=options).collect_schema()
                for path in (paths[0], paths[-1])
            )
        except (pl.exceptions.PolarsError, OSError):
            # An unreadable file: the plain scan fails on it, and the caller names it.
            return pl.scan_parquet(paths, storage_options=options)
        merged = pl.concat(
            [pl.DataFrame(schema=last), pl.DataFrame(schema=first)], how="diagonal_relaxed"
        ).schema
        # A column null on both ends says nothing of its type: a day between them may hold
        # text, which a Null column refused. Text takes what any of them holds.
        merged = {
            name: pl.String() if dtype == pl.Null else dtype for name, dtype in merged.items()
        }
        return pl.scan_parquet(
            paths,
            schema=merged,
            missing_columns="insert",
            extra_columns="ignore",
            # What a release may have changed between the ends: an integer column become a
            # float (a middle day's integers read as floats), microseconds become
            # nanoseconds, a categorical, a struct field added and dropped again.
            cast_options=pl.ScanCastOptions(
                integer_cast=["upcast", "allow-float"],
                float_cast="upcast",
                datetime_cast="nanosecond-downcast",
                missing_struct_fields="insert",
                extra_struct_fields="ignore",
                categorical_to_string="allow",
            ),
            storage_options=options,
        )

    def read_file(self, relative_path: str) -> pl.DataFrame | None:
        """A bookkeeping table beside the tables (`_privacy/…`); None when absent. Read,
        not first asked whether it exists: s3fs answers that from a listing it cached."""
        path = self.base_path / relative_path
        try:
            payload = path.read_bytes()
        except FileNotFoundError:
            return None
        return pl.read_parquet(payload)

    # -- writing -----------------------------------------------------------------------------

    def encode(self, frame: pl.DataFrame) -> bytes:
        buffer = io.BytesIO()
        frame.write_parquet(
            buffer,
            compression="zstd",
            compression_level=self.compression_level,
            row_group_size=self.row_group_size,
            statistics=True,
        )
        return buffer.getvalue()

    def write_path(self, path: UPath, frame: pl.DataFrame) -> int:
        """Writes one file atomically; returns its size in bytes."""
        return write_bytes_atomically(path, self.encode(frame))

    def write_day(self, table: str, day: date, frame: pl.DataFrame) -> int:
        """Replaces one day of a table (erasure rewrites days outside a run this way)."""
        return self.write_path(self.day_file(table, day), frame)

    def write_file(self, relative_path: str, frame: pl.DataFrame) -> int:
        """A bookkeeping table beside the tables (`_privacy/…`), written atomically."""
        return self.write_path(self.base_path / relative_path, frame)

    def delete_file(self, relative_path: str) -> None:
        """Removes a bookkeeping file (`_privacy/…`); one already gone is no error."""
        path = self.base_path / relative_path
        # Removed meanwhile by another process: no error either.
        with contextlib.suppress(FileNotFoundError):
            path.fs.rm(path.path)

    def delete_day(self, table: str, day: date) -> None:
        """Removes one day of a table (retention)."""
        folder = self.day_file(table, day).parent
        if folder.exists():
            folder.fs.rm(folder.path, recursive=True)

    def files_under(self, folder: str) -> list[str]:
        """The files in a bookkeeping folder (`_privacy/…`), as `files` names them."""
        return self._files_in(self.base_path / folder)

    def files(self) -> list[str]:
        """Every file of the lake (tables and bookkeeping), as paths relative to its base,
        sorted; staging files of writes in flight (`.`-names) are left out."""
        return self._files_in(self.base_path)

    def _files_in(self, path: UPath) -> list[str]:
        fs = path.fs
        _forget_listing(path)
        if not path.exists():
            return []
        # As the filesystem names what it finds (absolute, even for a relative lake URL).
        root = fs._strip_protocol(self.base_path.path).rstrip("/")
        relative = (found[len(root) :].lstrip("/") for found in fs.find(path.path))
        return sorted(
            name for name in relative if not any(part.startswith(".") for part in name.split("/"))
        )


def _forget_listing(path: UPath) -> None:
    """s3fs keeps a folder's listing for the life of the process (a code server's) and
    shares it between filesystems of one bucket: days written since by other processes
    were not seen, and the reconciliation sensor kept asking for days the lake held."""
    path.fs.invalidate_cache(path.path)


def write_bytes_atomically(path: UPath, payload: bytes) -> int:
    """Writes one file so that readers see the old or the new one, never a torn one;
    returns its size in bytes."""
    if is_local(path):
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
