"""The MongoDB refile (storage/refile.py): a record the lake still holds on the day before
or after is filed under that day when a rewrite drops it, and nothing else is written:
not a neighbour's day list, not an erased record, not an older copy of a rebuilt day.
Written by a review of its first version, each test failing on it."""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
from dagster import asset, materialize

from analytics_assets.defs.partitions import daily_partitions
from analytics_assets.defs.storage import io_managers
from analytics_assets.defs.storage.io_managers import LakeAndMongoIOManager
from analytics_assets.storage.day_index import DAY_INDEX_COLLECTION, DayList
from analytics_assets.storage.lake import Lake
from analytics_assets.storage.placement import mirror_metadata
from analytics_assets_tests.test_mongo_storage import messages

D1, D2 = date(2026, 11, 1), date(2026, 11, 2)


def _builder(name, held, tmp_path, mongo):
    @asset(partitions_def=daily_partitions, name=name, metadata=mirror_metadata(name))
    def the_asset(context) -> pl.DataFrame:
        return held[date.fromisoformat(context.partition_key)]

    io_manager = LakeAndMongoIOManager(base_url=str(tmp_path), mongo=mongo)

    def build(day: date):
        result = materialize([the_asset], resources={"io_manager": io_manager},
                             partition_key=day.isoformat(), raise_on_error=False)  # fmt: skip
        assert result.success
        return result

    return build


def _conversations(day: date, ids: list[str], *, started: date | None = None) -> pl.DataFrame:
    started = started or day
    return pl.DataFrame(
        {
            "conversation_id": ids,
            "user_id": [f"u-{c}" for c in ids],
            "started_at": [
                datetime(started.year, started.month, started.day, 9, n, tzinfo=UTC)
                for n in range(len(ids))
            ],
            "turns": [1] * len(ids),
            "message_count": [2] * len(ids),
            "prompt_tokens": [1] * len(ids),
            "completion_tokens": [1] * len(ids),
            "total_tokens": [2] * len(ids),
            "topic": ["billing"] * len(ids),
            "day": [day] * len(ids),
        }
    )


def test_a_refiled_conversation_replaces_the_neighbours_whole_day_list(mongo, tmp_path):
    """conversation_analytics keeps a day list (storage/day_index.py) that pages of a day
    walk. The refiled document of D2 went through `write_day_index` with the write of D1,
    which set D2's list to the refiled key alone: D2's other conversations vanished from its
    pages."""
    db = mongo.db()
    held = {
        D1: _conversations(D1, ["c-a", "c-x"]),
        D2: _conversations(D2, ["c-x", "c-b", "c-c"]),
    }
    build = _builder("conversation_analytics", held, tmp_path, mongo)
    build(D1)
    build(D2)  # c-x filed under D2, D2's list: c-x, c-b, c-c
    listed = DayList.of_document(db[DAY_INDEX_COLLECTION].find_one(
        {"_id": f"conversation_analytics:{D2}"}))  # fmt: skip
    assert sorted(key[1] for key in listed.keys) == ["c-b", "c-c", "c-x"]
    held[D1] = _conversations(D1, ["c-a"])  # the source dropped D1's copy of c-x
    build(D1)
    assert db["conversation_analytics"].find_one({"_id": "c-x"})["day"] == D2.isoformat()
    listed = DayList.of_document(db[DAY_INDEX_COLLECTION].find_one(
        {"_id": f"conversation_analytics:{D2}"}))  # fmt: skip
    assert sorted(key[1] for key in listed.keys) == ["c-b", "c-c", "c-x"]


def test_a_refile_writes_a_neighbour_row_read_before_an_erasure_back(mongo, tmp_path,
                                                                     monkeypatch):  # fmt: skip
    """The run holds the lease of D2 only; an erasure that found the user on D1 alone (D2's
    new file no longer holds them) holds D1, erases MongoDB and D1's lake file, and
    finishes, between this run's lake write and its MongoDB write. A neighbour row read
    before the lake write was written back: the erased message was in MongoDB and on no
    day of the lake."""
    db = mongo.db()
    day_one = messages(D1, 3)
    erased = day_one.row(0, named=True)
    held = {D1: day_one, D2: day_one.head(1).with_columns(pl.lit(D2).alias("day"))}
    build = _builder("conversation_messages", held, tmp_path, mongo)
    build(D1)
    build(D2)
    lake = Lake.at(str(tmp_path))
    original = io_managers.neighbour_rows

    def erasure_between(*args):
        # What Eraser._erase_mongo and _erase_lake do for the conversation of `erased`,
        # after this run wrote its lake day and before it writes MongoDB (a deferred write
        # waits for the run's mongo_mirror step).
        db["conversation_messages"].delete_many({"conversation_id": erased["conversation_id"]})
        kept = lake.read_days("conversation_messages", [D1])[0].filter(
            pl.col("conversation_id") != erased["conversation_id"])  # fmt: skip
        lake.write_day("conversation_messages", D1, kept)
        return original(*args)

    monkeypatch.setattr(io_managers, "neighbour_rows", erasure_between)
    held[D2] = held[D2].clear()  # the source dropped D2's copy
    build(D2)
    in_lake = pl.concat([lake.read_days("conversation_messages", [d])[0] for d in (D1, D2)])
    assert erased["message_id"] not in in_lake["message_id"].to_list()
    assert db["conversation_messages"].count_documents(
        {"conversation_id": erased["conversation_id"]}) == 0  # fmt: skip


def test_a_neighbour_rebuilt_meanwhile_gets_its_old_row_back(mongo, tmp_path, monkeypatch):
    """Same window, another run rebuilding D1 (its own lease) with the message edited: the
    run of D2 wrote D1's old row over it, and MongoDB held v1 while the lake held v2."""
    db = mongo.db()
    held = {D1: messages(D1, 3), D2: messages(D1, 1).with_columns(pl.lit(D2).alias("day"))}
    build = _builder("conversation_messages", held, tmp_path, mongo)
    build(D1)
    build(D2)
    original = io_managers.neighbour_rows
    edited = messages(D1, 3, version=2)
    other_run = {"done": False}

    def rebuild_d1_between(*args):
        if not other_run["done"]:
            other_run["done"] = True
            held[D1] = edited
            build(D1)  # another run's rebuild of D1, after our lake write, before our MongoDB's
        return original(*args)

    monkeypatch.setattr(io_managers, "neighbour_rows", rebuild_d1_between)
    held[D2] = held[D2].clear()
    build(D2)
    stored = db["conversation_messages"].find_one({"message_id": f"m-{D1}-0"})
    assert stored["content"] == "v2 text 0"  # what the lake holds


def test_an_older_day_whose_key_column_has_another_type_is_written_again(mongo, tmp_path):
    """A day written with a key column of another type (an all-null column stored as Null,
    which lake files hold) made the comparison of keys raise before the lake was written, on
    every retry: the day could never be rebuilt."""
    lake = Lake.at(str(tmp_path))
    old = messages(D1, 3).with_columns(pl.lit(None).alias("conversation_id"))
    assert old.schema["conversation_id"] == pl.Null
    lake.write_day("conversation_messages", D1, old)
    build = _builder("conversation_messages", {D1: messages(D1, 3)}, tmp_path, mongo)
    build(D1)
