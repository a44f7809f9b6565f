"""Backup and restore of the lake and the MongoDB database (issue 21).

A backup is a folder (local or `s3://`, through universal_pathlib):
- `lake/<the lake's own relative paths>`: every file of the lake, byte for byte;
- `mongo/<collection>.jsonl`: every document of every collection, one per line, in
  canonical extended JSON (`bson.json_util`), so dates stay dates and doubles keep every bit;
- `manifest.json`: per lake file its rows, size and sha256; per collection its document
  count, a sha256 over its documents (sorted by `_id`, keys sorted, canonical extended JSON),
  the export file's sha256, the collection's options (validator) and indexes; when the
  backup was taken and from where (hosts and database, never a URI: it may hold credentials).

Consistency: each lake file is replaced atomically by its writers, so every copied file is
a whole version of its day. Across files and collections there is no snapshot (neither
the lake nor nx-27017 offers one): after copying everything, the backup reads the sources
again and copies once more whatever changed meanwhile, up to `VERIFY_ROUNDS` times. If the
sources were still changing after the last round, the manifest lists what changed under
`consistency.changed_during_backup`, and the backup is a mix of versions of those days.
Run backups when no run writes (after the daily schedule, or with the queue paused): then the
verification round finds nothing changed and the backup is one consistent state.

Restore writes into empty stores only (unless `force`), checks every backup file against
the manifest before writing anything, restores, then reads the restored stores back and
compares them with the manifest. Pure: no Dagster.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pyarrow.parquet as pq
from bson import json_util
from bson.json_util import CANONICAL_JSON_OPTIONS, JSONOptions
from pymongo.database import Database
from upath import UPath

from analytics_assets.storage.collections import COLLECTIONS
from analytics_assets.storage.embedded import DAY_AS_DATE_INDEX_PREFIX
from analytics_assets.storage.lake import Lake, write_bytes_atomically

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
LAKE_FOLDER = "lake"
MONGO_FOLDER = "mongo"
VERIFY_ROUNDS = 3
INSERT_BATCH = 1000
# Canonical extended JSON, read back as timezone-aware UTC datetimes like the rest of the code.
_CANONICAL = CANONICAL_JSON_OPTIONS
_READ_BACK = JSONOptions(json_mode=CANONICAL_JSON_OPTIONS.json_mode, tz_aware=True, tzinfo=UTC)
# Index options that describe the index rather than configure it.
_INDEX_BOOKKEEPING = {"v", "ns", "key"}

Manifest = dict[str, Any]


class BackupError(RuntimeError):
    """A backup that cannot be taken (its destination already holds one)."""


class RestoreRefusedError(RuntimeError):
    """The restore's target is not empty; names what it holds."""


class RestoreVerificationError(RuntimeError):
    """The backup does not match its manifest, or the restored stores do not: `mismatches`
    names each file or collection."""

    def __init__(self, stage: str, mismatches: list[str]):
        self.stage = stage
        self.mismatches = mismatches
        super().__init__(f"{stage}: {len(mismatches)} mismatch(es): " + "; ".join(mismatches))


# -- checksums -------------------------------------------------------------------------------


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def parquet_rows(payload: bytes) -> int | None:
    """Rows of a Parquet file from its footer; None for a file that is not Parquet."""
    try:
        return pq.ParquetFile(io.BytesIO(payload)).metadata.num_rows
    except Exception:  # pyarrow raises several types for a file that is not Parquet
        return None


def canonical_document(document: dict[str, Any]) -> str:
    """One document as canonical extended JSON with sorted keys: equal for equal BSON
    values whatever the field order, different when a type changes (a date stored as text,
    an int32 become a double)."""
    return json_util.dumps(document, sort_keys=True, json_options=_CANONICAL)


def _sorted_documents(db: Database, name: str) -> Iterator[dict[str, Any]]:
    return db[name].find({}).sort("_id", 1)


def _to_manifest(value: dict[str, Any]) -> dict[str, Any]:
    """BSON values (a validator's regex, an index's partial filter on a date) as extended
    JSON the manifest can hold; `_from_manifest` reads them back."""
    return json.loads(json_util.dumps(value, json_options=_CANONICAL))


def _from_manifest(value: dict[str, Any]) -> dict[str, Any]:
    return json_util.loads(json.dumps(value), json_options=_READ_BACK)


def collection_checksum(db: Database, name: str) -> tuple[int, str]:
    """Document count and sha256 over the collection's canonical documents in `_id` order."""
    digest, count = hashlib.sha256(), 0
    for document in _sorted_documents(db, name):
        digest.update(canonical_document(document).encode())
        digest.update(b"\n")
        count += 1
    return count, digest.hexdigest()


def user_collections(db: Database) -> list[str]:
    """The database's collections, without MongoDB's own (`system.*`)."""
    return sorted(name for name in db.list_collection_names() if not name.startswith("system."))


def describe_source(lake: Lake, db: Database) -> dict[str, str]:
    """Where the backup came from: the lake's location and the database's hosts and name.
    `str(base_path)` holds no storage options, and hosts are taken from the topology, never
    from the URI (which may carry a password)."""
    hosts = ", ".join(f"{host}:{port}" for host, port in sorted(db.client.nodes))
    return {"lake": str(lake.base_path), "mongodb_hosts": hosts, "mongodb_database": db.name}


# -- backup ----------------------------------------------------------------------------------


def _copy_lake_file(lake: Lake, dest: UPath, relative: str) -> dict[str, Any]:
    payload = (lake.base_path / relative).read_bytes()
    target = dest / LAKE_FOLDER / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(payload)
    return {"rows": parquet_rows(payload), "bytes": len(payload), "sha256": sha256(payload)}


def _index_entries(db: Database, name: str) -> list[dict[str, Any]]:
    entries = []
    for index_name, info in sorted(db[name].index_information().items()):
        if index_name == "_id_":
            continue  # every collection has it
        if index_name.startswith(DAY_AS_DATE_INDEX_PREFIX):
            continue  # the embedded server's own, remade by every process that connects
        options = {key: value for key, value in info.items() if key not in _INDEX_BOOKKEEPING}
        keys = [[field_name, direction] for field_name, direction in info["key"]]
        entries.append({"name": index_name, "keys": keys, "options": _to_manifest(options)})
    return entries


def _collection_options(db: Database, name: str) -> dict[str, Any]:
    for info in db.list_collections(filter={"name": name}):
        return _to_manifest(info.get("options", {}))
    return {}


def _export_collection(db: Database, dest: UPath, name: str) -> dict[str, Any]:
    """Writes the collection's documents in `_id` order, in their stored field order (which
    the restore keeps), and checksums them in canonical form while writing."""
    relative = f"{MONGO_FOLDER}/{name}.jsonl"
    target = dest / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    documents_digest, file_digest, count = hashlib.sha256(), hashlib.sha256(), 0
    with target.open("wb") as handle:
        for document in _sorted_documents(db, name):
            documents_digest.update(canonical_document(document).encode() + b"\n")
            line = json_util.dumps(document, json_options=_CANONICAL).encode() + b"\n"
            file_digest.update(line)
            handle.write(line)
            count += 1
    return {
        "file": relative,
        "documents": count,
        "sha256": documents_digest.hexdigest(),
        "file_sha256": file_digest.hexdigest(),
        "options": _collection_options(db, name),
        "indexes": _index_entries(db, name),
    }


def backup(
    lake: Lake, db: Database, dest: UPath, *, verify_rounds: int = VERIFY_ROUNDS
) -> Manifest:
    """Copies the lake and exports the database into `dest`; writes and returns the manifest.
    Refuses a destination that already holds a backup."""
    if (dest / MANIFEST).exists():
        raise BackupError(f"{dest} already holds a backup ({MANIFEST}); choose a new folder.")
    started = datetime.now(UTC)
    files = {relative: _copy_lake_file(lake, dest, relative) for relative in lake.files()}
    collections = {name: _export_collection(db, dest, name) for name in user_collections(db)}
    # Verification rounds: what changed while it was copied is copied again, until a round
    # finds nothing changed (then the backup is one state of the stores) or rounds run out.
    changed: list[str] = []
    rounds = 0
    while rounds < verify_rounds:
        rounds += 1
        changed = _recopy_changed(lake, db, dest, files, collections)
        if not changed:
            break
    manifest: Manifest = {
        "format": FORMAT_VERSION,
        "started_at": started.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "source": describe_source(lake, db),
        "consistency": {
            "verification_rounds": rounds,
            "changed_during_backup": changed,
            "consistent": not changed,
        },
        "lake": {"files": files},
        "mongo": {"collections": collections},
    }
    (dest / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    return manifest


def _recopy_changed(
    lake: Lake,
    db: Database,
    dest: UPath,
    files: dict[str, dict[str, Any]],
    collections: dict[str, dict[str, Any]],
) -> list[str]:
    """Compares the sources with what was copied; copies again (and updates the entries of)
    what differs; returns what differed. Files that disappeared leave the backup too."""
    changed: list[str] = []
    present = set(lake.files())
    for relative in sorted(present | set(files)):
        if relative not in present:
            (dest / LAKE_FOLDER / relative).unlink(missing_ok=True)
            del files[relative]
            changed.append(f"{LAKE_FOLDER}/{relative}")
            continue
        payload = (lake.base_path / relative).read_bytes()
        if relative not in files or files[relative]["sha256"] != sha256(payload):
            files[relative] = _copy_lake_file(lake, dest, relative)
            changed.append(f"{LAKE_FOLDER}/{relative}")
    names = set(user_collections(db))
    for name in sorted(names | set(collections)):
        if name not in names:
            (dest / collections[name]["file"]).unlink(missing_ok=True)
            del collections[name]
            changed.append(f"{MONGO_FOLDER}/{name}")
            continue
        count, checksum = collection_checksum(db, name)
        entry = collections.get(name)
        if entry is None or (entry["documents"], entry["sha256"]) != (count, checksum):
            collections[name] = _export_collection(db, dest, name)
            changed.append(f"{MONGO_FOLDER}/{name}")
    return changed


# -- restore ---------------------------------------------------------------------------------


def read_manifest(src: UPath) -> Manifest:
    path = src / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{src} holds no backup ({MANIFEST} is missing).")
    manifest = json.loads(path.read_text())
    if manifest.get("format") != FORMAT_VERSION:
        raise ValueError(f"Backup format {manifest.get('format')!r} is not {FORMAT_VERSION}.")
    # The checksums guard the files, not the manifest: a path in it that leaves its folder
    # (`../elsewhere/x.parquet`) was written outside the lake by a restore.
    names = [*manifest["lake"]["files"]] + [
        entry["file"] for entry in manifest["mongo"]["collections"].values()
    ]
    escaping = [name for name in names if not _stays_inside(name)]
    if escaping:
        raise ValueError(f"The backup's manifest names paths outside its folders: {escaping[:3]}")
    return manifest


def _stays_inside(relative: str) -> bool:
    parts = relative.replace("\\", "/").split("/")
    return (
        bool(relative)
        and not relative.startswith(("/", "\\"))
        and ":" not in parts[0]
        and not any(part in ("", ".", "..") for part in parts)
    )


def what_the_target_holds(lake: Lake, db: Database) -> list[str]:
    """The lake's files and the non-empty collections of the database, briefly."""
    held = []
    lake_files = lake.files()
    if lake_files:
        held.append(f"the lake at {lake.base_path} holds {len(lake_files)} file(s)")
    for name in user_collections(db):
        count = db[name].estimated_document_count()
        if count:
            held.append(f"collection {name} holds {count} document(s)")
    return held


def check_backup_files(src: UPath, manifest: Manifest) -> list[str]:
    """Every file of the backup against the manifest's sha256: one line per mismatch."""
    mismatches = []
    expected = [
        (f"{LAKE_FOLDER}/{relative}", entry["sha256"])
        for relative, entry in manifest["lake"]["files"].items()
    ] + [
        (entry["file"], entry["file_sha256"]) for entry in manifest["mongo"]["collections"].values()
    ]
    for relative, checksum in expected:
        path = src / relative
        if not path.exists():
            mismatches.append(f"backup file {relative} is missing")
        elif sha256(path.read_bytes()) != checksum:
            mismatches.append(f"backup file {relative} does not match its sha256 in the manifest")
    return mismatches


def _read_documents(path: UPath) -> Iterator[dict[str, Any]]:
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                yield json_util.loads(line, json_options=_READ_BACK)


def _restore_collection(db: Database, src: UPath, name: str, entry: dict[str, Any]) -> None:
    options = _from_manifest(entry["options"])
    spec = COLLECTIONS.get(name)
    if spec is not None and "validator" not in options:
        # A server that does not report validators (nx-27017) gave none to back up: the
        # project's collections get theirs from the code, as the migrations install them.
        options = {"validator": {"$jsonSchema": spec.json_schema}, "validationAction": "error"}
    if name not in db.list_collection_names():
        db.create_collection(name, **options)
    collection = db[name]
    batch: list[dict[str, Any]] = []
    # The validator already accepted these documents once; one written under a validator's
    # "warn" must come back too, so the restore bypasses validation.
    for document in _read_documents(src / entry["file"]):
        batch.append(document)
        if len(batch) == INSERT_BATCH:
            collection.insert_many(batch, ordered=True, bypass_document_validation=True)
            batch = []
    if batch:
        collection.insert_many(batch, ordered=True, bypass_document_validation=True)
    if spec is not None and spec.indexes:
        # The read paths' indexes even if the source lacked some (create_indexes skips those
        # already there, under their name or with their keys).
        collection.create_indexes(spec.indexes)
    for index in entry["indexes"]:
        collection.create_index(
            [(key, direction) for key, direction in index["keys"]],
            name=index["name"],
            **_from_manifest(index["options"]),
        )


def describe_stores(lake: Lake, db: Database) -> Manifest:
    """The lake's files and the database's collections in the manifest's terms (no copy)."""
    files = {}
    for relative in lake.files():
        payload = (lake.base_path / relative).read_bytes()
        files[relative] = {
            "rows": parquet_rows(payload),
            "bytes": len(payload),
            "sha256": sha256(payload),
        }
    collections = {}
    for name in user_collections(db):
        count, checksum = collection_checksum(db, name)
        collections[name] = {
            "documents": count,
            "sha256": checksum,
            "indexes": _index_entries(db, name),
        }
    return {"lake": {"files": files}, "mongo": {"collections": collections}}


def compare_with_manifest(restored: Manifest, manifest: Manifest) -> list[str]:
    """What the restored stores lack or hold differently from the manifest. Files and
    collections the target held besides the backup's (a forced restore) are not mismatches."""
    mismatches = []
    for relative, expected in manifest["lake"]["files"].items():
        found = restored["lake"]["files"].get(relative)
        if found is None:
            mismatches.append(f"lake file {relative} was not restored")
        elif found["sha256"] != expected["sha256"] or found["rows"] != expected["rows"]:
            mismatches.append(
                f"lake file {relative}: {found['rows']} rows, sha256 {found['sha256'][:12]}; "
                f"the manifest says {expected['rows']} rows, sha256 {expected['sha256'][:12]}"
            )
    for name, expected in manifest["mongo"]["collections"].items():
        found = restored["mongo"]["collections"].get(name)
        if found is None:
            mismatches.append(f"collection {name} was not restored")
            continue
        if found["documents"] != expected["documents"] or found["sha256"] != expected["sha256"]:
            mismatches.append(
                f"collection {name}: {found['documents']} documents, sha256 "
                f"{found['sha256'][:12]}; the manifest says {expected['documents']}, "
                f"sha256 {expected['sha256'][:12]}"
            )
        missing_indexes = {index["name"] for index in expected["indexes"]} - {
            index["name"] for index in found["indexes"]
        }
        if missing_indexes:
            mismatches.append(f"collection {name}: indexes {sorted(missing_indexes)} missing")
    return mismatches


def restore(src: UPath, lake: Lake, db: Database, *, force: bool = False) -> Manifest:
    """Restores the backup at `src` into the lake and the database, then verifies them
    against its manifest; returns the manifest of what was restored.

    Refuses a target that holds anything (`RestoreRefusedError`) unless `force`: then the
    backup's collections are dropped and replaced, its lake files overwritten, and whatever
    else the target holds is left as it is. Raises `RestoreVerificationError` before writing
    anything when a backup file does not match the manifest, and after restoring when the
    restored stores do not."""
    manifest = read_manifest(src)
    if not force:
        held = what_the_target_holds(lake, db)
        if held:
            raise RestoreRefusedError(
                "The restore's target is not empty: " + "; ".join(held) + ". Restore into "
                "an empty lake and database, or pass --force to replace what the backup holds."
            )
    corrupt = check_backup_files(src, manifest)
    if corrupt:
        raise RestoreVerificationError("the backup does not match its manifest", corrupt)
    for relative in manifest["lake"]["files"]:
        write_bytes_atomically(
            lake.base_path / relative, (src / LAKE_FOLDER / relative).read_bytes()
        )
    for name, entry in manifest["mongo"]["collections"].items():
        if force:
            db.drop_collection(name)
        _restore_collection(db, src, name, entry)
    restored = describe_stores(lake, db)
    mismatches = compare_with_manifest(restored, manifest)
    if mismatches:
        raise RestoreVerificationError("the restored stores do not match the manifest", mismatches)
    return {
        **restored,
        "format": FORMAT_VERSION,
        "restored_at": datetime.now(UTC).isoformat(),
        "backup_started_at": manifest["started_at"],
        "backup_source": manifest["source"],
    }


def summary(manifest: Manifest) -> dict[str, Any]:
    """A manifest in a few lines: files and rows per table, documents per collection."""
    tables: dict[str, dict[str, int]] = {}
    for relative, entry in manifest["lake"]["files"].items():
        table = tables.setdefault(relative.split("/", 1)[0], {"files": 0, "rows": 0})
        table["files"] += 1
        table["rows"] += entry["rows"] or 0
    brief = {
        key: manifest[key]
        for key in ("started_at", "finished_at", "restored_at", "source", "consistency")
        if key in manifest
    }
    return {
        **brief,
        "lake_tables": tables,
        "collections": {
            name: entry["documents"] for name, entry in manifest["mongo"]["collections"].items()
        },
    }
