"""A daily-partitioned check's result recorded for each day its run covers.

Dagster plans a partitioned check once per partition of the run (one row per day in its
check-execution table), but an `AssetCheckResult` returned from a run over a range (a
single-run backfill) is recorded without a partition: the day rows stay "planned", and once
the run ends the checks list shows them as Skipped while the check's detail shows the result
as Passed. Yielding one `AssetCheckEvaluation` per partition instead records each day's
result on that day's row, with the day's materialization as its target.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetRecordsFilter,
    Output,
)

# Dagster exports no public name for an evaluation's target, and without one a day's result
# is never "current" (the checks list shows it only while it targets the day's latest
# materialization). AssetCheckResult's own conversion builds it the same way;
# test_day_metadata pins the behaviour, so a Dagster upgrade that moves it fails there.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (  # noqa: TID251
    AssetCheckEvaluationTargetMaterializationData,
)

ResultOfDay = Callable[[str], AssetCheckResult]
# What a check that records each day's result yields.
CheckEvents = Iterator[AssetCheckEvaluation | Output]


def evaluations_per_day(
    context: AssetCheckExecutionContext, result: AssetCheckResult | ResultOfDay
) -> CheckEvents:
    """One evaluation per partition of the run: `result` is either the verdict of the whole
    run (every day gets it) or a function giving a day's own verdict from its key."""
    (spec,) = context.check_specs
    for partition_key in context.partition_keys:
        day_result = result(partition_key) if callable(result) else result
        yield AssetCheckEvaluation(
            asset_key=spec.asset_key,
            check_name=spec.name,
            passed=day_result.passed,
            metadata=day_result.metadata,
            severity=day_result.severity,
            description=day_result.description,
            blocking=spec.blocking,
            partition=partition_key,
            target_materialization_data=_materialization_of(context, spec.asset_key, partition_key),
        )
    # The check's op output, which Dagster yields itself for an AssetCheckResult: steps that
    # wait on the check (it may be blocking) depend on it.
    yield Output(None)


def _materialization_of(
    context: AssetCheckExecutionContext, asset_key, partition_key: str
) -> AssetCheckEvaluationTargetMaterializationData | None:
    """The day's latest materialization, which the UI shows the check's result against."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition_key]), limit=1
    ).records
    if not records:
        return None
    latest = records[0]
    return AssetCheckEvaluationTargetMaterializationData(
        run_id=latest.event_log_entry.run_id,
        storage_id=latest.storage_id,
        timestamp=latest.timestamp,
    )
