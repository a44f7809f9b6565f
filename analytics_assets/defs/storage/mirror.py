"""`mongo_mirror`: the last step of a daily run, which waits for the MongoDB writes the run's
steps handed to the background thread (storage/deferred.py), writes again any that failed,
and reports the run's mirror figures, day by day.

The lake is the system of record and every step reads the lake, so no step needs MongoDB
to be written before it starts; apps and dashboards read MongoDB, so a run succeeds only
once it is. A run that fails before this step still waits for its writes at its end
(`finish_run`, from the resources' teardown), and its re-execution from failure copies from
the lake the slices of the steps it does not run again. Where steps run in processes of
their own (multiprocess, Celery, Kubernetes) each step writes its own MongoDB slice in line
and this step has nothing to wait for (its metadata says `mode: in line`).
"""

# No `from __future__ import annotations`: Dagster reads the nested asset's context
# annotation as a type, not a string.
import time
from collections import defaultdict
from collections.abc import Iterable
from datetime import date
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    BackfillPolicy,
    Definitions,
    Failure,
    MaterializeResult,
    MetadataValue,
    asset,
)

from analytics_assets import tables
from analytics_assets.defs.partitions import daily_partitions, days_in
from analytics_assets.defs.storage.io_managers import record_store_rejections, spec_of
from analytics_assets.defs.storage.lake import LakeResource
from analytics_assets.defs.storage.placement import code_location_mirrors
from analytics_assets.defs.storage.resources import MongoResource
from analytics_assets.storage.deferred import DEFERRED_WRITES, DeferredWrite, write_failed_again
from analytics_assets.storage.mongo import replace_frame
from analytics_assets.storage.placement import mirror_from_metadata


def mirrored_daily_keys(assets: Iterable[Any]) -> list[AssetKey]:
    """Every daily asset with a MongoDB mirror among `assets`."""
    keys = []
    for definition in assets:
        if not isinstance(definition, AssetsDefinition) or definition.partitions_def != (
            daily_partitions
        ):
            continue
        keys += [s.key for s in definition.specs if mirror_from_metadata(s.metadata)]
    return sorted(keys, key=lambda key: key.to_user_string())


def _rewrite_from_lake(
    lake: LakeResource, mongo: MongoResource, assets: list[str], days: list[date], run_id: str
) -> list[DeferredWrite]:
    """A re-execution (from failure) runs only some steps again; the parent run's MongoDB
    writes of the others may have failed with it. Their slices are copied from the lake,
    which they were written to first, for the run's days."""
    keys = [day.isoformat() for day in days]
    mirrors, written = code_location_mirrors(), []
    for asset_name in assets:
        mirror = mirrors[asset_name]
        frame, _ = lake.lake().read_days(asset_name, days)
        if frame is None:
            continue
        spec = spec_of(mirror)
        started = time.perf_counter()
        report = replace_frame(mongo.db()[spec.name], frame, keys, spec=spec, run_id=run_id)
        record_store_rejections(mongo.db(), spec, keys, report.rejected, frame)
        item = DeferredWrite(
            label=asset_name, collection=spec.name, days=tuple(keys), rows_by_day={},
            write=None, seconds=time.perf_counter() - started,
            result={"mongo_documents_written": report.written,
                    "mongo_documents_rejected": len(report.rejected)},
        )  # fmt: skip
        written.append(item)
    return written


def _by_collection(items: list[DeferredWrite]) -> dict[str, dict[str, Any]]:
    figures: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"documents": 0, "seconds": 0.0, "rejected": 0, "retries": 0}
    )
    for item in items:
        figures_of = figures[item.collection]
        result = item.result or {}
        figures_of["documents"] += int(result.get("mongo_documents_written") or 0)
        figures_of["rejected"] += int(result.get("mongo_documents_rejected") or 0)
        figures_of["retries"] += int(result.get("mongo_retries") or 0)
        figures_of["seconds"] = round(figures_of["seconds"] + item.seconds, 3)
    return dict(figures)


def mirror_definitions(assets: Iterable[Any]) -> Definitions:
    """The `mongo_mirror` asset after every mirrored daily asset among `assets`."""

    mirrored = mirrored_daily_keys(assets)

    @asset(
        name=tables.MONGO_MIRROR,
        partitions_def=daily_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        deps=mirrored,
        group_name="storage",
        kinds={"mongodb"},
        description="The run's MongoDB copies of the lake, complete: waits for the writes the "
        "run's steps left to the background, writes again any that failed, and reports "
        "documents and seconds per collection and day.",
    )
    def mongo_mirror(
        context: AssetExecutionContext, lake: LakeResource, mongo: MongoResource
    ) -> MaterializeResult:
        started = time.perf_counter()
        items = DEFERRED_WRITES.drain(context.run_id)
        waited = time.perf_counter() - started
        written_again, failed = write_failed_again(items, context.log.warning)
        if failed:
            raise Failure(
                description=f"MongoDB writes failed twice ({'; '.join(failed)}); the lake is "
                "complete: run the days again (or re-execute from failure) to copy them.",
                metadata={"failed": MetadataValue.json(failed)},
            )
        copied: list[DeferredWrite] = []
        if context.run.parent_run_id:
            not_run_here = [
                key.path[-1] for key in mirrored if key.path[-1] not in {i.label for i in items}
            ]
            days = days_in(context.partition_time_window)
            copied = _rewrite_from_lake(lake, mongo, not_run_here, days, context.run_id)
            items = items + copied
        rows_by_day: dict[str, dict[str, int]] = defaultdict(dict)
        for item in items:
            for day, rows in item.rows_by_day.items():
                by_collection = rows_by_day[day]
                by_collection[item.collection] = by_collection.get(item.collection, 0) + rows
        for key in context.partition_keys:
            documents = rows_by_day.get(key, {})
            context.add_asset_metadata(
                {
                    "documents": sum(documents.values()),
                    "documents_by_collection": MetadataValue.json(documents),
                },
                partition_key=key,
            )
        collections = _by_collection(items)
        documents = sum(figures["documents"] for figures in collections.values())
        write_seconds = sum(item.seconds for item in items)
        return MaterializeResult(
            metadata={
                # "deferred": the steps handed their writes here; "in line": each step of
                # the run wrote its own slice (a process per step) and reported it itself.
                "mode": "deferred" if items else "in line",
                "deferred_writes": len(items) - len(copied),
                "copied_from_lake_on_re_execution": MetadataValue.json(
                    sorted(item.label for item in copied)
                ),
                "mongo_documents_written": documents,
                # Time MongoDB spent storing the run's documents, and how much of it the run
                # still waited for here; the rest overlapped the later steps.
                "mongo_write_seconds": round(write_seconds, 3),
                "waited_seconds": round(waited, 3),
                "overlapped_share": round(max(0.0, 1 - waited / write_seconds), 4)
                if write_seconds
                else None,
                "mongo_documents_per_second": round(documents / write_seconds, 1)
                if write_seconds
                else None,
                "written_again": written_again,
                "by_collection": MetadataValue.json(collections),
            }
        )

    return Definitions(assets=[mongo_mirror])
