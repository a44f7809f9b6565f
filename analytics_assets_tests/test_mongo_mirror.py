"""The MongoDB mirror behind the steps: in a run whose steps share a process, each mirrored
asset hands its write to a background thread and the run's `mongo_mirror` step waits for
them, writes again what failed, and reports the figures; elsewhere each step writes in line.
Against the real loopback server (nx-27017)."""

from __future__ import annotations

import threading

from dagster import AssetKey, DagsterInstance

from analytics_assets.defs.storage import io_managers
from analytics_assets.storage.deferred import DeferredWrites
from analytics_assets_tests.conftest import range_tags, sample_definitions

DAYS = ("2026-11-01", "2026-11-02")
MIRRORED = (
    "conversation_messages",
    "conversation_categories",
    "conversation_analytics",
    "user_analytics",
)


def _collection_days(db, collection: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for document in db[collection].find({}, {"day": True}):
        counts[document["day"]] = counts.get(document["day"], 0) + 1
    return counts


def test_deferred_writes_keep_their_order_and_hand_over_failures():
    writes = DeferredWrites()
    done: list[str] = []
    release = threading.Event()

    def write(label: str, fail: bool = False):
        def run():
            release.wait(5)
            if fail:
                raise ConnectionError("server went away")
            done.append(label)
            return {"mongo_documents_written": 1}

        return run

    writes.submit("run-a", "first", write("first"), rows_by_day={"2026-11-01": 3})
    writes.submit("run-b", "other run", write("other run"))
    writes.submit("run-a", "second", write("second", fail=True))
    writes.submit("run-a", "third", write("third"), rows_by_day={"2026-11-01": 1, "2026-11-02": 2})
    # Submitting returned at once: nothing ran yet, the caller went on.
    assert done == [] and writes.pending("run-a") == 3
    release.set()
    items = writes.drain("run-a")
    assert [item.label for item in items] == ["first", "second", "third"]
    assert done[:1] == ["first"] and "third" in done
    assert items[0].result == {"mongo_documents_written": 1} and items[0].write is None
    # The failed write keeps its callable, so that it can be written again.
    assert isinstance(items[1].error, ConnectionError) and items[1].write is not None
    assert items[2].rows == 3
    assert writes.drain("run-a") == []  # forgotten once handed over
    assert [item.label for item in writes.drain("run-b")] == ["other run"]


def test_a_run_in_one_process_mirrors_behind_its_steps(tmp_path, mongo_server):
    defs, _lake, mongo = sample_definitions(tmp_path, mongo_server, "mirror_deferred")
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(), tags=range_tags(*DAYS)
    )
    assert result.success
    for asset in MIRRORED:
        materialization = next(
            event.event_specific_data.materialization
            for event in result.all_events
            if event.event_type_value == "ASSET_MATERIALIZATION"
            and event.event_specific_data.materialization.asset_key == AssetKey(asset)
        )
        assert "mongo_mirror" in materialization.metadata, asset
        assert "mongo_documents_written" not in materialization.metadata, asset
    mirrored = result.asset_materializations_for_node("mongo_mirror")
    run_figures = next(m.metadata for m in mirrored if "deferred_writes" in m.metadata)
    by_collection = run_figures["by_collection"].data
    db = mongo.db()
    # What the step reports is what MongoDB holds, collection by collection.
    for collection in ("conversation_messages", "conversation_categories", "user_analytics"):
        assert by_collection[collection]["documents"] == db[collection].count_documents({})
    assert run_figures["written_again"].value == 0
    assert 0 <= run_figures["waited_seconds"].value <= run_figures["mongo_write_seconds"].value
    # Each day reports its own documents, which add up to the run's.
    per_day = {m.partition: m.metadata["documents"].value for m in mirrored}
    assert set(per_day) == set(DAYS)
    messages_by_day = _collection_days(db, "conversation_messages")
    for day in DAYS:
        day_figures = next(m for m in mirrored if m.partition == day).metadata
        assert (
            day_figures["documents_by_collection"].data["conversation_messages"]
            == (messages_by_day[day])
        )


def test_a_failed_background_write_is_written_again_by_the_mirror_step(
    tmp_path, mongo_server, monkeypatch
):
    """A fault injected in front of the real server: the first background write of
    conversation_messages raises; the mirror step writes it again, and nothing is missing."""
    real = io_managers.replace_frame
    failed: list[str] = []

    def flaky(collection, *args, **kwargs):
        if collection.name == "conversation_messages" and not failed:
            failed.append(threading.current_thread().name)
            raise ConnectionError("injected: connection reset")
        return real(collection, *args, **kwargs)

    monkeypatch.setattr(io_managers, "replace_frame", flaky)
    defs, lake, mongo = sample_definitions(tmp_path, mongo_server, "mirror_written_again")
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(), tags=range_tags(*DAYS)
    )
    assert result.success
    # It failed on the background thread, not in the step that produced the frame.
    assert failed and failed[0].startswith("deferred-write")
    figures = next(
        m.metadata
        for m in result.asset_materializations_for_node("mongo_mirror")
        if "written_again" in m.metadata
    )
    assert figures["written_again"].value == 1
    stored = lake.lake().scan_all("conversation_messages").collect()
    assert mongo.db()["conversation_messages"].count_documents({}) == stored.height


def test_a_failure_written_twice_fails_the_run(tmp_path, mongo_server, monkeypatch):
    def broken(collection, *args, **kwargs):
        if collection.name == "conversation_categories":
            raise ConnectionError("injected: server down")
        return real(collection, *args, **kwargs)

    real = io_managers.replace_frame
    monkeypatch.setattr(io_managers, "replace_frame", broken)
    defs, _lake, _mongo = sample_definitions(tmp_path, mongo_server, "mirror_fails")
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(), tags=range_tags(*DAYS), raise_on_error=False
    )
    assert not result.success
    failure = next(event for event in result.all_events if event.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "mongo_mirror"
    assert "conversation_categories" in str(failure.event_specific_data.error)


def test_a_run_without_the_mirror_step_writes_in_line(tmp_path, mongo_server):
    defs, _lake, mongo = sample_definitions(tmp_path, mongo_server, "mirror_in_line")
    job = defs.resolve_job_def("ingestion_job").get_subset(
        asset_selection={
            AssetKey(name)
            for name in (
                "nocodb_raw_pages",
                "conversation_messages",
                "conversation_headers",
                "processing_errors",
                "user_pseudonyms",
                "conversations",
            )
        }
    )
    result = job.execute_in_process(
        instance=DagsterInstance.ephemeral(), partition_key=DAYS[0], raise_on_error=False
    )
    assert result.success
    metadata = next(
        m.metadata
        for m in result.asset_materializations_for_node("validated_records")
        if m.asset_key == AssetKey("conversation_messages")
    )
    assert metadata["mongo_documents_written"].value == (
        mongo.db()["conversation_messages"].count_documents({})
    )


def test_a_run_failing_before_the_mirror_step_still_finishes_its_writes(
    tmp_path, mongo_server, monkeypatch
):
    """A step after the mirrored ones fails, so mongo_mirror never runs: the run's queued
    writes (one of them failing once) still land before the run ends, none after."""
    from analytics_assets.defs.analytics import assets as analytics_assets
    from analytics_assets.storage.deferred import DEFERRED_WRITES

    def broken_forecast(*args, **kwargs):
        raise RuntimeError("injected: the model broke")

    real = io_managers.replace_frame
    failed: list[str] = []

    def flaky(collection, *args, **kwargs):
        if collection.name == "conversation_messages" and not failed:
            failed.append(collection.name)
            raise ConnectionError("injected: connection reset")
        return real(collection, *args, **kwargs)

    monkeypatch.setattr(analytics_assets, "forecasts", broken_forecast)
    monkeypatch.setattr(io_managers, "replace_frame", flaky)
    defs, lake, mongo = sample_definitions(tmp_path, mongo_server, "mirror_run_failed")
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(), tags=range_tags(*DAYS), raise_on_error=False
    )
    assert not result.success and failed
    assert not result.asset_materializations_for_node("mongo_mirror")  # it never ran
    assert DEFERRED_WRITES.pending(result.run_id) == 0
    assert DEFERRED_WRITES.drain(result.run_id) == []  # finished by the run's teardown
    db = mongo.db()
    for table in ("conversation_messages", "conversation_analytics", "user_analytics"):
        stored = lake.lake().scan_all(table).collect()
        assert db[table].count_documents({}) == stored.height, table


def test_the_slices_a_re_execution_does_not_rewrite_are_copied_from_the_lake(
    tmp_path, mongo_server
):
    from datetime import date

    from analytics_assets.defs.storage.mirror import _rewrite_from_lake

    defs, lake, mongo = sample_definitions(tmp_path, mongo_server, "mirror_from_lake")
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(), tags=range_tags(*DAYS)
    )
    assert result.success
    db = mongo.db()
    # The parent run's copies lost (its writes failed with it), the lake complete.
    db["conversation_messages"].delete_many({})
    db["processing_errors"].delete_many({"stage": "validate"})
    copied = _rewrite_from_lake(
        defs.resources["lake"],
        mongo,
        ["conversation_messages", "processing_errors"],
        [date.fromisoformat(DAYS[0])],
        "re-execution",
    )
    assert {item.label for item in copied} <= {"conversation_messages", "processing_errors"}
    stored = lake.lake().scan_all("conversation_messages").collect()
    first_day = stored.filter(stored["day"].cast(str) == DAYS[0])
    assert db["conversation_messages"].count_documents({}) == first_day.height > 0
