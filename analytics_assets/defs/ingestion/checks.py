"""Blocking key checks: a duplicate or missing key would poison every downstream count."""

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    asset_check,
)

from analytics_assets import tables
from analytics_assets.defs.check_evaluations import CheckEvents, evaluations_per_day
from analytics_assets.defs.partitions import daily_partitions


def _key_check(frame: pl.DataFrame, key: str) -> AssetCheckResult:
    missing = frame.filter(pl.col(key).is_null()).height
    duplicates = frame.height - frame.select(pl.col(key).n_unique()).item()
    return AssetCheckResult(
        passed=missing == 0 and duplicates == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={"rows": frame.height, "missing_keys": missing, "duplicate_keys": duplicates},
    )


# Keys are checked across the whole run (a duplicate may span two days); each day of the run
# records that verdict.
@asset_check(asset=tables.CONVERSATION_MESSAGES, blocking=True, partitions_def=daily_partitions)
def message_ids_unique_and_present(
    context: AssetCheckExecutionContext, conversation_messages: pl.DataFrame
) -> CheckEvents:
    yield from evaluations_per_day(context, _key_check(conversation_messages, "message_id"))


@asset_check(asset=tables.CONVERSATIONS, blocking=True, partitions_def=daily_partitions)
def conversation_ids_unique_and_present(
    context: AssetCheckExecutionContext, conversations: pl.DataFrame
) -> CheckEvents:
    yield from evaluations_per_day(context, _key_check(conversations, "conversation_id"))
