"""Backup and restore (issue 21): a backup of a materialized sample restored into fresh stores
holds the same files, rows, ids, reports and documents, with their BSON types."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from dagster import DagsterInstance
from pymongo import MongoClient
from upath import UPath

from analytics_assets import tables
from analytics_assets.api.keys import create_key
from analytics_assets.storage.backup import (
    MANIFEST,
    RestoreRefusedError,
    RestoreVerificationError,
    backup,
    canonical_document,
    collection_checksum,
    restore,
    user_collections,
)
from analytics_assets.storage.lake import Lake
from analytics_assets_tests.conftest import range_tags, sample_definitions

DAYS = [date(2026, 11, 2) + timedelta(days=n) for n in range(3)]


@pytest.fixture(scope="module")
def source(tmp_path_factory, mongo_server):
    """Three days of the sample materialized into a lake and a database, plus an API key
    (a collection NocoDB cannot replay), backed up once."""
    root = tmp_path_factory.mktemp("backup_source")
    defs, lake_io, mongo = sample_definitions(root, mongo_server, "backup_source")
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(), tags=range_tags(DAYS[0], DAYS[-1])
    )
    assert result.success
    db = mongo.db()
    create_key(db, ["analytics:read"], description="restored with the backup")
    lake = lake_io.lake()
    manifest = backup(lake, db, UPath(root / "backup"))
    return lake, db, UPath(root / "backup"), manifest


def fresh_database(mongo_server: str, name: str):
    client = MongoClient(mongo_server, tz_aware=True, tzinfo=UTC)
    client.drop_database(name)
    return client[name]


def test_a_backup_restored_into_fresh_stores_equals_its_source(source, mongo_server, tmp_path):
    lake, db, backup_dir, manifest = source
    assert manifest["consistency"]["consistent"]
    target_lake = Lake.at(str(tmp_path / "lake"))
    target_db = fresh_database(mongo_server, "backup_restored")

    restored = restore(backup_dir, target_lake, target_db)

    # The same files, byte for byte, hence the same rows of each table and day.
    assert target_lake.files() == lake.files()
    assert restored["lake"]["files"] == manifest["lake"]["files"]
    for table in (tables.CONVERSATION_MESSAGES, tables.CONVERSATIONS, tables.DAILY_REPORT):
        assert target_lake.days_present(table) == DAYS
        for day in DAYS:
            before, _ = lake.read_days(table, [day])
            after, _ = target_lake.read_days(table, [day])
            assert after.height == before.height > 0
    for table, key in (
        (tables.CONVERSATION_MESSAGES, "message_id"),
        (tables.CONVERSATIONS, "conversation_id"),
    ):
        ids = lake.scan_all(table).select(key).collect()[key].sort()
        assert target_lake.scan_all(table).select(key).collect()[key].sort().equals(ids)
    # The daily reports' content, in the lake and in MongoDB.
    report = target_lake.scan_all(tables.DAILY_REPORT).collect().sort("day")
    assert report.equals(lake.scan_all(tables.DAILY_REPORT).collect().sort("day"))
    assert collection_checksum(target_db, "analytics_reports") == collection_checksum(
        db, "analytics_reports"
    )
    reports = [canonical_document(doc) for doc in target_db.analytics_reports.find().sort("_id")]
    assert reports == [canonical_document(doc) for doc in db.analytics_reports.find().sort("_id")]
    assert len(reports) == len(DAYS)
    # Every collection, the API key and the migration state included, with its indexes.
    assert user_collections(target_db) == user_collections(db)
    for name in user_collections(db):
        expected = db[name].count_documents({})
        assert target_db[name].count_documents({}) == expected, name
        assert collection_checksum(target_db, name) == collection_checksum(db, name), name
        assert set(target_db[name].index_information()) == set(db[name].index_information())
    indexes = target_db.analytics_reports.index_information().values()
    assert [info["key"] for info in indexes if info.get("unique")] == [[("kind", 1), ("period", 1)]]
    assert target_db.api_keys.count_documents({}) == 1
    assert target_db.conversation_messages.count_documents({}) > 0
    # BSON dates come back as dates, not text.
    message = target_db.conversation_messages.find_one()
    assert isinstance(message["created_at"], datetime)
    assert message == db.conversation_messages.find_one({"_id": message["_id"]})


def test_the_manifest_counts_and_checksums_every_file_and_collection(source):
    lake, db, backup_dir, manifest = source
    on_disk = json.loads((backup_dir / MANIFEST).read_text())
    assert on_disk == manifest
    assert set(manifest["lake"]["files"]) == set(lake.files())
    rows = sum(
        entry["rows"]
        for relative, entry in manifest["lake"]["files"].items()
        if relative.startswith(f"{tables.CONVERSATION_MESSAGES}/")
    )
    assert rows == lake.scan_all(tables.CONVERSATION_MESSAGES).collect().height
    messages = manifest["mongo"]["collections"]["conversation_messages"]
    assert messages["documents"] == db.conversation_messages.count_documents({})
    indexes = {index["name"] for index in messages["indexes"]}
    assert indexes == set(db.conversation_messages.index_information()) - {"_id_"}
    assert len(indexes) == 4
    assert manifest["source"]["mongodb_database"] == "backup_source"


def test_a_restore_into_stores_that_hold_data_is_refused(source, mongo_server, tmp_path):
    _, _, backup_dir, _ = source
    target_lake = Lake.at(str(tmp_path / "lake"))
    target_db = fresh_database(mongo_server, "backup_not_empty")
    target_db.api_keys.insert_one({"_id": "kept", "scopes": []})

    with pytest.raises(RestoreRefusedError, match="api_keys holds 1 document"):
        restore(backup_dir, target_lake, target_db)
    assert target_lake.files() == []
    assert user_collections(target_db) == ["api_keys"]

    # Forced, the backup's collections replace the target's.
    restore(backup_dir, target_lake, target_db, force=True)
    assert target_db.api_keys.find_one({"_id": "kept"}) is None
    assert target_db.api_keys.count_documents({}) == 1


def test_a_corrupted_backup_file_fails_the_restore_and_is_named(source, mongo_server, tmp_path):
    _, _, backup_dir, manifest = source
    corrupted = UPath(tmp_path / "corrupted")
    for relative in [*manifest["lake"]["files"], MANIFEST]:
        name = relative if relative == MANIFEST else f"lake/{relative}"
        (corrupted / name).parent.mkdir(parents=True, exist_ok=True)
        (corrupted / name).write_bytes((backup_dir / name).read_bytes())
    (corrupted / "mongo").mkdir()
    for entry in manifest["mongo"]["collections"].values():
        (corrupted / entry["file"]).write_bytes((backup_dir / entry["file"]).read_bytes())
    victim = f"{tables.CONVERSATION_MESSAGES}/day={DAYS[1].isoformat()}/data.parquet"
    payload = bytearray((corrupted / "lake" / victim).read_bytes())
    payload[len(payload) // 2] ^= 0xFF
    (corrupted / "lake" / victim).write_bytes(bytes(payload))
    target_lake = Lake.at(str(tmp_path / "lake"))
    target_db = fresh_database(mongo_server, "backup_corrupted")

    with pytest.raises(RestoreVerificationError) as failure:
        restore(corrupted, target_lake, target_db)
    assert failure.value.mismatches == [
        f"backup file lake/{victim} does not match its sha256 in the manifest"
    ]
    # Nothing was written: the operator picks another backup into the same empty stores.
    assert target_lake.files() == []
    assert user_collections(target_db) == []


@pytest.fixture
def fresh_settings():
    """The CLI reads the settings once (cached): read them from this test's environment and
    forget them afterwards."""
    from analytics_assets.settings import get_settings

    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def test_the_cli_backs_up_and_restores_the_configured_stores(
    source, mongo_server, tmp_path, monkeypatch, capsys, fresh_settings
):
    from analytics_assets.cli import main

    lake, _, _, _ = source
    monkeypatch.delenv("ANALYTICS_DEPLOYMENT", raising=False)
    monkeypatch.setenv("ANALYTICS_LOCAL_DIR", str(tmp_path / "local"))
    monkeypatch.setenv("MONGODB_URI", mongo_server)
    monkeypatch.setenv("MONGODB_DATABASE", "backup_source")
    monkeypatch.setenv("ANALYTICS_LAKE_URL", str(lake.base_path))
    assert main(["backup", str(tmp_path / "cli_backup")]) == 0
    backed_up = json.loads(capsys.readouterr().out)
    assert backed_up["collections"]["api_keys"] == 1
    messages = backed_up["lake_tables"][tables.CONVERSATION_MESSAGES]
    assert messages == {
        "files": len(DAYS),
        "rows": lake.scan_all(tables.CONVERSATION_MESSAGES).collect().height,
    }
    assert "127.0.0.1" in backed_up["source"]["mongodb_hosts"]

    fresh_database(mongo_server, "backup_cli_restored")
    monkeypatch.setenv("MONGODB_DATABASE", "backup_cli_restored")
    monkeypatch.setenv("ANALYTICS_LAKE_URL", str(tmp_path / "restored_lake"))
    assert main(["restore", str(tmp_path / "cli_backup")]) == 0
    restored = json.loads(capsys.readouterr().out)
    assert restored["collections"] == backed_up["collections"]
    assert restored["lake_tables"] == backed_up["lake_tables"]

    # Again into the now full stores: refused, exit 1, nothing changed.
    assert main(["restore", str(tmp_path / "cli_backup")]) == 1
    assert "not empty" in capsys.readouterr().err
    assert Lake.at(str(tmp_path / "restored_lake")).files() == lake.files()


def _small_lake(root) -> Lake:
    lake = Lake.at(str(root))
    for day in DAYS:
        lake.write_day("conversations", day, pl.DataFrame({"conversation_id": [day.isoformat()]}))
    return lake


def test_a_file_rewritten_during_the_backup_is_copied_again(mongo_server, tmp_path, monkeypatch):
    """A run that rewrites a day while the backup copies: the verification round finds the
    file changed, copies its new version, and the manifest says it changed."""
    from analytics_assets.storage import backup as backup_module

    lake = _small_lake(tmp_path / "lake")
    db = fresh_database(mongo_server, "backup_changing")
    db.api_keys.insert_one({"_id": "k", "created_at": datetime(2026, 11, 2, tzinfo=UTC)})
    rewritten = DAYS[0]
    copy = backup_module._copy_lake_file
    rewrites = []

    def copy_then_rewrite(source_lake, dest, relative):
        entry = copy(source_lake, dest, relative)
        if not rewrites:
            rewrites.append(relative)
            frame = pl.DataFrame({"conversation_id": ["late", "later"]})
            source_lake.write_day("conversations", rewritten, frame)
        return entry

    monkeypatch.setattr(backup_module, "_copy_lake_file", copy_then_rewrite)
    manifest = backup(lake, db, UPath(tmp_path / "backup"))

    relative = f"conversations/day={rewritten.isoformat()}/data.parquet"
    assert rewrites == [relative]
    assert manifest["consistency"] == {
        "changed_during_backup": [],
        "consistent": True,
        "verification_rounds": 2,
    }
    assert manifest["lake"]["files"][relative]["rows"] == 2
    copied = pl.read_parquet((tmp_path / "backup" / "lake" / relative).read_bytes())
    assert copied["conversation_id"].to_list() == ["late", "later"]


def test_a_restore_that_loses_a_collection_fails_its_verification(
    mongo_server, tmp_path, monkeypatch
):
    from analytics_assets.storage import backup as backup_module

    lake = _small_lake(tmp_path / "lake")
    db = fresh_database(mongo_server, "backup_lossy_source")
    db.api_keys.insert_one({"_id": "k", "created_at": datetime(2026, 11, 2, tzinfo=UTC)})
    db.privacy_audit.insert_one({"_id": "a", "erased_at": datetime(2026, 11, 3, tzinfo=UTC)})
    backup(lake, db, UPath(tmp_path / "backup"))
    restore_collection = backup_module._restore_collection

    def skip_the_audit(target, src, name, entry):
        if name != "privacy_audit":
            restore_collection(target, src, name, entry)

    monkeypatch.setattr(backup_module, "_restore_collection", skip_the_audit)
    target_db = fresh_database(mongo_server, "backup_lossy_target")
    with pytest.raises(RestoreVerificationError) as failure:
        restore(UPath(tmp_path / "backup"), Lake.at(str(tmp_path / "restored")), target_db)
    assert failure.value.mismatches == ["collection privacy_audit was not restored"]
    restored_key = target_db.api_keys.find_one({"_id": "k"})
    assert restored_key["created_at"] == datetime(2026, 11, 2, tzinfo=UTC)


def test_an_s3_lake_backed_up_to_s3_restores_into_a_local_lake(s3_server, mongo_server, tmp_path):
    from analytics_assets.storage.lake import s3_storage_options

    options = s3_storage_options(endpoint_url=s3_server.endpoint_url, region_name="us-east-1")
    prefix = f"s3://{s3_server.bucket}/{tmp_path.name}"
    lake = Lake.at(f"{prefix}/lake", **options)
    for day in DAYS:
        lake.write_day("conversations", day, pl.DataFrame({"conversation_id": [day.isoformat()]}))
    db = fresh_database(mongo_server, "backup_s3_source")
    db.api_keys.insert_one({"_id": "k", "created_at": datetime(2026, 11, 2, tzinfo=UTC)})
    backup_dir = UPath(f"{prefix}/backup", **options)

    manifest = backup(lake, db, backup_dir)
    target_lake = Lake.at(str(tmp_path / "restored"))
    restore(backup_dir, target_lake, fresh_database(mongo_server, "backup_s3_target"))

    assert manifest["source"]["lake"] == f"{prefix}/lake"
    assert (
        target_lake.files()
        == lake.files()
        == [f"conversations/day={day.isoformat()}/data.parquet" for day in DAYS]
    )
    assert target_lake.scan_all("conversations").collect()["conversation_id"].to_list() == [
        day.isoformat() for day in DAYS
    ]


@pytest.mark.parametrize(
    "escaping",
    ["../escaped/evil.parquet", "/tmp/evil.parquet", "events/../../evil.parquet",
     "C:/evil.parquet", "events//evil.parquet"],
)  # fmt: skip
def test_a_manifest_naming_paths_outside_the_backup_is_refused_before_anything_is_written(
    tmp_path, escaping
):
    """The checksums guard the files, not the manifest: a restore wrote a file of the
    backup to `<lake>/../escaped/evil.parquet`, outside the lake."""
    from analytics_assets.storage.backup import FORMAT_VERSION, MANIFEST, restore

    backup = tmp_path / "backup"
    (backup / "lake" / "events").mkdir(parents=True)
    payload = b"PAR1 not a parquet file"
    (backup / "lake" / "events" / "evil.parquet").write_bytes(payload)
    (backup / "escaped").mkdir()
    (backup / "escaped" / "evil.parquet").write_bytes(payload)  # what `../escaped/…` reads
    import hashlib

    manifest = {
        "format": FORMAT_VERSION,
        "lake": {"files": {escaping: {"sha256": hashlib.sha256(payload).hexdigest()}}},
        "mongo": {"collections": {}},
    }
    (backup / MANIFEST).write_text(json.dumps(manifest))
    lake = Lake(UPath(str(tmp_path / "target" / "lake")))
    with pytest.raises(ValueError, match="paths outside its folders"):
        restore(UPath(str(backup)), lake, None, force=True)
    assert not (tmp_path / "target" / "escaped").exists()
    assert not list((tmp_path / "target").rglob("*.parquet"))
