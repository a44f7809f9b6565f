"""Blocking key checks: a duplicate or missing key would poison every downstream count."""

import polars as pl
from dagster import AssetCheckResult, AssetCheckSeverity, asset_check

from analytics_assets import tables
from analytics_assets.defs.partitions import daily_partitions


def _key_check(frame: pl.DataFrame, key: str) -> AssetCheckResult:
    missing = frame.filter(pl.col(key).is_null()).height
    duplicates = frame.height - frame.select(pl.col(key).n_unique()).item()
    return AssetCheckResult(
        passed=missing == 0 and duplicates == 0,
        severity=AssetCheckSeverity.ERROR,
        metadata={"rows": frame.height, "missing_keys": missing, "duplicate_keys": duplicates},
    )


@asset_check(asset=tables.CONVERSATION_MESSAGES, blocking=True, partitions_def=daily_partitions)
def message_ids_unique_and_present(conversation_messages: pl.DataFrame) -> AssetCheckResult:
    return _key_check(conversation_messages, "message_id")


@asset_check(asset=tables.CONVERSATIONS, blocking=True, partitions_def=daily_partitions)
def conversation_ids_unique_and_present(conversations: pl.DataFrame) -> AssetCheckResult:
    return _key_check(conversations, "conversation_id")
