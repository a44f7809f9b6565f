"""Where records come from: the bundled export (embedded default) or a live NocoDB."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import date
from pathlib import Path
from typing import Literal

import polars as pl
from dagster import Config, ConfigurableResource
from dagster_aws.s3 import S3Resource
from pydantic import Field, PrivateAttr

from analytics_assets.defs.partitions import FIRST_DAY
from analytics_assets.defs.storage.lake import s3fs_options
from analytics_assets.nocodb.client import NocoDBClient, RetryPolicy
from analytics_assets.nocodb.pacing import RequestPacer
from analytics_assets.sources.base import RecordSource
from analytics_assets.sources.export import ExportSource
from analytics_assets.sources.generator import ensure_sample_export
from analytics_assets.sources.nocodb import NocoDBSource
from analytics_assets.sources.schema import EVENT_TIME_FIELD, SourceSchema
from analytics_assets.transforms.timestamps import parse_utc_timestamp

_pacers: dict[str, RequestPacer] = {}
_pacers_lock = threading.Lock()


def shared_pacer(url: str, token: str, requests_per_second: float) -> RequestPacer:
    """One pacer per server and token in a process: the rate limit is per token, not per thread."""
    key = hashlib.sha256(f"{url}\0{token}\0{requests_per_second}".encode()).hexdigest()
    with _pacers_lock:
        if key not in _pacers:
            _pacers[key] = RequestPacer(requests_per_second)
        return _pacers[key]


class SourceSchemaConfig(Config, SourceSchema):
    """The pure `SourceSchema` as Dagster config: set per deployment, shown in the UI."""


class RecordSourceResource(ConfigurableResource):
    """Base of the record sources; assets depend on this, deployments choose the subclass."""

    source_schema: SourceSchemaConfig = Field(default_factory=SourceSchemaConfig)
    fetch_workers: int = Field(
        default=1, description="Days and tables fetched at once within a run."
    )

    def open(self, checkpoint_scope: str = "") -> AbstractContextManager[RecordSource]:
        """The source, open for the duration of one step (connections closed after).
        `checkpoint_scope`: whose saved pages a pull may resume (a run and its
        re-executions); a source without page checkpoints ignores it."""
        raise NotImplementedError(f"{type(self).__name__} must implement open()")

    def data_end(self) -> date | None:
        """The last day the source can hold records of; None for a live source, which keeps
        receiving them (the freshness check then expects every day's report)."""
        return None


class ExportSourceResource(RecordSourceResource):
    """A folder of NocoDB exports; the embedded default generates the sample export into it."""

    export_dir: str = Field(description="Folder holding <table>.json|.jsonl|.csv exports.")
    generate_sample_if_missing: bool = Field(
        default=False,
        description="Write the deterministic sample export into export_dir when it is absent.",
    )
    _source: ExportSource | None = PrivateAttr(default=None)

    @contextmanager
    def open(self, checkpoint_scope: str = "") -> Iterator[RecordSource]:
        folder = Path(self.export_dir)
        if self.generate_sample_if_missing:
            ensure_sample_export(folder)
        # Keep the parsed files for the resource's lifetime: a backfill reads them once.
        if self._source is None or self._source.folder != folder:
            self._source = ExportSource(folder, self.source_schema, FIRST_DAY)
        yield self._source

    def data_end(self) -> date | None:
        """An export is a copy that ends: the newest day a conversation in it started (a
        daily report counts the conversations started that day)."""
        kind = "conversations"
        field = self.source_schema.source_field(kind, EVENT_TIME_FIELD[kind])
        with self.open() as source:
            table = source.read_table(self.source_schema.table(kind), [field])
        if field not in table.columns:
            return None
        return table.select(
            parse_utc_timestamp(pl.col(field).cast(pl.String)).dt.date().max()
        ).item()


class NocoDBSourceResource(RecordSourceResource):
    """A live NocoDB (Data API v2). The token comes from an EnvVar and is never logged."""

    url: str = Field(description="NocoDB base URL, e.g. https://app.nocodb.com.")
    api_token: str = Field(description="API token (xc-token); set NOCODB_API_TOKEN.")
    base_id: str | None = Field(
        default=None, description="Base id to look table titles up in; None searches all bases."
    )
    requests_per_second: float = Field(
        default=5.0, description="Pacing per token; NocoDB Cloud allows 5/s. 0 disables pacing."
    )
    # 8, not 4: requests at once hide the waits of faulted ones (30 % of requests faulted:
    # 18.5 s against 37 s with 4, clean 7.8 s either way; benchmarks/bench_faults.py).
    fetch_workers: int = Field(
        default=8,
        description="Requests in flight at once within a run (days and tables, or a range's "
        "key shards); all share one pacer, so the rate limit holds however many there are.",
    )
    timeout_s: float = Field(default=30.0, description="Per-request timeout.")
    max_attempts: int = Field(default=8, description="Attempts per request before giving up.")
    throttle_wait_s: float = Field(
        default=30.0, description="Wait after a 429 without Retry-After (Cloud blocks 30 s)."
    )

    checkpoint_dir: str | None = Field(
        default=None,
        description="Where a day's completed pages are kept until its pull finishes, so a "
        "retried pull resumes after its last page: a folder or an s3:// URL (production: "
        "ANALYTICS_STATE_URL/nocodb_pages, so a retry on another worker resumes too). Default: "
        "$DAGSTER_HOME/storage/nocodb_pages (or the system temp folder); '' turns resuming off.",
    )
    checkpoint_s3: S3Resource | None = Field(
        default=None, description="Endpoint, region or keys for an s3:// checkpoint_dir."
    )
    checkpoint_max_age_s: float = Field(
        default=3600.0, description="Older checkpoints are stale and the pull starts over."
    )

    def _checkpoint_dir(self) -> str | None:
        if self.checkpoint_dir is not None:
            return self.checkpoint_dir or None
        # Dagster's own variable (the instance's folder), set where the run executes.
        home = os.environ.get("DAGSTER_HOME")
        base = Path(home) / "storage" if home else Path(tempfile.gettempdir())
        return str(base / "nocodb_pages")

    def client(self) -> NocoDBClient:
        return NocoDBClient(
            self.url,
            self.api_token,
            timeout_s=self.timeout_s,
            retry=RetryPolicy(max_attempts=self.max_attempts, throttle_wait_s=self.throttle_wait_s),
            pacer=shared_pacer(self.url, self.api_token, self.requests_per_second),
        )

    @contextmanager
    def open(self, checkpoint_scope: str = "") -> Iterator[RecordSource]:
        with self.client() as client:
            yield NocoDBSource(
                client,
                self.source_schema,
                base_id=self.base_id,
                checkpoint_dir=self._checkpoint_dir(),
                checkpoint_scope=checkpoint_scope,
                checkpoint_max_age_s=self.checkpoint_max_age_s,
                checkpoint_storage_options=s3fs_options(
                    self._checkpoint_dir() or "", self.checkpoint_s3
                ),
                first_day=FIRST_DAY,
            )


class SyncSettings(ConfigurableResource):
    """How the incremental sync and the reconciliation behave."""

    overlap_minutes: float = Field(
        default=5.0,
        description="Each tick asks again from the watermark minus this, for records NocoDB "
        "stamped before the watermark but committed after the last tick.",
    )
    bootstrap: Literal["latest", "all"] = Field(
        default="latest",
        description="First tick: 'latest' starts from the newest record (load history with a "
        "backfill first); 'all' requests every day the tables hold.",
    )
    reconcile_days: int = Field(
        default=0,
        description="Days back (from yesterday) the reconciliation compares; 0: every day "
        "the lake holds (one lean read of each table, whatever the number of days).",
    )
    deletions: Literal["remove", "mark"] = Field(
        default="remove",
        description="'remove' rebuilds a day whose records NocoDB deleted; 'mark' keeps them "
        "and records the deleted ids as an observation for review.",
    )
