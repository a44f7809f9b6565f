"""Privacy checks: no raw PII of a redacted type in a text table, in the lake or in its
MongoDB collection; no raw user id where only pseudonyms belong; a warning where the
source's conversation or message ids hold personal data."""

from collections import Counter
from collections.abc import Callable
from datetime import date

import polars as pl
from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetChecksDefinition,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
)

from analytics_assets import tables
from analytics_assets.defs.check_evaluations import CheckEvents, evaluations_per_day
from analytics_assets.defs.partitions import daily_partitions, days_in
from analytics_assets.defs.privacy.resources import (
    TEXT_COLUMNS,
    PrivacyResource,
    searchable_texts,
)
from analytics_assets.defs.storage.lake import LakeResource
from analytics_assets.defs.storage.placement import code_location_mirrors
from analytics_assets.defs.storage.resources import MongoResource
from analytics_assets.privacy.pii import USER_PSEUDONYM_PATTERN, Finding, detect, detect_in_ids
from analytics_assets.storage.collections import DAY_FIELD

_EXAMPLES = 5
# Findings per text (`pii.detect`, or `pii.detect_in_ids` for ids).
Finder = Callable[[pl.Series, tuple[str, ...]], list[list[Finding]]]
_READ_BATCH = 5_000


def raw_pii_found(
    texts: pl.Series, kinds: tuple[str, ...], find: Finder = detect
) -> tuple[Counter, list[str]]:
    """Counts by type of PII still present in `texts`, and where (row numbers, never the
    values: the check's metadata must not become a copy)."""
    counts: Counter = Counter()
    rows: list[str] = []
    for row, findings in enumerate(find(texts, kinds)):
        for finding in findings:
            counts[finding.kind] += 1
        if findings and len(rows) < _EXAMPLES:
            rows.append(f"row {row}: {', '.join(f.kind for f in findings)}")
    return counts, rows


class _Tally:
    """Raw PII found over several scans, and the check's verdict on it."""

    def __init__(self) -> None:
        self.total: Counter = Counter()
        self.where: list[str] = []
        self.scanned = 0

    def scan(
        self, texts: pl.Series, kinds: tuple[str, ...], label: str, find: Finder = detect
    ) -> None:
        counts, rows = raw_pii_found(texts, kinds, find)
        self.scanned += texts.len()
        self.total += counts
        self.where += [f"{label} {row}" for row in rows]

    def verdict(
        self, severity: AssetCheckSeverity = AssetCheckSeverity.ERROR, **metadata
    ) -> AssetCheckResult:
        return AssetCheckResult(
            passed=not self.total,
            severity=severity,
            metadata={
                "texts_scanned": self.scanned,
                **metadata,
                "raw_pii_by_type": MetadataValue.json(dict(self.total)),
                "where": MetadataValue.json(self.where),
            },
        )


class _DayTallies:
    """A `_Tally` per day of the run: each day's verdict is its own rows'. Scanned together,
    one day's raw PII failed every day of a range backfill, and the row numbers counted
    through all of them, so nobody could tell which day to rebuild."""

    def __init__(self, days: list) -> None:
        self.days = {day: _Tally() for day in days}

    def scan(
        self,
        frame: pl.DataFrame,
        column: str,
        kinds: tuple[str, ...],
        label: str,
        find: Finder = detect,
    ) -> None:
        """`frame`: the day and the texts to scan of each row, in `column`."""
        for (day,), of_day in frame.group_by("day", maintain_order=True):
            if day in self.days:
                self.days[day].scan(of_day[column], kinds, label, find)

    def verdict_of(self, severity: AssetCheckSeverity = AssetCheckSeverity.ERROR, **metadata):
        def verdict(partition_key: str) -> AssetCheckResult:
            return self.days[date.fromisoformat(partition_key)].verdict(severity, **metadata)

        return verdict


def _mongo_texts(mongo: MongoResource, table: str, days: list, columns: tuple[str, ...]):
    mirror = code_location_mirrors().get(table)
    if mirror is None:
        return None
    projection = {column: True for column in columns}
    collection = mongo.db()[mirror.collection]
    # A query per day, not one `$in` of days: the embedded server searches its day index for
    # an equality but scans every document for `$in` (a daily run's check read the whole
    # history; a diagnostic timing on 60,000 messages: 0.75 s against 0.025 s for one day).
    # Batches of 5,000 instead of the driver's 101-document first batch and 16 MB after:
    # fewer round trips to the embedded server (this check in benchmarks/bench_backfill.py's
    # 60-day run, two runs back to back with the previous commit: 6.5 -> 5.3 s, 6.9 -> 5.8 s).
    documents = [
        {"day": day, **{c: document.get(c) for c in columns}}
        for day in days
        for document in collection.find(
            {DAY_FIELD: day.isoformat(), **mirror.slice_scope}, projection=projection
        ).batch_size(_READ_BATCH)
    ]
    return pl.DataFrame(documents, schema={"day": pl.Date(), **{c: pl.String() for c in columns}})


def _no_raw_pii_check(table: str) -> AssetChecksDefinition:
    columns = TEXT_COLUMNS[table]

    @asset_check(
        name="no_raw_pii",
        asset=table,
        partitions_def=daily_partitions,
        blocking=True,
        description=f"Scans {', '.join(columns)} in the lake for raw PII of a type the policy "
        f"redacts (its MongoDB copy: mongo_mirror's no_raw_pii_in_collections).",
    )
    def no_raw_pii(
        context: AssetCheckExecutionContext, privacy: PrivacyResource, lake: LakeResource
    ) -> CheckEvents:
        kinds = privacy.redacted_types(table)
        if not kinds:
            kept = AssetCheckResult(passed=True, metadata={"policy": "keep (restricted table)"})
            yield from evaluations_per_day(context, kept)
            return
        days = days_in(context.partition_time_window)
        stored, _ = lake.lake().read_days(table, days)
        tallies = _DayTallies(days)
        for column in columns if stored is not None else ():
            if column in stored.columns:
                texts = searchable_texts(table, column, stored[column])
                tallies.scan(stored.select("day").with_columns(texts.alias(column)), column,
                             kinds, f"lake.{column}")  # fmt: skip
        yield from evaluations_per_day(
            context, tallies.verdict_of(policy=privacy.policy_for(table))
        )

    return no_raw_pii


@asset_check(
    name="no_raw_pii_in_collections",
    asset=tables.MONGO_MIRROR,
    partitions_def=daily_partitions,
    # Blocking as the lake's checks are: raw PII in a served copy fails the run.
    blocking=True,
    description="Scans the MongoDB copies of the text tables (messages, translations, error "
    "records) for raw PII of a type the policy redacts, once the run's mirror is written: "
    "only texts that differ from the lake's (each table's no_raw_pii scans the lake's).",
)
def no_raw_pii_in_collections(
    context: AssetCheckExecutionContext,
    privacy: PrivacyResource,
    mongo: MongoResource,
    lake: LakeResource,
) -> CheckEvents:
    days = days_in(context.partition_time_window)
    tallies, skipped = _DayTallies(days), Counter()
    for table, columns in TEXT_COLUMNS.items():
        kinds = privacy.redacted_types(table)
        documents = _mongo_texts(mongo, table, days, columns) if kinds else None
        if documents is None:
            continue
        stored, _ = lake.lake().read_days(table, days)
        for column in columns:
            rows = documents.select("day", column)
            if stored is not None and column in stored.columns:
                # A document whose text equals the lake's has the same findings, and the
                # table's own check scanned the lake: only the texts that differ (none,
                # unless something wrote past the pipeline) are scanned here.
                differs = ~rows[column].is_in(stored[column].drop_nulls().implode())
                differs = differs.fill_null(False)
                skipped.update(rows.filter(~differs)["day"].to_list())
                rows = rows.filter(differs)
            texts = searchable_texts(table, column, rows[column])
            tallies.scan(rows.with_columns(texts.alias(column)), column, kinds,
                         f"{table}.{column}")  # fmt: skip

    def verdict(partition_key: str) -> AssetCheckResult:
        day = date.fromisoformat(partition_key)
        return tallies.days[day].verdict(mongo_texts_equal_to_scanned_lake_texts=skipped[day])

    yield from evaluations_per_day(context, verdict)


def _user_ids_pseudonymized_check(table: str) -> AssetChecksDefinition:
    @asset_check(
        name="user_ids_pseudonymized",
        asset=table,
        partitions_def=daily_partitions,
        blocking=True,
        description="Every user id is a keyed pseudonym, never the source's id.",
    )
    def user_ids_pseudonymized(
        context: AssetCheckExecutionContext, lake: LakeResource
    ) -> CheckEvents:
        days = days_in(context.partition_time_window)
        frame, _ = lake.lake().read_days(table, days, ["user_id"])
        ids = frame["user_id"].drop_nulls() if frame is not None else pl.Series([], dtype=str)
        raw = ids.filter(~ids.str.contains(USER_PSEUDONYM_PATTERN))
        verdict = AssetCheckResult(
            passed=raw.is_empty(),
            severity=AssetCheckSeverity.ERROR,
            metadata={"user_ids": ids.len(), "not_pseudonymized": raw.len()},
        )
        yield from evaluations_per_day(context, verdict)

    return user_ids_pseudonymized


# The id columns of the tables the source's ids enter by, and where every later table takes
# them from.
ID_COLUMNS = {
    tables.CONVERSATIONS: ("conversation_id",),
    tables.CONVERSATION_MESSAGES: ("conversation_id", "message_id"),
}


def _no_pii_in_ids_check(table: str) -> AssetChecksDefinition:
    columns = ID_COLUMNS[table]

    @asset_check(
        name="no_pii_in_ids",
        asset=table,
        partitions_def=daily_partitions,
        # A warning, not a blocking error: ids are kept as the source writes them (every
        # table joins back to NocoDB by them, and reconciliation compares them), so no run
        # can repair one; failing every run would stop the pipeline over the source's design.
        blocking=False,
        description=f"Scans {', '.join(columns)} in the lake for personal data (an email "
        "address used as a conversation id, say). Ids are stored, mirrored and served as the "
        "source writes them: a warning here means the source's ids must change.",
    )
    def no_pii_in_ids(
        context: AssetCheckExecutionContext, privacy: PrivacyResource, lake: LakeResource
    ) -> CheckEvents:
        days = days_in(context.partition_time_window)
        stored, _ = lake.lake().read_days(table, days, ["day", *columns])
        tallies = _DayTallies(days)
        for column in columns if stored is not None else ():
            # Every row, not each distinct id once: "row N" is then the day's row in the lake
            # (0.3 s for 100,000 ids).
            tallies.scan(stored, column, tuple(privacy.types), f"lake.{column}", detect_in_ids)
        yield from evaluations_per_day(context, tallies.verdict_of(AssetCheckSeverity.WARN))

    return no_pii_in_ids


privacy_checks = [
    *(_no_pii_in_ids_check(table) for table in ID_COLUMNS),
    *(_no_raw_pii_check(table) for table in TEXT_COLUMNS),
    no_raw_pii_in_collections,
    *(
        _user_ids_pseudonymized_check(table)
        for table in (
            tables.CONVERSATIONS,
            tables.CONVERSATION_ANALYTICS,
            tables.USER_ANALYTICS,
            tables.USER_RETURN_PREDICTIONS,
        )
    ),
]
