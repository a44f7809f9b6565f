"""`mongo_mirror`: the last step of a daily run, which waits for the MongoDB writes the run's
steps handed to the background thread (storage/deferred.py), writes again any that failed,
and reports the run's mirror figures, day by day.

The lake is the system of record and every step reads the lake, so no step needs MongoDB
to be written before it starts; apps and dashboards read MongoDB, so the run ends only once
it is. Where steps run in processes of their own (multiprocess, Celery, Kubernetes) each
step writes its own MongoDB slice in line and this step has nothing to wait for.
"""

# No `from __future__ import annotations`: Dagster reads the nested asset's context
# annotation as a type, not a string.
import time
from collections import defaultdict
from collections.abc import Iterable
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
from analytics_assets.defs.partitions import daily_partitions
from analytics_assets.storage.deferred import DEFERRED_WRITES, DeferredWrite
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


def _write_again(
    context: AssetExecutionContext, items: list[DeferredWrite]
) -> tuple[int, list[str]]:
    """Writes each failed item once more, in line (each write is idempotent: a slice
    replace); how many were written again, and the collections still failing."""
    again, failed = 0, []
    for item in items:
        if item.error is None:
            continue
        again += 1
        context.log.warning(
            f"The deferred write to {item.label} failed ({type(item.error).__name__}); "
            "writing it again."
        )
        started = time.perf_counter()
        try:
            item.result, item.error = item.write(), None
        except Exception as error:  # reported below: the step fails
            item.error = error
            failed.append(f"{item.label}: {type(error).__name__}")
        item.seconds += time.perf_counter() - started
    return again, failed


def _by_collection(items: list[DeferredWrite]) -> dict[str, dict[str, Any]]:
    figures: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"documents": 0, "seconds": 0.0, "rejected": 0, "retries": 0}
    )
    for item in items:
        figures_of = figures[item.label]
        result = item.result or {}
        figures_of["documents"] += int(result.get("mongo_documents_written") or 0)
        figures_of["rejected"] += int(result.get("mongo_documents_rejected") or 0)
        figures_of["retries"] += int(result.get("mongo_retries") or 0)
        figures_of["seconds"] = round(figures_of["seconds"] + item.seconds, 3)
    return dict(figures)


def mirror_definitions(assets: Iterable[Any]) -> Definitions:
    """The `mongo_mirror` asset after every mirrored daily asset among `assets`."""

    @asset(
        name=tables.MONGO_MIRROR,
        partitions_def=daily_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        deps=mirrored_daily_keys(assets),
        group_name="storage",
        kinds={"mongodb"},
        description="The run's MongoDB copies of the lake, complete: waits for the writes the "
        "run's steps left to the background, writes again any that failed, and reports "
        "documents and seconds per collection and day.",
    )
    def mongo_mirror(context: AssetExecutionContext) -> MaterializeResult:
        started = time.perf_counter()
        items = DEFERRED_WRITES.drain(context.run_id)
        waited = time.perf_counter() - started
        written_again, failed = _write_again(context, items)
        if failed:
            raise Failure(
                description=f"MongoDB writes failed twice ({'; '.join(failed)}); the lake is "
                "complete: run the days again to mirror them.",
                metadata={"failed": MetadataValue.json(failed)},
            )
        rows_by_day: dict[str, dict[str, int]] = defaultdict(dict)
        for item in items:
            for day, rows in item.rows_by_day.items():
                rows_by_day[day][item.label] = rows_by_day[day].get(item.label, 0) + rows
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
                "deferred_writes": len(items),
                "mongo_documents_written": documents,
                # Time MongoDB spent storing the run's documents, and how much of it the run
                # still waited for here; the rest overlapped the later steps.
                "mongo_write_seconds": round(write_seconds, 3),
                "waited_seconds": round(waited, 3),
                "overlapped_share": round(1 - waited / write_seconds, 4) if write_seconds else None,
                "mongo_documents_per_second": round(documents / write_seconds, 1)
                if write_seconds
                else None,
                "written_again": written_again,
                "by_collection": MetadataValue.json(collections),
            }
        )

    return Definitions(assets=[mongo_mirror])
