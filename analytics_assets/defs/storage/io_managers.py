"""The MongoDB IO manager (ours: there is no dagster-mongo) and the lake + MongoDB mirror."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import polars as pl
from dagster import (
    ConfigurableIOManager,
    DagsterInvariantViolationError,
    InitResourceContext,
    InputContext,
    IOManager,
    MetadataValue,
    OutputContext,
)
from pydantic import Field
from pymongo import UpdateOne

from analytics_assets import tables
from analytics_assets.defs.storage.lake import ParquetLakeIOManager, PolarsParquetLake
from analytics_assets.defs.storage.resources import MongoResource
from analytics_assets.storage.collections import COLLECTIONS, DAY_FIELD, CollectionSpec
from analytics_assets.storage.deferred import DEFERRED_WRITES, finish_run
from analytics_assets.storage.mongo import (
    RejectedDocument,
    WriteReport,
    day_keys,
    load_days,
    refile_documents,
    replace_frame,
)
from analytics_assets.storage.placement import MongoMirror, mirror_from_metadata
from analytics_assets.storage.refile import keys_leaving, neighbour_rows

ERRORS_COLLECTION = "processing_errors"
# The step that waits for a run's deferred MongoDB writes (defs/storage/mirror.py).
MIRROR_STEP = tables.MONGO_MIRROR
# Executors that run every step of a run in the run's own process.
IN_PROCESS_EXECUTORS = frozenset({"in_process", "execute_in_process_executor"})


def _collection_spec(context: InputContext | OutputContext) -> CollectionSpec:
    """The collection the asset's own definition names (`lake_and_mongo(...)`)."""
    output = context.upstream_output if isinstance(context, InputContext) else context
    mirror = mirror_from_metadata(output.definition_metadata or {}) if output else None
    if mirror is None:
        raise KeyError(
            f"Asset {context.asset_key.to_user_string()!r} names no MongoDB collection: spread "
            "`lake_and_mongo(collection)` into its decorator."
        )
    return spec_of(mirror)


def spec_of(mirror: MongoMirror) -> CollectionSpec:
    """The collection spec of a mirror, narrowed to its slice where it shares a collection."""
    spec = COLLECTIONS[mirror.collection]
    return dataclasses.replace(spec, slice_scope=mirror.slice_scope) if mirror.slice_scope else spec


def _days(context: InputContext | OutputContext) -> list[str] | None:
    return day_keys(context.asset_partition_keys) if context.has_asset_partitions else None


def record_store_rejections(
    db,
    spec: CollectionSpec,
    days: list[str] | None,
    rejected: list[RejectedDocument],
    frame: pl.DataFrame,
) -> None:
    """A document the collection refused becomes an error document (stage `store`), never a
    silent loss; an earlier refusal of a document this write (`frame`) stored goes (it stayed
    after the document was accepted, and MongoDB's error count drifted from the lake's).
    Only this slice's documents: a collection split in slices (reports by kind, errors by
    stage) keeps the other slices' refusals."""
    errors = COLLECTIONS[ERRORS_COLLECTION]
    earlier: dict[str, Any] = {"stage": "store", "table": spec.name}
    if days is not None:
        earlier[DAY_FIELD] = {"$in": list(days)}
    refused_before = {
        document["record_key"]: document["_id"]
        for document in db[ERRORS_COLLECTION].find(earlier, projection={"record_key": True})
    }
    if refused_before:
        # Rare (a refusal is), so the write's document ids are made only then.
        keys = frame.select(spec.id_fields).with_columns(pl.col(pl.Date).dt.to_string("%Y-%m-%d"))
        stored = {spec.document_id(row) for row in keys.to_dicts()} - {
            str(item.document_id) for item in rejected
        }
        resolved = [refused_before[key] for key in refused_before.keys() & stored]
        if resolved:
            db[ERRORS_COLLECTION].delete_many({"_id": {"$in": resolved}})
    if not rejected:
        return
    documents = [
        {
            DAY_FIELD: item.day or datetime.now(UTC).date().isoformat(),
            "table": spec.name,
            "stage": "store",
            "record_key": str(item.document_id),
            "conversation_id": item.conversation_id,
            "reason": item.reason,
        }
        for item in rejected
    ]
    db[ERRORS_COLLECTION].bulk_write(
        [
            UpdateOne({"_id": errors.document_id(document)}, {"$set": document}, upsert=True)
            for document in documents
        ],
        ordered=False,
    )


class MongoWriter:
    """Writes an output's partition slice to its collection; shared by both IO managers."""

    def __init__(self, mongo: MongoResource, batch_size: int):
        self.mongo = mongo
        self.batch_size = batch_size

    def write(self, context: OutputContext, frame: pl.DataFrame) -> dict[str, Any]:
        return self.writer_of(context)(frame)

    def writer_of(self, context: OutputContext) -> Callable[[pl.DataFrame], dict[str, Any]]:
        """The write of this output's slice, with everything it needs from `context` read
        now: it may run on another thread after the step has ended."""
        spec, days, run_id = _collection_spec(context), _days(context), context.run_id

        def write(frame: pl.DataFrame) -> dict[str, Any]:
            db = self.mongo.db()
            report = replace_frame(
                db[spec.name], frame, days, spec=spec, run_id=run_id, batch_size=self.batch_size
            )
            record_store_rejections(db, spec, days, report.rejected, frame)
            return self._metadata(spec, report)

        return write

    def refile(self, spec: CollectionSpec, days: list[str], rows: pl.DataFrame, run_id: str) -> int:
        """Files `rows`' documents under their own (neighbouring) day where they are still
        filed under one of `days` (`storage/refile.py`)."""
        return refile_documents(self.mongo.db()[spec.name], rows, days, spec=spec, run_id=run_id)

    @staticmethod
    def _metadata(spec: CollectionSpec, report: WriteReport) -> dict[str, Any]:
        rate = report.written / report.seconds if report.seconds else None
        metadata: dict[str, Any] = {
            "mongo_collection": spec.name,
            "mongo_documents_written": report.written,
            "mongo_stale_documents_deleted": report.deleted,
            "mongo_documents_rejected": len(report.rejected),
            "mongo_retries": report.retries,
            "mongo_write_seconds": round(report.seconds, 3),
            "mongo_documents_per_second": round(rate, 1) if rate else None,
        }
        if report.rejected:
            metadata["mongo_rejections"] = MetadataValue.json(
                [item.__dict__ for item in report.rejected[:20]]
            )
        return metadata

    def load(self, context: InputContext) -> pl.DataFrame:
        spec = _collection_spec(context)
        return load_days(self.mongo.db()[spec.name], _days(context), spec)


class MongoIOManager(ConfigurableIOManager):
    """Stores an asset in its MongoDB collection, partition by partition like DbIOManager:
    writing day D (or a range) replaces exactly that slice; loading returns a polars frame
    of one day, a range, or the whole collection."""

    mongo: MongoResource
    batch_size: int = Field(default=1000, description="Documents per bulk write.")

    def handle_output(self, context: OutputContext, obj: pl.DataFrame) -> None:
        context.add_output_metadata(MongoWriter(self.mongo, self.batch_size).write(context, obj))

    def load_input(self, context: InputContext) -> pl.DataFrame:
        return MongoWriter(self.mongo, self.batch_size).load(context)


def _defers_to_the_mirror_step(context: OutputContext) -> bool:
    """Whether this run's `mongo_mirror` step will wait for a write handed to the process's
    background thread: only when every step of the run shares this process."""
    try:
        step_context = context.step_context
    except DagsterInvariantViolationError:  # an OutputContext built outside a run
        return False
    return (
        step_context.job_def.executor_def.name in IN_PROCESS_EXECUTORS
        and MIRROR_STEP in step_context.execution_plan.step_keys_to_execute
    )


class _Mirror(IOManager):
    def __init__(self, lake: IOManager, writer: MongoWriter):
        self.lake = lake
        self.writer = writer

    def handle_output(self, context: OutputContext, obj: pl.DataFrame) -> None:
        lake, table = self.lake.lake, context.asset_key.path[-1]
        # Read now: the write may run on another thread after the step has ended.
        spec, days, run_id = _collection_spec(context), _days(context), context.run_id
        # Read before the lake is written: the keys these days held until now.
        leaving = keys_leaving(lake, table, spec, days, obj)
        # The lake first: it is the system of record that downstream assets read.
        self.lake.handle_output(context, obj)
        write_slice = self.writer.writer_of(context)

        def write() -> dict[str, Any]:
            refiled = 0
            if leaving is not None:
                # Records that left these days but that the day before or after holds are
                # filed under that day first, so the slice's stale delete does not remove
                # them; read from the lake as it is now, at the write (refile.py).
                rows = neighbour_rows(lake, table, spec, days, leaving)
                if rows is not None:
                    refiled = self.writer.refile(spec, days, rows, run_id)
            metadata = write_slice(obj)
            if refiled:
                metadata["mongo_documents_refiled_to_a_neighbouring_day"] = refiled
            return metadata

        if not _defers_to_the_mirror_step(context):
            context.add_output_metadata(write())
            return
        # The next steps go on while MongoDB stores this one; the run's mongo_mirror step
        # waits for it, retries it if it failed, and reports its figures.
        rows_by_day = {}
        if DAY_FIELD in obj.columns:
            counts = obj.group_by(DAY_FIELD).len()
            rows_by_day = dict(counts.select(pl.col(DAY_FIELD).cast(pl.String), "len").iter_rows())
        DEFERRED_WRITES.submit(
            run_id, table, write, collection=spec.name, days=tuple(days or ()),
            rows_by_day=rows_by_day,
        )  # fmt: skip
        context.add_output_metadata({"mongo_mirror": "written by the run's mongo_mirror step"})

    def load_input(self, context: InputContext) -> pl.DataFrame:
        return self.lake.load_input(context)


class LakeAndMongoIOManager(ParquetLakeIOManager):
    """The Parquet lake plus a MongoDB mirror for the assets apps and dashboards read."""

    mongo: MongoResource
    batch_size: int = Field(default=1000, description="Documents per bulk write.")

    def create_io_manager(self, context: Any) -> IOManager:
        return _Mirror(PolarsParquetLake(self.lake()), MongoWriter(self.mongo, self.batch_size))

    def teardown_after_execution(self, context: InitResourceContext) -> None:
        # Where the run's mongo_mirror step did not run (a step before it failed, the run
        # was stopped), its queued writes finish here, before the run ends and gives its days
        # back; a re-execution's mongo_mirror rewrites from the lake what is still missing.
        if context.run_id:
            for failed in finish_run(context.run_id, context.log.warning):
                context.log.error(f"MongoDB copy not written: {failed}")
