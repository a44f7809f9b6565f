"""Conversations that go on past midnight: their day is built again once the next day's
messages are in.

A per-conversation asset of day D (conversations, categories, analytics, languages, and
what is built from them) reads the messages of D and D+1
(`partitions.messages_of_conversations_started_that_day`). When D is built, D+1 usually
does not exist yet: the daily schedule builds yesterday, the change sensor the days that
changed. So a conversation that starts at 23:50 would stay cut at midnight (its end,
message count, tokens, last turn, sentiment) and nothing would ever read D+1 for it.

This sensor watches `conversation_messages`. For each day X materialized, when X holds
messages of conversations that started on X-1, and X-1's per-conversation assets were
last built before those messages were, it requests X-1 again, only those assets and what
is built from them (not the day's pull and validation, which did not change). A range
backfill builds X-1 in the same run as X, after it: nothing to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import date, timedelta
from typing import Any

import polars as pl
from dagster import (
    AssetKey,
    AssetRecordsFilter,
    AssetsDefinition,
    AssetSelection,
    DefaultSensorStatus,
    RunRequest,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    TimeWindowPartitionMapping,
    sensor,
)

from analytics_assets import tables
from analytics_assets.defs.partitions import FIRST_DAY
from analytics_assets.defs.storage.lake import LakeResource

SENSOR_NAME = "conversations_across_midnight_sensor"
TRIGGER_TAG = "analytics/trigger"
# Materializations read per tick; the rest wait for the next tick (the cursor says where).
_EVENTS_PER_TICK = 200


def reads_the_next_day(assets: Iterable[Any]) -> list[AssetKey]:
    """The assets of day D that read a later day of an upstream asset (D+1's messages)."""
    keys = []
    for definition in assets:
        if not isinstance(definition, AssetsDefinition) or not definition.is_materializable:
            continue
        for key in definition.keys:
            mappings = [definition.get_partition_mapping(dep) for dep in definition.asset_deps[key]]
            if any(
                isinstance(m, TimeWindowPartitionMapping) and m.end_offset > 0 for m in mappings
            ):
                keys.append(key)
    return sorted(keys, key=lambda key: key.to_user_string())


def rebuilt_keys(assets: Sequence[Any], daily_keys: Iterable[AssetKey]) -> list[AssetKey]:
    """What a day is built again with: the assets that read the next day's messages and
    every daily asset built from them (the day's report, user analytics, the mirror…)."""
    starts = reads_the_next_day(assets)
    if not starts:
        return []
    downstream = AssetSelection.assets(*starts).downstream().resolve(assets)
    daily = set(daily_keys)
    return sorted(downstream & daily, key=lambda key: key.to_user_string())


def conversations_from_the_day_before(lake, day: date) -> int:
    """How many conversations that started the day before `day` have messages on `day`."""
    messages, _ = lake.read_days(tables.CONVERSATION_MESSAGES, [day], ["conversation_id"])
    started, _ = lake.read_days(
        tables.CONVERSATION_HEADERS, [day - timedelta(days=1)], ["conversation_id"]
    )
    if messages is None or started is None:
        return 0
    carried = messages.select(pl.col("conversation_id").unique()).join(
        started.select(pl.col("conversation_id").unique()), on="conversation_id", how="semi"
    )
    return carried.height


def _latest_storage_id(instance, key: AssetKey, partition: str) -> int | None:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=key, asset_partitions=[partition]), limit=1
    ).records
    return records[0].storage_id if records else None


def across_midnight_sensor(
    job_name: str, assets: Sequence[Any], daily_keys: Iterable[AssetKey]
) -> SensorDefinition:
    rebuilt = rebuilt_keys(assets, daily_keys)
    readers = reads_the_next_day(assets)

    @sensor(
        name=SENSOR_NAME,
        job_name=job_name,
        minimum_interval_seconds=300,
        # On by default: it requests nothing unless a day's conversations went on past
        # midnight after the day was built, and without it those stay cut at midnight.
        default_status=DefaultSensorStatus.RUNNING,
        description="Builds day D's per-conversation assets again once day D+1's messages "
        "are in and hold messages of conversations that started on D (a conversation that "
        "goes on past midnight), if D was built before them.",
    )
    def conversations_across_midnight(
        context: SensorEvaluationContext, lake: LakeResource
    ) -> SensorResult:
        after = json.loads(context.cursor)["after_storage_id"] if context.cursor else None
        page = context.instance.fetch_materializations(
            AssetRecordsFilter(
                asset_key=AssetKey(tables.CONVERSATION_MESSAGES), after_storage_id=after
            ),
            limit=_EVENTS_PER_TICK,
            ascending=True,
        )
        # Per day before, the newest materialization of its next day.
        newest: dict[date, int] = {}
        for record in page.records:
            if not record.partition_key:
                continue
            day_before = date.fromisoformat(record.partition_key) - timedelta(days=1)
            if day_before >= FIRST_DAY:
                newest[day_before] = max(newest.get(day_before, 0), record.storage_id)
        stored = lake.lake()
        requests, looked_at = [], {}
        for day_before, storage_id in sorted(newest.items()):
            built = [
                storage
                for key in readers
                if (storage := _latest_storage_id(context.instance, key, day_before.isoformat()))
                is not None
            ]
            # Never built: its first build reads both days anyway. Built after these messages
            # (in the same range run, or rebuilt since): it has them already.
            if not built or min(built) > storage_id:
                continue
            carried = conversations_from_the_day_before(stored, day_before + timedelta(days=1))
            looked_at[day_before.isoformat()] = carried
            if carried:
                requests.append(
                    RunRequest(
                        run_key=f"across-midnight:{day_before.isoformat()}:{storage_id}",
                        partition_key=day_before.isoformat(),
                        asset_selection=rebuilt,
                        tags={TRIGGER_TAG: SENSOR_NAME},
                    )
                )
        last = page.records[-1].storage_id if page.records else after
        if looked_at:
            context.log.info(json.dumps({"event": "across_midnight", "days": looked_at}))
        return SensorResult(
            run_requests=requests,
            cursor=json.dumps({"after_storage_id": last}),
            skip_reason=None
            if requests
            else "No day holds messages of a conversation its day before was built without",
        )

    return conversations_across_midnight
