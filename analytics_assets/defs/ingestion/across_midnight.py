"""Conversations that go on past midnight: their day is built again once the next day's
messages are in.

A per-conversation asset of day D (conversations, categories, analytics, languages, and
what is built from them) reads the messages of D and D+1
(`partitions.messages_of_conversations_started_that_day`). When D is built, D+1 usually
does not exist yet: the daily schedule builds yesterday, the change sensor the days that
changed. So a conversation that starts at 23:50 would stay cut at midnight (its end,
message count, tokens, last turn, sentiment) and nothing would ever read D+1 for it.

This sensor watches what those assets read of D+1 (`conversation_messages` and
`message_signals`, found from the partition mappings). Once both are built for D+1, newer
than D's build and from D+1's newest messages, and D+1 holds messages of conversations that
started on D (or D was built with some, since deleted or moved), it requests D again: only
those assets and the daily assets built from them, not the day's pull and validation, which
did not change. Where D+1 was built again without a change to what D read of it (a re-pull,
an unrelated edit), D is left as it is: each of D's readers records a digest of what it
read of D+1 (`next_day_digest/<input>`), compared with what D+1 holds now. A range backfill
builds D in the same run as D+1, after it: nothing to do.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
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
from analytics_assets.defs.builds import days_being_built, latest_storage_id, materialization
from analytics_assets.defs.day_metadata import NEXT_DAY_DIGEST
from analytics_assets.defs.partitions import FIRST_DAY, TRIGGER_TAG
from analytics_assets.defs.storage.lake import LakeResource
from analytics_assets.transforms.records import carried_rows_digest

SENSOR_NAME = "conversations_across_midnight_sensor"
# Materializations read per tick; the rest wait for the next tick (the cursor says where).
_EVENTS_PER_TICK = 200
# How far back the first tick looks.
_FIRST_LOOK_BACK = timedelta(days=2)
# What the tick's log says of a day whose next day was built again without a change to it.
_UNCHANGED = "next day unchanged"


def _next_day_inputs(assets: Iterable[Any]) -> dict[AssetKey, set[AssetKey]]:
    """Per asset of day D that reads a later day of an upstream asset, those upstream
    assets (D+1's messages, D+1's message signals)."""
    readers: dict[AssetKey, set[AssetKey]] = {}
    for definition in assets:
        if not isinstance(definition, AssetsDefinition) or not definition.is_materializable:
            continue
        for key in definition.keys:
            for dep in definition.asset_deps[key]:
                mapping = definition.get_partition_mapping(dep)
                if isinstance(mapping, TimeWindowPartitionMapping) and mapping.end_offset > 0:
                    readers.setdefault(key, set()).add(dep)
    return readers


def rebuilt_keys(
    assets: Sequence[Any], readers: Iterable[AssetKey], daily_keys: Iterable[AssetKey]
) -> list[AssetKey]:
    """What a day is built again with: the assets that read the next day's messages
    (`readers`) and every daily asset built from them (the day's report, user analytics,
    the mirror…)."""
    readers = list(readers)
    if not readers:
        return []
    downstream = AssetSelection.assets(*readers).downstream().resolve(assets)
    return sorted(downstream & set(daily_keys), key=lambda key: key.to_user_string())


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


def conversations_past_midnight(lake, day: date) -> int:
    """How many of `day`'s conversations were built ending after it: built with messages of
    the next day, which may since have been deleted or moved to another conversation (its
    day was never built again, and kept counting them)."""
    conversations, _ = lake.read_days(tables.CONVERSATIONS, [day], ["ended_at"])
    if conversations is None or "ended_at" not in conversations.columns:
        return 0
    return conversations.filter(pl.col("ended_at").dt.date() > day).height


def _days_before_new_inputs(
    instance, inputs: list[AssetKey], after: int | None, since: float | None
) -> tuple[set[date], int | None]:
    """The days before the days of the inputs' materializations after `after` (and since
    `since`), and where the next tick starts."""
    candidates: set[date] = set()
    newest, bounded = after, None
    for key in inputs:
        page = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=key, after_storage_id=after, after_timestamp=since),
            limit=_EVENTS_PER_TICK,
            ascending=True,
        )
        for record in page.records:
            if record.partition_key:
                candidates.add(date.fromisoformat(record.partition_key) - timedelta(days=1))
        if page.records:
            last = page.records[-1].storage_id
            newest = max(newest or 0, last)
            if page.has_more:
                # What this asset has beyond `last` is read next tick.
                bounded = last if bounded is None else min(bounded, last)
    return candidates, bounded if bounded is not None else newest


def _built_without_next_day(
    instance, readers: list[AssetKey], inputs: list[AssetKey], day_before: date
) -> int | None:
    """Where D's readers were built before D+1's inputs, the newest of those inputs'
    storage ids (it names the run); None where D needs nothing."""
    built = [latest_storage_id(instance, key, day_before.isoformat()) for key in readers]
    built = [storage for storage in built if storage is not None]
    next_day = (day_before + timedelta(days=1)).isoformat()
    read = [latest_storage_id(instance, key, next_day) for key in inputs]
    # Never built: its first build reads both days anyway. Every input of D+1 must be newer
    # than D's build, and built from D+1's newest messages (as new as they are, or newer):
    # D+1's messages are in before its run has built the signals D reads too, and a D
    # rebuilt then would read them stale and stay so.
    if not built or None in read or min(read) < min(built):
        return None
    messages = AssetKey(tables.CONVERSATION_MESSAGES)
    if messages in inputs and min(read) < read[inputs.index(messages)]:
        return None
    return max(read)


def _next_day_read_unchanged(
    instance, lake, next_day: dict[AssetKey, set[AssetKey]], day_before: date
) -> bool:
    """Whether every reader of `day_before` recorded what it read of the next day
    (`add_next_day_digests`) and the next day holds the same for its conversations now: the
    next day was built again (a re-pull, an unrelated edit, its own across-midnight rebuild)
    without a change to them, and rebuilding `day_before` would write what it holds. A
    reader built before the digests existed says nothing, and the day is judged as before."""
    recorded: dict[AssetKey, set[str]] = {}
    for reader, inputs in next_day.items():
        record = materialization(instance, reader, day_before.isoformat())
        event = record.asset_materialization if record else None
        if event is None:
            return False
        for key in inputs:
            entry = event.metadata.get(f"{NEXT_DAY_DIGEST}/{key.to_user_string()}")
            if getattr(entry, "value", None) is None:
                return False
            recorded.setdefault(key, set()).add(entry.value)
    headers, _ = lake.read_days(
        tables.CONVERSATION_HEADERS, [day_before], ["conversation_id", "day"]
    )
    if not recorded or headers is None:
        return False
    for key, digests in recorded.items():
        rows, _ = lake.read_days(key.to_user_string(), [day_before + timedelta(days=1)])
        if rows is None or digests != {carried_rows_digest(rows, headers, day_before)}:
            return False
    return True


def _nothing_to_do(waiting: list[str], looked_at: dict[str, object]) -> str:
    if waiting:
        return f"Waiting for the runs writing {waiting}"
    unchanged = sorted(day for day, seen in looked_at.items() if seen == _UNCHANGED)
    if unchanged:
        return f"The next day of {unchanged} was built again without a change to what they read"
    return "No day holds messages of a conversation its day before was built without"


def across_midnight_sensor(
    job_name: str, assets: Sequence[Any], daily_keys: Iterable[AssetKey]
) -> SensorDefinition:
    next_day = _next_day_inputs(assets)
    readers = sorted(next_day, key=lambda key: key.to_user_string())
    inputs = sorted(set().union(*next_day.values()), key=lambda key: key.to_user_string())
    rebuilt = rebuilt_keys(assets, readers, daily_keys)

    @sensor(
        name=SENSOR_NAME,
        job_name=job_name,
        minimum_interval_seconds=300,
        # On by default: it requests nothing unless a day's conversations went on past
        # midnight after the day was built, and without it those stay cut at midnight.
        default_status=DefaultSensorStatus.RUNNING,
        description="Builds day D's per-conversation assets again once day D+1's messages "
        "and message signals are in and hold messages of conversations that started on D (a "
        "conversation that goes on past midnight), if D was built before them.",
    )
    def conversations_across_midnight(
        context: SensorEvaluationContext, lake: LakeResource
    ) -> SensorResult:
        # Until the sensor has seen a materialization: the two days before it was turned
        # on, not every day of the history at once (days built one at a time before then
        # want a backfill; a range run builds each day with the next).
        first_look = (datetime.now(UTC) - _FIRST_LOOK_BACK).timestamp()
        state = json.loads(context.cursor) if context.cursor else {"since": first_look}
        after, since = state.get("after_storage_id"), state.get("since")
        candidates, cursor = _days_before_new_inputs(
            context.instance, inputs, after, since if after is None else None
        )
        # A day another run is still writing waits: a range backfill over days built before
        # builds D+1's inputs before D's conversations, and a rebuild of D requested then
        # wrote D's slices at the same time as the backfill (two writers of one day), for
        # nothing: the backfill builds D with D+1 itself. It waits in the cursor, looked at
        # again each tick, while the cursor moves on (a run that never ends holds back its
        # own day only).
        candidates |= {date.fromisoformat(day) for day in state.get("deferred", [])}
        stored = lake.lake()
        requests, looked_at = [], {}
        busy = days_being_built(context.instance) if candidates else set()
        deferred = sorted(day for day in candidates if day in busy)
        for day_before in sorted(day for day in candidates if day >= FIRST_DAY and day not in busy):
            inputs_built = _built_without_next_day(context.instance, readers, inputs, day_before)
            if inputs_built is None:
                continue
            if _next_day_read_unchanged(context.instance, stored, next_day, day_before):
                looked_at[day_before.isoformat()] = _UNCHANGED
                continue
            # D+1 holds messages of D's conversations, or held some when D was built.
            carried = conversations_from_the_day_before(
                stored, day_before + timedelta(days=1)
            ) or conversations_past_midnight(stored, day_before)
            looked_at[day_before.isoformat()] = carried
            if carried:
                requests.append(
                    RunRequest(
                        run_key=f"across-midnight:{day_before.isoformat()}:{inputs_built}",
                        partition_key=day_before.isoformat(),
                        asset_selection=rebuilt,
                        tags={TRIGGER_TAG: SENSOR_NAME},
                    )
                )
        waiting = [day.isoformat() for day in deferred]
        if looked_at or deferred:
            context.log.info(
                json.dumps({"event": "across_midnight", "days": looked_at, "deferred": waiting})
            )
        next_state: dict = {"after_storage_id": cursor} if cursor is not None else {"since": since}
        if deferred:
            next_state["deferred"] = waiting
        return SensorResult(
            run_requests=requests,
            cursor=json.dumps(next_state),
            skip_reason=None if requests else _nothing_to_do(waiting, looked_at),
        )

    return conversations_across_midnight
