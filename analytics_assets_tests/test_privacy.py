"""Privacy end to end on the sample source: no raw PII of a redacted type in any analytics
table or collection, stable pseudonymous users, retention, and the right to erasure."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
import time
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterInstance,
    build_run_status_sensor_context,
    materialize,
)

from analytics_assets import tables
from analytics_assets.analytics.checks import reconciliation_verdict
from analytics_assets.defs.privacy.assets import privacy_retention
from analytics_assets.defs.privacy.jobs import (
    erasure_report_rebuild_sensor,
    report_run_requests,
    run_erasure,
)
from analytics_assets.defs.privacy.resources import (
    RESTRICTED_TABLES,
    PrivacyResource,
    searchable_texts,
)
from analytics_assets.defs.storage.placement import mirrors_of
from analytics_assets.privacy.erasure import AUDIT_COLLECTION, REQUESTS_COLLECTION, submit_request
from analytics_assets.privacy.pii import USER_PSEUDONYM_PATTERN, detect
from analytics_assets.privacy.retention import apply_retention
from analytics_assets.settings import Settings
from analytics_assets.sources.generator import SampleSpec, generate_sample, write_export
from analytics_assets.transforms.raw import raw_frame_from_records
from analytics_assets.transforms.records import (
    KEPT_WITHOUT_VALUE,
    reason_without_values,
    validate_messages,
)
from analytics_assets.translation.translators import HttpTranslator
from analytics_assets_tests.conftest import export_definitions, range_tags
from analytics_assets_tests.test_assets import read_asset

KEY = "test-pseudonym-key"
# One value of every type, in the formats people paste into a chat.
PLANTED = {
    "EMAIL": "maria.lopez@example.es",
    "PHONE": "+49 151 23456789",
    "CARD": "4111 1111 1111 1111",
    "IBAN": "DE89 3704 0044 0532 0130 00",
    "IP": "81.2.69.142",
    "URL_SECRET": "https://api.example.com/v1/export?token=Zx81kQ2pLmW",
    "API_KEY": "sk_live_51HcQ2eKq8ZxY7wVbN3mR4tS",
    "GOV_ID": "123-45-6789",
}
PREFIXES = ["my details: {v}", "meine Daten: {v} danke", "mis datos son {v}", "```{v}```"]
# A source whose user ids are emails: the id itself is PII.
EMAIL_USER = "jane.roe@example.org"


def _export_with_pii(folder, spec: SampleSpec) -> dict:
    data = generate_sample(spec)
    planted: dict[str, str] = {}
    values = list(PLANTED.items())
    users = [m for m in data.messages if m["role"] == "user"]
    for index, message in enumerate(users[::3]):
        _kind, value = values[index % len(values)]
        message["content"] += " " + PREFIXES[index % len(PREFIXES)].format(v=value)
        planted[message["message_id"]] = value
    # A bad record carrying PII: it lands in processing_errors, which must be anonymized.
    rejected = users[1]
    rejected["role"] = "bot"
    rejected["content"] += f" card {PLANTED['CARD']}"
    for conversation in data.conversations[:5]:
        conversation["user_id"] = EMAIL_USER
    # Labels a person can type into: a channel named after an agent, a model field holding a
    # phone number (they reached the reports, the API and MongoDB raw).
    data.conversations[5]["channel"] = f"escalated to {PLANTED['EMAIL']}"
    data.conversations[6]["model"] = f"gpt-4o call {PLANTED['PHONE']}"
    assistant = next(m for m in data.messages if m["role"] == "assistant")
    assistant["model"] = f"gpt-4o {PLANTED['EMAIL']}"
    planted[assistant["message_id"]] = PLANTED["EMAIL"]
    write_export(data, folder)
    return {"data": data, "planted": planted}


def _eraser(lake, db, privacy: PrivacyResource):
    """An erasure over `lake` and `db` under `privacy`'s key, with the default source schema."""
    from analytics_assets.privacy.erasure import Eraser
    from analytics_assets.sources.schema import SourceSchema

    return Eraser(lake, db, pseudonym_of=privacy.pseudonymizer(), digest=privacy.digester(),
                  schema=SourceSchema())  # fmt: skip


def _definitions(root, mongo_uri, database, key=KEY, **privacy):
    return export_definitions(
        root, mongo_uri, database, privacy=PrivacyResource(pseudonym_key=key, **privacy)
    )


def _busiest_user(data) -> str:
    """The user with the most conversations (so with conversations on several days)."""
    counts: dict[str, int] = {}
    for conversation in data.conversations:
        if conversation["user_id"]:
            counts[conversation["user_id"]] = counts.get(conversation["user_id"], 0) + 1
    return max(counts, key=counts.get)


def _strings(frame: pl.DataFrame) -> list[str]:
    """Every value of a frame as JSON text, one line per row (lists and structs included)."""
    return frame.write_ndjson().splitlines() if frame.height else []


def _analytics_tables(lake) -> dict[str, pl.DataFrame]:
    return {
        table: lake.lake().scan_all(table).collect()
        for table in lake.lake().tables()
        if table not in RESTRICTED_TABLES
    }


def _collections(mongo) -> dict[str, list[str]]:
    db = mongo.db()
    return {
        name: [json.dumps(doc, default=str, ensure_ascii=False) for doc in db[name].find()]
        for name in db.list_collection_names()
        if name not in (AUDIT_COLLECTION, "schema_migrations")
    }


# -- policies --------------------------------------------------------------------------------


def test_keep_is_refused_outside_restricted_tables():
    with pytest.raises(ValueError, match="restricted_tables"):
        PrivacyResource(policies={"conversation_messages": "keep"}).policy_for(
            "conversation_messages"
        )
    allowed = PrivacyResource(
        policies={"conversation_messages": "keep"}, restricted_tables=["conversation_messages"]
    )
    assert allowed.policy_for("conversation_messages") == "keep"
    assert allowed.redacted_types("conversation_messages") == ()
    with pytest.raises(ValueError, match="must be one of"):
        PrivacyResource(policies={"processing_errors": "hash"}).policy_for("processing_errors")


def test_policies_are_per_table():
    privacy = PrivacyResource(
        pseudonym_key=KEY, policies={"conversation_translations": "pseudonymize"}
    )
    text = pl.DataFrame({"text": [f"mail {PLANTED['EMAIL']}"], "source_text": ["x"]})
    redacted, counts = privacy.anonymize_table("conversation_messages", text.rename(
        {"text": "content"}))  # fmt: skip
    assert redacted["content"][0] == "mail <EMAIL>" and counts == {"EMAIL": 1}
    pseudonymized, _ = privacy.anonymize_table("conversation_translations", text)
    assert pseudonymized["text"][0].startswith("mail <EMAIL:")
    # A table without text columns is left as it is.
    assert privacy.anonymize_table("conversations", text)[0].equals(text)


def test_rejected_records_keep_their_json_with_a_pseudonymous_user():
    privacy = PrivacyResource(pseudonym_key=KEY)
    errors = pl.DataFrame(
        {
            "table": ["conversations", "messages"],
            "record": [json.dumps({"customer": "u-17", "rating": 9}), '{"user_id": "u-17"}'],
        }
    )
    swapped = privacy.pseudonymize_records(errors, user_field="customer")
    assert json.loads(swapped["record"][0]) == {"customer": privacy.pseudonym("u-17"),
                                                "rating": 9}  # fmt: skip
    assert swapped["record"][1] == errors["record"][1]  # a message record has no user


def test_pii_on_the_line_after_a_break_is_found_in_a_rejected_records_json():
    """In a record's JSON a line break is the two characters `\\n`: the value after it is
    glued to the `n` and no word boundary finds it. The record's values are searched and
    anonymized instead, and the check reads the same values. (Made-up test numbers.)"""
    content = (
        "My new card:\n4111 1111 1111 1111\ncall me\n+44 20 7946 0958\n"
        "IBAN\tDE89 3704 0044 0532 0130 00"
    )
    record = json.dumps({"content": content, "feedback": "up", "latency_ms": 12})
    errors = pl.DataFrame(
        {
            "table": ["messages", "messages"],
            "reason": ["duplicate message_id; superseded by a newer copy"] * 2,
            "record": [record, '{"content": "nothing to see", "latency_ms": 3}'],
        }
    )
    kinds = ("CARD", "PHONE", "IBAN")
    # What the check read before: the JSON text, where nothing is found.
    assert not any(detect(errors["record"], kinds))
    found = detect(searchable_texts(tables.PROCESSING_ERRORS, "record", errors["record"]), kinds)
    assert sorted(f.kind for f in found[0]) == ["CARD", "IBAN", "PHONE"]

    anonymized, counts = PrivacyResource(pseudonym_key=KEY).anonymize_table(
        tables.PROCESSING_ERRORS, errors
    )
    assert counts == {"CARD": 1, "PHONE": 1, "IBAN": 1}
    assert json.loads(anonymized["record"][0]) == {
        "content": "My new card:\n<CARD>\ncall me\n<PHONE>\nIBAN\t<IBAN>",
        "feedback": "up",
        "latency_ms": 12,
    }
    # A record with nothing to replace stays exactly as the source sent it.
    assert anonymized["record"][1] == errors["record"][1]
    texts = searchable_texts(tables.PROCESSING_ERRORS, "record", anonymized["record"])
    assert not any(detect(texts, kinds))


def test_pii_on_the_line_after_a_break_in_a_quoted_value_is_anonymized_in_the_reason():
    """A reason quotes the value it could not read. Its line breaks were escaped as `\\n`,
    which glued the number after it to a letter: the record's copy was anonymized and the
    reason kept the card, and the check passed it. (Made-up test numbers.)"""
    validated = validate_messages(
        raw_frame_from_records(
            [{"message_id": "m1", "conversation_id": "c1", "role": "user", "content": "x",
              "created_at": "2026-11-01 10:00:00",
              "feedback": "refund to:\n4111 1111 1111 1111\r\ncall +44 20 7946 0958"}],
            table="messages", day=date(2026, 11, 1), page=0, fetched_at=datetime.now(UTC),
            source="test",
        )
    )  # fmt: skip
    # The message is kept without the feedback; the feedback is only in processing_errors.
    assert validated.valid["feedback"].to_list() == [None]
    rejected = validated.rejected
    kinds = ("CARD", "PHONE")
    assert sorted(f.kind for f in detect(rejected["reason"], kinds)[0]) == ["CARD", "PHONE"]
    anonymized, counts = PrivacyResource(pseudonym_key=KEY).anonymize_table(
        tables.PROCESSING_ERRORS, rejected
    )
    assert anonymized["reason"][0] == (
        f"invalid feedback 'refund to:⏎<CARD>⏎call <PHONE>'; {KEPT_WITHOUT_VALUE}"
    )
    assert counts == {"CARD": 2, "PHONE": 2}  # the reason's and the record's
    assert not any(detect(anonymized["reason"], kinds))


def test_a_record_that_is_not_json_is_searched_with_its_escapes_read():
    cut_short = '{"content": "call me\\n+44 20 7946 0958 or card\\n4111 1111 1111 1111'
    errors = pl.DataFrame({"table": ["messages"], "reason": ["not JSON"], "record": [cut_short]})
    anonymized, counts = PrivacyResource().anonymize_table(tables.PROCESSING_ERRORS, errors)
    assert counts == {"PHONE": 1, "CARD": 1}
    assert "7946" not in anonymized["record"][0] and "4111" not in anonymized["record"][0]


def test_records_that_do_not_decode_mixed_with_those_that_do_each_keep_their_own_text():
    """Each record takes back its own values, however the JSON and non-JSON ones are mixed
    (a record nested too deep to read, then a plain one); a number is searched as written
    (a card in a Number column), and a key written twice keeps both values, both searched."""
    too_deep = "[" * 5000 + "]" * 5000
    records = pl.Series(
        "record",
        [
            '{"content": "hi"',  # cut short
            '{"content": "mail bob@example.com"}',
            too_deep,
            '{"card": 4111111111111111, "tokens": 3, "latency": 1.5, "flag": true}',
            '{"content": "bob@example.com", "content": "x"}',
            None,
        ],
    )
    errors = pl.DataFrame({"table": ["messages"] * 6, "reason": ["r"] * 6, "record": records})
    anonymized, counts = PrivacyResource().anonymize_table(tables.PROCESSING_ERRORS, errors)
    assert anonymized["record"].to_list() == [
        '{"content": "hi"',
        '{"content": "mail <EMAIL>"}',
        too_deep,
        '{"card": "<CARD>", "tokens": 3, "latency": 1.5, "flag": true}',
        '{"content": "<EMAIL>", "content": "x"}',
        None,
    ]
    assert counts == {"EMAIL": 2, "CARD": 1}
    texts = searchable_texts(tables.PROCESSING_ERRORS, "record", records)
    assert [bool(found) for found in detect(texts, ("EMAIL", "CARD"))] == [
        False, True, False, True, True, False,
    ]  # fmt: skip


def test_a_rejections_reason_is_anonymized_and_kept_out_of_metadata():
    """The reason quotes the value it could not read: anything typed into a mapped field."""
    reason = "invalid feedback 'mail jane.doe@example.com or 4111 1111 1111 1111'; missing role"
    errors = pl.DataFrame({"table": ["messages"], "reason": [reason], "record": ["{}"]})
    anonymized, _ = PrivacyResource().anonymize_table(tables.PROCESSING_ERRORS, errors)
    assert anonymized["reason"][0] == "invalid feedback 'mail <EMAIL> or <CARD>'; missing role"
    shown = anonymized.select(reason_without_values(pl.col("reason"))).item()
    assert shown == "invalid feedback '…'; missing role"
    # A value with quotes, "; " or line breaks in it is quoted escaped: none of it is shown.
    rejected = validate_messages(
        raw_frame_from_records(
            [{"message_id": "m1", "conversation_id": "c1", "role": "user", "content": "x",
              "created_at": "2026-11-01 10:00:00", "feedback": "x'; call Jane Doe\nat home"}],
            table="messages", day=date(2026, 11, 1), page=0, fetched_at=datetime.now(UTC),
            source="test",
        )
    ).rejected  # fmt: skip
    assert rejected["reason"][0] == (
        f"invalid feedback 'x\\'; call Jane Doe⏎at home'; {KEPT_WITHOUT_VALUE}"
    )
    assert rejected.select(reason_without_values(pl.col("reason"))).item() == (
        f"invalid feedback '…'; {KEPT_WITHOUT_VALUE}"
    )


@pytest.mark.parametrize(
    ("written", "read_as"),
    [
        ('"u-17"', "u-17"),
        ('"  u-17 "', "u-17"),
        ("4711", "4711"),
        ("1e5", "100000"),
        ('["u-1", "u-2"]', None),
    ],
)
def test_a_rejected_records_user_id_is_a_pseudonym_whatever_it_holds(written, read_as):
    """A Number column's id (4711) and an id with spaces get the conversation's pseudonym
    (the headers read the id stripped, a number as written); an array is never left raw."""
    privacy = PrivacyResource(pseudonym_key=KEY)
    record = f'{{"customer": {written}, "rating": 9}}'
    errors = pl.DataFrame({"table": ["conversations"], "record": [record]})
    swapped = json.loads(privacy.pseudonymize_records(errors, user_field="customer")["record"][0])
    assert swapped["rating"] == 9
    assert re.fullmatch(USER_PSEUDONYM_PATTERN, swapped["customer"])
    if read_as is not None:
        assert swapped["customer"] == privacy.pseudonym(read_as)


def test_a_user_id_in_a_record_that_is_not_json_is_a_pseudonym():
    privacy = PrivacyResource(pseudonym_key=KEY)
    cut_short = '{"rating": 9, "customer": "u-17", "started_at": "2026-11-0'
    errors = pl.DataFrame({"table": ["conversations"], "record": [cut_short]})
    swapped = privacy.pseudonymize_records(errors, user_field="customer")["record"][0]
    assert "u-17" not in swapped and privacy.pseudonym("u-17") in swapped
    # Cut inside the id: what is there of it, all of it, becomes the pseudonym.
    for cut_in_the_id, what_is_there in (
        ('{"customer": "u-1', "u-1"),
        ('{"customer": "u 1', "u 1"),
    ):
        errors = pl.DataFrame({"table": ["conversations"], "record": [cut_in_the_id]})
        swapped = privacy.pseudonymize_records(errors, user_field="customer")["record"][0]
        assert swapped == f'{{"customer": "{privacy.pseudonym(what_is_there)}"'


def test_settings_shown_to_people_carry_no_secret_in_a_url():
    settings = Settings(
        alert_webhook_url="https://hooks.slack.com/services/T000/B000/XXXXSECRET",
        translation_http_url="https://translator:hunter2@mt.example.com:5000/?api_key=abc",
    )
    shown = json.dumps(settings.public_view())
    assert "XXXXSECRET" not in shown and "hunter2" not in shown and "abc" not in shown
    assert settings.public_view()["alert_webhook_url"] == "https://hooks.slack.com/…"
    translator = HttpTranslator(settings.translation_http_url)
    assert translator.version == "libretranslate@https://mt.example.com:5000/"


def test_local_key_file_is_created_once_and_private(tmp_path):
    path = tmp_path / "keys" / "pseudonym.key"
    first = PrivacyResource(pseudonym_key_file=str(path)).pseudonym("user-1")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert PrivacyResource(pseudonym_key_file=str(path)).pseudonym("user-1") == first
    with pytest.raises(ValueError, match="PRIVACY_PSEUDONYM_KEY"):
        PrivacyResource().pseudonym("user-1")
    assert [p.name for p in path.parent.iterdir()] == ["pseudonym.key"]  # no partial left
    # An empty key file (a crash between create and write, before the key was written in
    # full first) would make every pseudonym anyone's to compute: refused.
    path.write_text("")
    with pytest.raises(ValueError, match="is empty"):
        PrivacyResource(pseudonym_key_file=str(path)).pseudonym("user-1")
    # A configured key that is blank, short or an example's placeholder is as guessable
    # (`" "` was accepted).
    for guessable in (" ", "secret", "  short-key \n  ", "change-me-compose-pseudonym-key"):
        with pytest.raises(ValueError, match="placeholder or has fewer than 16 characters"):
            PrivacyResource(pseudonym_key=guessable).pseudonym("user-1")


# -- end to end ------------------------------------------------------------------------------


def test_no_raw_pii_in_any_analytics_table_and_pseudonyms_are_stable(tmp_path, mongo_server):
    spec = SampleSpec(days=2, conversations=80, users=12, seed=7, with_bad_records=False)
    runs = {}
    for label, key in (("first", KEY), ("again", KEY), ("new_key", "another-pseudonym-key")):
        root = tmp_path / label
        planted = _export_with_pii(root / "export", spec)
        defs, lake, mongo = _definitions(
            root, mongo_server, f"privacy_e2e_{label}", key=key,
            keep_user_mapping=label == "again",
        )  # fmt: skip
        result = defs.resolve_job_def("ingestion_job").execute_in_process(
            instance=DagsterInstance.ephemeral(), tags=range_tags(spec.start, spec.end)
        )
        assert result.success
        runs[label] = (lake, mongo, result)
    lake, mongo, result = runs["first"]
    values = list(PLANTED.values())
    raw_ids = {c["user_id"] for c in planted["data"].conversations if c["user_id"]}

    tables = _analytics_tables(lake)
    assert {"conversation_messages", "conversations", "daily_report"} <= set(tables)
    for table, frame in tables.items():
        text = "\n".join(_strings(frame))
        assert not [v for v in values if v in text], table
        assert not [u for u in raw_ids if f'"{u}"' in text], table  # ids only as pseudonyms
        for column, dtype in frame.schema.items():
            if dtype == pl.String():
                assert not any(detect(frame[column])), (table, column)
    for name, documents in _collections(mongo).items():
        text = "\n".join(documents)
        assert not [v for v in values if v in text], name
        assert not [u for u in raw_ids if f'"{u}"' in text], name
    # The raw table is the one place that keeps what the source said.
    raw = "\n".join(read_asset(lake, "nocodb_raw_pages")["record"])
    assert all(value in raw for value in values) and EMAIL_USER in raw

    # Every planted value was found and counted; the bad record's card too.
    metadata = {
        m.asset_key.path[-1]: m.metadata
        for m in result.asset_materializations_for_node("validated_records")
    }
    assert sum(metadata["conversation_messages"]["run/pii_findings"].data.values()) == len(
        planted["planted"]
    )
    assert metadata["processing_errors"]["run/pii_findings"].data == {"CARD": 1}
    assert metadata["conversation_headers"]["run/pii_findings"].data == {"EMAIL": 1, "PHONE": 1}
    checks = {
        (e.asset_key.path[-1], e.check_name): e.passed for e in result.get_asset_check_evaluations()
    }
    for asset in (
        "conversation_messages",
        "conversation_headers",
        "processing_errors",
        "conversation_translations",
    ):
        assert checks[(asset, "no_raw_pii")], asset
    assert checks[("mongo_mirror", "no_raw_pii_in_collections")]
    for asset in ("conversations", "conversation_analytics", "user_analytics"):
        assert checks[(asset, "user_ids_pseudonymized")], asset
    for asset in ("conversations", "conversation_messages"):
        assert checks[(asset, "no_pii_in_ids")], asset

    def users_by_conversation(label):
        frame = read_asset(runs[label][0], "conversations")
        return dict(frame.select("conversation_id", "user_id").iter_rows())

    # The mapping exists only where the deployment keeps it, and only in the restricted table.
    assert "user_pseudonyms" not in lake.lake().tables()
    mapping = read_asset(runs["again"][0], "user_pseudonyms")
    assert set(mapping["user_id"]) == raw_ids
    assert dict(mapping.select("user_id", "user_pseudonym").unique().iter_rows()) == {
        user: PrivacyResource(pseudonym_key=KEY).pseudonym(user) for user in raw_ids
    }
    first = users_by_conversation("first")
    assert all(pl.Series(list(first.values())).str.contains(USER_PSEUDONYM_PATTERN))
    assert users_by_conversation("again") == first  # stable across runs
    changed = users_by_conversation("new_key")
    assert first.keys() == changed.keys()
    assert not set(first.values()) & set(changed.values())  # a new key, new pseudonyms
    # Joins survive: one raw user is one pseudonym.
    assert len(set(first.values())) == len({c["user_id"] for c in planted["data"].conversations
                                            if c["user_id"]})  # fmt: skip


def test_no_raw_id_or_text_reaches_dagsters_event_log(tmp_path, mongo_server):
    """Materialization and output metadata are kept in Dagster's run storage, beyond the
    reach of erasure: no raw user id and no planted value may be in it. (The lake IO
    manager used to add a preview of the restricted raw table, record JSON included.)"""
    from dagster import instance_for_test

    spec = SampleSpec(days=2, conversations=60, users=10, seed=11, with_bad_records=False)
    planted = _export_with_pii(tmp_path / "export", spec)
    defs, _, _ = _definitions(tmp_path, mongo_server, "privacy_event_log", key=KEY)
    raw_ids = {c["user_id"] for c in planted["data"].conversations if c["user_id"]}
    (tmp_path / "dagster_home").mkdir()
    with instance_for_test(temp_dir=str(tmp_path / "dagster_home")) as instance:
        result = defs.resolve_job_def("ingestion_job").execute_in_process(
            instance=instance, tags=range_tags(spec.start, spec.end)
        )
        assert result.success
        stored = "\n".join(str(record) for record in instance.all_logs(result.run_id))
    assert "nocodb_raw_pages" in stored and "preview" in stored
    assert EMAIL_USER not in stored
    assert not [user for user in raw_ids if user in stored]
    assert not [value for value in PLANTED.values() if value in stored]
    # Nor pseudonyms or what people wrote (even anonymized): an erasure could not remove
    # them from there.
    pseudonym = PrivacyResource(pseudonym_key=KEY).pseudonymizer()
    assert not [user for user in raw_ids if pseudonym(user) in stored]
    texts = [m["content"][:40] for m in planted["data"].messages if len(m["content"] or "") > 40]
    assert texts and not [text for text in texts if text in stored]


def _pii_checks_of(job):
    """The job's two raw-PII checks (the lake's and the MongoDB copies') and nothing else."""
    return job.get_subset(
        asset_check_selection={
            AssetCheckKey(AssetKey("conversation_messages"), "no_raw_pii"),
            AssetCheckKey(AssetKey("mongo_mirror"), "no_raw_pii_in_collections"),
        },
        asset_selection=set(),
    )


def test_the_pii_check_fails_when_raw_pii_slips_into_a_collection(tmp_path, mongo_server):
    spec = SampleSpec(days=1, conversations=20, users=5, seed=11, with_bad_records=False)
    _export_with_pii(tmp_path / "export", spec)
    defs, _lake, mongo = _definitions(tmp_path, mongo_server, "privacy_check_trip")
    instance = DagsterInstance.ephemeral()
    job = defs.resolve_job_def("ingestion_job")
    assert job.execute_in_process(instance=instance, partition_key="2026-11-01").success
    # Someone writes raw text straight into the collection, past the pipeline.
    document = mongo.db()["conversation_messages"].find_one()
    mongo.db()["conversation_messages"].update_one(
        {"_id": document["_id"]}, {"$set": {"content": f"call {PLANTED['PHONE']}"}}
    )
    # The lake's check still passes (the lake is clean); the collections' check finds it.
    checked = _pii_checks_of(job).execute_in_process(
        instance=instance, partition_key="2026-11-01", raise_on_error=False
    )
    assert not checked.success  # blocking: raw PII in a served copy fails the run
    evaluations = {e.check_name: e for e in checked.get_asset_check_evaluations()}
    assert evaluations["no_raw_pii"].passed
    evaluation = evaluations["no_raw_pii_in_collections"]
    assert not evaluation.passed
    assert evaluation.metadata["raw_pii_by_type"].data == {"PHONE": 1}
    # The metadata says where, never what.
    assert PLANTED["PHONE"] not in json.dumps({k: str(v) for k, v in evaluation.metadata.items()})


def _two_day_run_with_a_value_planted_on_the_second(
    tmp_path, mongo_server, database: str, table: str, column: str, value: str
):
    """A two-day `ingestion_job` run over the export with PII, then `value` written into
    `column` of the second day's first row of `table` in the lake, past the pipeline.
    Returns the spec, the job, its instance and the MongoDB resource."""
    spec = SampleSpec(days=2, conversations=20, users=5, seed=11, with_bad_records=False)
    _export_with_pii(tmp_path / "export", spec)
    defs, lake_manager, mongo = _definitions(tmp_path, mongo_server, database)
    instance = DagsterInstance.ephemeral()
    job = defs.resolve_job_def("ingestion_job")
    assert job.execute_in_process(instance=instance, tags=range_tags(spec.start, spec.end)).success
    second = spec.start + timedelta(days=1)
    lake = lake_manager.lake()
    stored, _ = lake.read_days(table, [second])
    planted = stored.head(1).with_columns(pl.lit(value).alias(column))
    lake.write_day(table, second, pl.concat([planted, stored.slice(1)]))
    return spec, job, instance, mongo


def test_in_a_range_run_only_the_day_holding_raw_pii_fails_its_checks(tmp_path, mongo_server):
    """Raw PII on the second day of a two-day run, in the lake and in its MongoDB copy: the
    checks scanned the run's days together and failed both days, with row numbers counted
    through both, so nobody could tell which day to rebuild."""
    spec, job, instance, mongo = _two_day_run_with_a_value_planted_on_the_second(
        tmp_path, mongo_server, "privacy_check_days",
        tables.CONVERSATION_MESSAGES, "content", f"call {PLANTED['PHONE']}",
    )  # fmt: skip
    second = spec.start + timedelta(days=1)
    document = mongo.db()["conversation_messages"].find_one({"day": second.isoformat()})
    mongo.db()["conversation_messages"].update_one(
        {"_id": document["_id"]}, {"$set": {"content": f"ring {PLANTED['PHONE']}"}}
    )
    checked = _pii_checks_of(job).execute_in_process(
        instance=instance, tags=range_tags(spec.start, spec.end), raise_on_error=False
    )
    verdicts = {
        (e.check_name, e.partition): (e.passed, e.metadata["raw_pii_by_type"].data)
        for e in checked.get_asset_check_evaluations()
    }
    assert verdicts == {
        ("no_raw_pii", spec.start.isoformat()): (True, {}),
        ("no_raw_pii", second.isoformat()): (False, {"PHONE": 1}),
        ("no_raw_pii_in_collections", spec.start.isoformat()): (True, {}),
        ("no_raw_pii_in_collections", second.isoformat()): (False, {"PHONE": 1}),
    }


def test_a_source_whose_ids_hold_personal_data_gets_a_warning_that_says_where_not_what(
    tmp_path, mongo_server
):
    """Ids are kept as the source writes them (every table joins back to NocoDB by them), so
    an email address used as a conversation id reaches the lake, MongoDB and the API. The
    check cannot repair that; it warns, on the day it is found, without stopping the run."""
    address = "alice.walker@example.com"
    spec, job, instance, _ = _two_day_run_with_a_value_planted_on_the_second(
        tmp_path, mongo_server, "privacy_id_check",
        tables.CONVERSATIONS, "conversation_id", f"conv-{address}",
    )  # fmt: skip
    second = spec.start + timedelta(days=1)
    checked = job.get_subset(
        asset_check_selection={AssetCheckKey(AssetKey("conversations"), "no_pii_in_ids")},
        asset_selection=set(),
    ).execute_in_process(instance=instance, tags=range_tags(spec.start, spec.end))
    assert checked.success  # a warning: the source's design, not this run's fault
    verdicts = {
        e.partition: (e.passed, e.severity, e.metadata["raw_pii_by_type"].data)
        for e in checked.get_asset_check_evaluations()
    }
    assert verdicts == {
        spec.start.isoformat(): (True, AssetCheckSeverity.WARN, {}),
        second.isoformat(): (False, AssetCheckSeverity.WARN, {"EMAIL": 1}),
    }
    (flagged,) = [e for e in checked.get_asset_check_evaluations() if not e.passed]
    assert flagged.metadata["where"].data == ["lake.conversation_id row 0: EMAIL"]
    assert address not in json.dumps({k: str(v) for k, v in flagged.metadata.items()})


# -- retention -------------------------------------------------------------------------------


def _ttl_seconds(db) -> list[int]:
    return [
        index["expireAfterSeconds"]
        for index in db["conversation_messages"].index_information().values()
        if "expireAfterSeconds" in index
    ]


def test_retention_drops_old_days_in_the_lake_and_mongodb(tmp_path, mongo_server):
    defs, lake_manager, mongo = _definitions(tmp_path, mongo_server, "privacy_retention")
    lake, db = lake_manager.lake(), mongo.db()
    mirrors = mirrors_of(defs)
    days = [date(2026, 11, 1) + timedelta(days=n) for n in range(5)]
    for day in days:
        frame = pl.DataFrame({"message_id": [f"m-{day}"], "day": [day]})
        lake.write_day("conversation_messages", day, frame)
        lake.write_day("conversations", day, frame)
        db["conversation_messages"].update_one(
            {"_id": f"m-{day}"}, {"$set": {"day": day.isoformat()}}, upsert=True
        )
        # A day's key list (storage/day_index.py) expires with its day.
        db["day_index"].insert_one(
            {"_id": f"conversation_messages:{day}", "collection": "conversation_messages",
             "day": day.isoformat(), "keys": [[0, f"m-{day}"]]}
        )  # fmt: skip
    today = days[-1]
    for day in days:  # cluster examples quote messages: they expire with them
        lake.write_day("topic_discovery", day, pl.DataFrame({"cluster": [0], "day": [day]}))
    result = apply_retention(lake, db, {"conversation_messages": 2}, today, mirrors)
    assert lake.days_present("topic_discovery") == days[2:]
    assert sorted(d["day"] for d in db["day_index"].find()) == [d.isoformat() for d in days[2:]]
    assert lake.days_present("conversation_messages") == days[2:]
    assert lake.days_present("conversations") == days  # not configured: keeps every day
    assert sorted(d["day"] for d in db["conversation_messages"].find()) == [
        d.isoformat() for d in days[2:]
    ]
    assert result.lake_days_removed == {"conversation_messages": 2, "topic_discovery": 2}
    assert result.mongo_documents_removed == {"conversation_messages": 2}
    assert _ttl_seconds(db) == [2 * 86400]
    again = apply_retention(lake, db, {"conversation_messages": 2}, today, mirrors)
    assert again.lake_days_removed == {"conversation_messages": 0, "topic_discovery": 0}
    apply_retention(lake, db, {"conversation_messages": 30}, today, mirrors)
    assert _ttl_seconds(db) == [30 * 86400]  # follows the configuration, one index
    with pytest.raises(ValueError, match="at least 1 day"):
        apply_retention(lake, db, {"conversation_messages": 0}, today, mirrors)
    # The errors expire whoever wrote them: the asset (stage validate) or the IO manager,
    # for a document MongoDB refused (stage store, which never expired).
    for day in days:
        lake.write_day("processing_errors", day, pl.DataFrame({"record_key": ["1"], "day": [day]}))
        for stage in ("validate", "store"):
            db["processing_errors"].insert_one(
                {"_id": f"messages:{stage}:1:{day}", "stage": stage, "day": day.isoformat(),
                 "conversation_id": "c-1", "table": "messages"}
            )  # fmt: skip
    errors = apply_retention(lake, db, {"processing_errors": 2}, today, mirrors)
    assert errors.mongo_documents_removed == {"processing_errors": 4}
    assert sorted(d["day"] for d in db["processing_errors"].find()) == sorted(
        [d.isoformat() for d in days[2:]] * 2
    )

    # The scheduled asset applies the deployment's retention (relative to today: all of the
    # sample's days are older than a day).
    resources = defs.get_repository_def().get_top_level_resources()
    materialized = materialize(
        [privacy_retention],
        resources={
            "privacy": PrivacyResource(pseudonym_key=KEY, retention_days={"conversations": 1}),
            "mongo": mongo,
            "lake": resources["lake"],
        },
    )
    assert materialized.success
    metadata = materialized.asset_materializations_for_node("privacy_retention")[0].metadata
    assert metadata["lake_days_removed"].data == {"conversations": 5}
    assert lake.days_present("conversations") == []
    assert "privacy_retention_job_schedule" in {s.name for s in defs.schedules}


# -- erasure ---------------------------------------------------------------------------------


def _lake_fingerprint(lake) -> dict[str, str]:
    root = lake.lake().base_path
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*.parquet"))
    }


def _mongo_fingerprint(mongo) -> dict[str, list[str]]:
    return {name: sorted(docs) for name, docs in _collections(mongo).items()}


def test_erasure_removes_a_user_everywhere_and_the_reports_reconcile(tmp_path, mongo_server):
    spec = SampleSpec(days=8, conversations=400, users=30, seed=21, with_bad_records=True)
    planted = _export_with_pii(tmp_path / "export", spec)
    data = planted["data"]
    defs, lake, mongo = _definitions(tmp_path, mongo_server, "privacy_erasure")
    instance = DagsterInstance.ephemeral()
    assert (
        defs.resolve_job_def("ingestion_job")
        .execute_in_process(instance=instance, tags=range_tags(spec.start, spec.end))
        .success
    )
    for job, key in (("weekly_report_job", "2026-11-02"), ("monthly_report_job", "2026-11-01")):
        assert (
            defs.resolve_job_def(job)
            .execute_in_process(instance=instance, partition_key=key)
            .success
        )

    user_id = _busiest_user(data)
    privacy = PrivacyResource(pseudonym_key=KEY)
    pseudonym = privacy.pseudonym(user_id)
    ids = {c["conversation_id"] for c in data.conversations if c["user_id"] == user_id}
    before = read_asset(lake, "daily_report").select("day", "conversations")
    assert pseudonym in read_asset(lake, "conversations")["user_id"].to_list()
    # One of their conversations rejected for a blank conversation id, as the mirror writes
    # it: nothing but the record names them (it stayed in MongoDB after an erasure).
    rejected = {
        "table": "conversations", "stage": "validate", "record_key": "9999", "day": "2026-11-03",
        "conversation_id": None, "reason": "missing conversation_id",
        "record": json.dumps({"conversation_id": " ", "user_id": pseudonym, "Id": 9999}),
    }  # fmt: skip
    mongo.db()["processing_errors"].insert_one(
        {"_id": "conversations:validate:9999:2026-11-03", **rejected}
    )

    audit = run_erasure(defs, instance, pseudonym, requested_by="privacy-team", reason="T-1")

    # Nothing of theirs remains, in any table or collection, restricted ones included.
    for table in lake.lake().tables():
        frame = lake.lake().scan_all(table).collect()
        text = "\n".join(_strings(frame))
        assert pseudonym not in text, table
        assert not [i for i in ids if f'"{i}"' in text or f'\\"{i}\\"' in text], table
        assert f'\\"{user_id}\\"' not in text, table
    for name, documents in _collections(mongo).items():
        text = "\n".join(documents)
        assert pseudonym not in text and not [i for i in ids if f'"{i}"' in text], name

    # The audit record: who, when, how much; nothing that identifies the user.
    stored = mongo.db()[AUDIT_COLLECTION].find_one({"_id": audit["_id"]})
    assert stored["requested_by"] == "privacy-team" and stored["outcome"] == "erased"
    assert stored["conversations"] == len(ids)
    assert stored["mongo_documents_removed"]["conversation_messages"] > 0
    assert stored["lake_rows_removed"]["conversation_messages"] > 0
    assert stored["raw_records_tombstoned"] > 0
    serialized = json.dumps(stored, default=str)
    assert pseudonym not in serialized and user_id not in serialized
    assert not [i for i in ids if i in serialized]

    # The reports were rebuilt: each day matches what remains, periods match their days.
    analytics = read_asset(lake, "conversation_analytics")
    daily = read_asset(lake, "daily_report")
    per_day = dict(analytics.group_by("day").len().iter_rows())
    for row in daily.iter_rows(named=True):
        assert row["conversations"] == per_day.get(row["day"], 0), row["day"]
        assert pseudonym not in row["user_ids"]
    erased_total = before["conversations"].sum() - daily["conversations"].sum()
    assert 0 < erased_total <= len(ids)
    assert daily["conversations"].sum() == analytics.height
    days = {row["day"]: row for row in daily.iter_rows(named=True)}
    week = read_asset(lake, "weekly_report").row(0, named=True)
    week_days = [days[date(2026, 11, 2) + timedelta(days=n)] for n in range(7)]
    assert reconciliation_verdict(week, week_days).passed
    month = read_asset(lake, "monthly_report").row(0, named=True)
    assert reconciliation_verdict(month, list(days.values())).passed
    mongo_week = mongo.db()["analytics_reports"].find_one({"_id": "weekly:2026-11-02"})
    assert mongo_week["conversations"] == week["conversations"]

    # Again: nothing to erase, nothing changes, no report to rebuild.
    lake_before, mongo_before = _lake_fingerprint(lake), _mongo_fingerprint(mongo)
    repeat = run_erasure(defs, instance, pseudonym, requested_by="privacy-team")
    assert repeat["outcome"] == "nothing to erase" and repeat["conversations"] == 0
    assert not any(repeat["lake_rows_removed"].values())
    assert not any(repeat["mongo_documents_removed"].values())
    assert repeat["reports_to_rebuild"] == {
        "daily_report": [], "weekly_report": [], "monthly_report": []
    }  # fmt: skip
    assert _lake_fingerprint(lake) == lake_before and _mongo_fingerprint(mongo) == mongo_before

    # The source still holds the user's records: pulling their days again keeps them out.
    first_day = min(
        date.fromisoformat(c["started_at"][:10])
        for c in data.conversations
        if c["user_id"] == user_id and c["started_at"]
    )
    pulled = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=instance, partition_key=first_day.isoformat()
    )
    assert pulled.success
    raw_metadata = pulled.asset_materializations_for_node("nocodb_raw_pages")[0].metadata
    assert raw_metadata["erased_records_skipped"].value > 0
    assert pseudonym not in read_asset(lake, "conversations")["user_id"].to_list()

    # The daemon's path: the sensor leaves inline rebuilds alone.
    run = instance.get_run_by_id(audit["_id"])
    context = build_run_status_sensor_context(
        sensor_name=erasure_report_rebuild_sensor.name,
        dagster_instance=instance,
        dagster_run=run,
        dagster_event=next(
            e.dagster_event
            for e in instance.all_logs(run.run_id)
            if e.dagster_event and e.dagster_event.event_type_value == "PIPELINE_SUCCESS"
        ),
        resources={"mongo": mongo},
    )
    assert "rebuilt its reports itself" in str(erasure_report_rebuild_sensor(context))


def test_an_erasure_after_retention_removed_the_raw_pages_keeps_the_user_out_of_a_pull(
    tmp_path, mongo_server
):
    """Raw pages kept for less time than the analytics (the docs' own example: raw 30 days,
    messages 90): the erasure found no raw record of the expired days to tombstone, and a
    pull of such a day brought the user's conversations, texts and pseudonym back."""
    spec = SampleSpec(days=3, conversations=150, users=10, seed=5)
    data = generate_sample(spec)
    write_export(data, tmp_path / "export")
    defs, lake, mongo = _definitions(tmp_path, mongo_server, "privacy_expired_raw")
    instance = DagsterInstance.ephemeral()
    ingestion = defs.resolve_job_def("ingestion_job")
    assert ingestion.execute_in_process(
        instance=instance, tags=range_tags(spec.start, spec.end)
    ).success
    # Retention removes every day's raw pages and messages; the analytics stay.
    after_the_last_day = spec.end + timedelta(days=2)
    expire = {"nocodb_raw_pages": 1, "conversation_messages": 1}
    apply_retention(lake.lake(), mongo.db(), expire, after_the_last_day, mirrors_of(defs))
    assert lake.lake().days_present("nocodb_raw_pages") == []

    user_id = _busiest_user(data)
    pseudonym = PrivacyResource(pseudonym_key=KEY).pseudonym(user_id)
    theirs = {c["conversation_id"] for c in data.conversations if c["user_id"] == user_id}
    audit = run_erasure(defs, instance, pseudonym, requested_by="dpo", reason="T-3")
    assert audit["outcome"] == "erased" and audit["raw_records_tombstoned"] == 0

    pulled = ingestion.execute_in_process(instance=instance, tags=range_tags(spec.start, spec.end))
    assert pulled.success
    assert pseudonym not in read_asset(lake, "conversations")["user_id"].to_list()
    pulled_back = set(read_asset(lake, "conversation_messages")["conversation_id"]) & theirs
    assert not pulled_back
    assert set(read_asset(lake, "conversation_headers")["conversation_id"]).isdisjoint(theirs)
    # Everyone else's came back from the source as before.
    others = {c["conversation_id"] for c in data.conversations if c["user_id"] != user_id}
    assert others <= set(read_asset(lake, "conversation_messages")["conversation_id"])


def test_erasure_leaves_the_subject_out_of_dagsters_run_storage(tmp_path, mongo_server):
    """Run configs and event logs stay in Dagster's storage, out of an erasure's reach: the
    job is given a request id, never the pseudonym, and the request (the one place that
    names the subject) is deleted once the erasure is done. (The erasure runs on an instance
    of its own: the ingestion's materializations preview rows, pseudonyms included.)"""
    from dagster import instance_for_test

    spec = SampleSpec(days=2, conversations=60, users=10, seed=5, with_bad_records=False)
    data = generate_sample(spec)
    write_export(data, tmp_path / "export")
    defs, lake, mongo = _definitions(tmp_path, mongo_server, "privacy_erasure_request")
    user_id = _busiest_user(data)
    pseudonym = PrivacyResource(pseudonym_key=KEY).pseudonym(user_id)
    assert (
        defs.resolve_job_def("ingestion_job")
        .execute_in_process(
            instance=DagsterInstance.ephemeral(), tags=range_tags(spec.start, spec.end)
        )
        .success
    )
    assert pseudonym in read_asset(lake, "conversations")["user_id"].to_list()
    home = tmp_path / "dagster_home"
    home.mkdir()
    with instance_for_test(temp_dir=str(home)) as instance:
        audit = run_erasure(defs, instance, pseudonym, requested_by="dpo", reason="T-9")

        stored = "\n".join(
            f"{json.dumps(r.run_config)}\n{r.tags}\n"
            + "\n".join(str(record) for record in instance.all_logs(r.run_id))
            for r in instance.get_runs()
        )
        assert pseudonym not in stored and user_id not in stored
        run = instance.get_run_by_id(audit["_id"])
        request_id = run.run_config["ops"]["erase_user_data"]["config"]["request_id"]
        # A request carried out is gone: launching the job with its id again fails.
        again = defs.resolve_job_def("erase_user_job").execute_in_process(
            run_config={"ops": {"erase_user_data": {"config": {"request_id": request_id}}}},
            instance=instance,
            raise_on_error=False,
        )
        assert not again.success
    assert request_id in stored and "erase_user_job" in stored
    # The instance's files themselves (SQLite run and event storage, whatever else).
    files = b"".join(path.read_bytes() for path in sorted(home.rglob("*")) if path.is_file())
    assert request_id.encode() in files  # what a grep of the run config finds
    assert pseudonym.encode() not in files and user_id.encode() not in files

    # The erasure happened, was audited, and its request is deleted.
    assert audit["outcome"] == "erased" and audit["requested_by"] == "dpo"
    assert audit["reason"] == "T-9"
    assert pseudonym not in read_asset(lake, "conversations")["user_id"].to_list()
    db = mongo.db()
    assert db["conversation_analytics"].count_documents({"user_id": pseudonym}) == 0
    assert db[REQUESTS_COLLECTION].count_documents({}) == 0
    # A request takes a pseudonym: a raw user id is refused (and not repeated).
    with pytest.raises(ValueError, match="pseudonym") as refused:
        submit_request(db, user_id, requested_by="dpo")
    assert user_id not in str(refused.value)
    assert db[REQUESTS_COLLECTION].count_documents({}) == 0


def test_report_rebuild_requests_days_first_then_periods():
    requests = report_run_requests(
        "run-1",
        {
            "daily_report": ["2026-11-02", "2026-11-03", "2026-11-04", "2026-11-09"],
            "weekly_report": ["2026-11-02"],
            "monthly_report": ["2026-11-01"],
        },
    )
    assert [(r.job_name, r.partition_key) for r in requests] == [
        ("daily_report_job", None),
        ("daily_report_job", None),
        ("weekly_report_job", "2026-11-02"),
        ("monthly_report_job", "2026-11-01"),
    ]
    # Contiguous days in one single-run backfill.
    assert requests[0].tags["dagster/asset_partition_range_start"] == "2026-11-02"
    assert requests[0].tags["dagster/asset_partition_range_end"] == "2026-11-04"
    assert requests[1].tags["dagster/asset_partition_range_end"] == "2026-11-09"
    assert len({r.run_key for r in requests}) == 4


def test_erasure_scrubs_cluster_examples_and_finds_days_built_before_pseudonyms(
    tmp_path, mongo_server
):
    from analytics_assets.defs.storage.lake import ParquetLakeIOManager
    from analytics_assets.defs.storage.resources import MongoResource

    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake")).lake()
    day = date(2026, 11, 3)
    privacy = PrivacyResource(pseudonym_key=KEY)
    theirs = privacy.pseudonym("user-1")
    lake.write_day("conversations", day, pl.DataFrame(
        {"conversation_id": ["c-1", "c-2"], "user_id": [theirs, "u_other"], "day": [day] * 2}
    ))  # fmt: skip
    lake.write_day("conversation_messages", day, pl.DataFrame(
        {"conversation_id": ["c-1", "c-2"], "content": ["my router <IP> drops", "other text"],
         "day": [day] * 2}
    ))  # fmt: skip
    lake.write_day("topic_discovery", day, pl.DataFrame(
        {"cluster": [0], "examples": [["my router <IP> drops", "other text"]],
         "example": ["my router <IP> drops"], "day": [day]}
    ))  # fmt: skip
    # A day built before pseudonyms existed: the source's id, known from the raw table.
    lake.write_day("nocodb_raw_pages", day, pl.DataFrame(
        {"table": ["conversations"], "record_id": ["1"], "day": [day],
         "record": [json.dumps({"conversation_id": "c-1", "user_id": "user-1"})]}
    ))  # fmt: skip
    lake.write_day("user_analytics", day, pl.DataFrame(
        {"user_id": ["user-1", "u_other"], "day": [day] * 2}
    ))  # fmt: skip
    eraser = _eraser(lake, MongoResource(uri=mongo_server, database="privacy_examples").db(),
                     privacy)  # fmt: skip
    result = eraser.erase(theirs)
    clusters = lake.scan_all("topic_discovery").collect()
    assert clusters["examples"].to_list() == [["other text"]]
    assert clusters["example"].to_list() == ["other text"]
    assert result.lake_rows["topic_discovery (examples scrubbed)"] == 1
    assert lake.scan_all("conversations").collect()["conversation_id"].to_list() == ["c-2"]
    assert lake.scan_all("user_analytics").collect()["user_id"].to_list() == ["u_other"]
    assert lake.scan_all("nocodb_raw_pages").collect().is_empty()


def test_a_rejected_record_is_read_as_written_whatever_it_holds():
    """A number too long for a double is searched as written (a card number in a float
    column read as 6.011e+18 was not found); a JSON column's keys are searched too; an
    unpaired surrogate in a user id (sent as a \\ud800 escape) is a pseudonym, not a crash,
    the same as its conversation's; a record nested deeper than it can be written again is
    anonymized as text."""
    privacy = PrivacyResource(pseudonym_key=KEY)
    nested = '{"a": ' * 400 + '"mail me bob@example.com"' + "}" * 400
    records = pl.Series(
        "record",
        [
            '{"card": 6011111111111111110.0, "big": 1e400, "written": 1E5, "n": NaN}',
            '{"attachments": {"bob@example.com": true}}',
            nested,
        ],
    )
    errors = pl.DataFrame({"table": ["messages"] * 3, "reason": ["r"] * 3, "record": records})
    anonymized, counts = privacy.anonymize_table(tables.PROCESSING_ERRORS, errors)
    first, second, third = anonymized["record"].to_list()
    assert "6011111111111111110" not in first and '"big": 1e400, "written": 1E5' in first
    assert second == '{"attachments": {"<EMAIL>": true}}'
    assert "bob@example.com" not in third
    assert counts == {"CARD": 1, "EMAIL": 2}

    cut = pl.DataFrame({"table": ["conversations"], "record": ['{"customer": "u-17\\ud800 "}']})
    swapped = json.loads(privacy.pseudonymize_records(cut, user_field="customer")["record"][0])
    assert swapped["customer"] == privacy.pseudonym("u-17")


class _FailingLake:
    """A lake whose `nth` rewrite of a day of `table` fails (the process dies there)."""

    def __init__(self, lake, table: str, nth: int):
        self._lake, self._table, self._left = lake, table, nth

    def write_day(self, table, day, frame):
        if table == self._table:
            self._left -= 1
            if self._left == 0:
                raise OSError(f"killed while rewriting {table}")
        return self._lake.write_day(table, day, frame)

    def __getattr__(self, name):
        return getattr(self._lake, name)


class _FailingDatabase:
    """A MongoDB database whose deletes from `collection` fail (the server went away)."""

    def __init__(self, db, collection: str):
        self._db, self._collection = db, collection

    def __getitem__(self, name):
        collection = self._db[name]
        if name != self._collection:
            return collection

        class Failing:
            def delete_many(self, *args, **kwargs):
                raise ConnectionError(f"MongoDB went away deleting from {name}")

            def __getattr__(self, attribute):
                return getattr(collection, attribute)

        return Failing()

    def __getattr__(self, name):
        return getattr(self._db, name)


@pytest.mark.parametrize(
    "failure",
    [("lake", "nocodb_raw_pages", 2), ("mongo", "conversation_messages", None)],
    ids=["killed-rewriting-the-raw-table", "mongodb-lost-deleting-messages"],
)
def test_an_erasure_that_fails_halfway_is_resumed_and_leaves_nothing(
    tmp_path, mongo_server, failure
):
    """A second attempt used to find the rows the first one deleted gone: the raw records
    already removed were never tombstoned (a pull brought them back), the days already
    rewritten were not rebuilt (the reports kept the pseudonym), and after a failure in
    MongoDB the user's messages stayed there while the request was closed as done."""
    from analytics_assets.privacy.erasure import Eraser, tombstones

    spec = SampleSpec(days=4, conversations=120, users=8, seed=33, with_bad_records=False)
    data = generate_sample(spec)
    write_export(data, tmp_path / "export")
    defs, lake, mongo = _definitions(tmp_path, mongo_server, f"privacy_resume_{failure[0]}")
    instance = DagsterInstance.ephemeral()
    ingestion = defs.resolve_job_def("ingestion_job")
    assert ingestion.execute_in_process(
        instance=instance, tags=range_tags(spec.start, spec.end)
    ).success
    user_id = _busiest_user(data)
    privacy = PrivacyResource(pseudonym_key=KEY)
    pseudonym = privacy.pseudonym(user_id)
    ids = {c["conversation_id"] for c in data.conversations if c["user_id"] == user_id}
    their_days = set(
        read_asset(lake, "conversations").filter(pl.col("user_id") == pseudonym)["day"]
    )
    assert len(their_days) >= 2
    assert pseudonym in read_asset(lake, "daily_report")["user_ids"].explode()

    # The first attempt dies halfway.
    db = mongo.db()
    request_id = submit_request(db, pseudonym, requested_by="dpo", reason="T-7")
    where, name, nth = failure
    eraser = Eraser(
        _FailingLake(lake.lake(), name, nth) if where == "lake" else lake.lake(),
        _FailingDatabase(db, name) if where == "mongo" else db,
        pseudonym_of=privacy.pseudonymizer(),
        digest=privacy.digester(),
        schema=defs.resources["record_source"].source_schema,
    )
    with pytest.raises((OSError, ConnectionError)):
        eraser.erase(pseudonym, request_id=request_id)
    assert db[REQUESTS_COLLECTION].count_documents({}) == 1

    # Erasing the user again resumes the same request.
    audit = run_erasure(defs, instance, pseudonym, requested_by="dpo", reason="T-7 again")
    assert (
        instance.get_run_by_id(audit["_id"]).run_config["ops"]["erase_user_data"]["config"][
            "request_id"
        ]
        == request_id
    )
    assert audit["outcome"] == "erased" and audit["reason"] == "T-7"
    assert audit["conversations"] == len(ids)
    assert db[REQUESTS_COLLECTION].count_documents({}) == 0
    # Run in this process, the daemon could not relaunch it: its failure must be alerted.
    assert instance.get_run_by_id(audit["_id"]).tags["dagster/max_retries"] == "0"

    # Nothing of theirs remains, in the lake or MongoDB.
    for table in lake.lake().tables():
        text = "\n".join(_strings(lake.lake().scan_all(table).collect()))
        assert pseudonym not in text, table
        assert not [i for i in ids if f'"{i}"' in text or f'\\"{i}\\"' in text], table
    for collection, documents in _collections(mongo).items():
        text = "\n".join(documents)
        assert pseudonym not in text and not [i for i in ids if f'"{i}"' in text], collection
    # Every raw record of theirs is tombstoned, and every day they were in was rebuilt.
    assert audit["raw_records_tombstoned"] >= len(ids)
    # A tombstone per raw record, and one per conversation (for days retention emptied).
    assert len(tombstones(lake.lake())) == audit["raw_records_tombstoned"] + len(ids)
    assert {date.fromisoformat(d) for d in audit["reports_to_rebuild"]["daily_report"]} >= (
        their_days
    )
    assert pseudonym not in read_asset(lake, "daily_report")["user_ids"].explode().to_list()
    # Done: erasing them again finds nothing and changes nothing.
    lake_before, mongo_before = _lake_fingerprint(lake), _mongo_fingerprint(mongo)
    repeat = run_erasure(defs, instance, pseudonym, requested_by="dpo")
    assert repeat["outcome"] == "nothing to erase" and repeat["raw_records_tombstoned"] == 0
    assert _lake_fingerprint(lake) == lake_before and _mongo_fingerprint(mongo) == mongo_before
    pulled = ingestion.execute_in_process(instance=instance, tags=range_tags(spec.start, spec.end))
    assert pulled.success
    raw_metadata = pulled.asset_materializations_for_node("nocodb_raw_pages")[0].metadata
    assert raw_metadata["erased_records_skipped"].value == audit["raw_records_tombstoned"]
    assert pseudonym not in read_asset(lake, "conversations")["user_id"].to_list()


def test_reports_left_unrebuilt_by_a_killed_erasure_are_rebuilt_when_it_is_run_again(
    tmp_path, mongo_server, monkeypatch
):
    """The erasure closes its request before the CLI rebuilds the reports: killed during
    the rebuilds, erasing the user again found nothing and rebuilt nothing, and the daily
    reports kept the pseudonym. And one attempt of a request runs at a time."""
    from analytics_assets.defs.privacy import jobs
    from analytics_assets.storage.leases import LEASES_COLLECTION, PartitionLeases

    spec = SampleSpec(days=3, conversations=60, users=6, seed=8, with_bad_records=False)
    data = generate_sample(spec)
    write_export(data, tmp_path / "export")
    defs, lake, mongo = _definitions(tmp_path, mongo_server, "privacy_unfinished_rebuild")
    instance = DagsterInstance.ephemeral()
    assert (
        defs.resolve_job_def("ingestion_job")
        .execute_in_process(instance=instance, tags=range_tags(spec.start, spec.end))
        .success
    )
    user_id = next(c["user_id"] for c in data.conversations if c["user_id"])
    pseudonym = PrivacyResource(pseudonym_key=KEY).pseudonym(user_id)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed while rebuilding the reports")

    with monkeypatch.context() as patched:
        patched.setattr(jobs, "report_run_requests", killed)
        with pytest.raises(KeyboardInterrupt):
            run_erasure(defs, instance, pseudonym, requested_by="dpo")
    assert pseudonym not in read_asset(lake, "conversations")["user_id"].to_list()
    assert pseudonym in read_asset(lake, "daily_report")["user_ids"].explode().to_list()

    again = run_erasure(defs, instance, pseudonym, requested_by="dpo")
    assert again["outcome"] == "nothing to erase"
    assert pseudonym not in read_asset(lake, "daily_report")["user_ids"].explode().to_list()
    audits = list(mongo.db()[AUDIT_COLLECTION].find())
    assert len(audits) == 2 and all(a["reports_rebuilt"] for a in audits)

    # A second attempt of a request while another holds it is refused; a killed attempt's
    # hold expires (it stops renewing it) and the next one goes ahead.
    request_id = submit_request(mongo.db(), pseudonym, requested_by="dpo")
    leases = mongo.db()[LEASES_COLLECTION]
    scope = f"{jobs.ERASURE_SCOPE}:{request_id}"
    PartitionLeases(leases, scope=scope, ttl_s=600).hold("live-run", [jobs.REQUEST_KEY])
    config = {"ops": {"erase_user_data": {"config": {"request_id": request_id}}}}
    job = defs.resolve_job_def("erase_user_job")
    second = job.execute_in_process(run_config=config, instance=instance, raise_on_error=False)
    assert not second.success
    failure = next(e for e in second.all_events if e.event_type_value == "STEP_FAILURE")
    assert "being carried out by run live-run" in str(failure.event_specific_data.error)
    leases.delete_many({})
    PartitionLeases(leases, scope=scope, ttl_s=0.001).hold("killed-run", [jobs.REQUEST_KEY])
    time.sleep(0.01)
    third = job.execute_in_process(run_config=config, instance=instance, raise_on_error=False)
    assert third.success
    assert leases.count_documents({}) == 0  # the erasure gave back what it held


def test_an_erasure_holds_the_days_it_rewrites_and_erases_what_was_written_back(mongo_server):
    """Nothing kept a day run off the days an erasure rewrote: a run that read the lake
    before the rewrite and wrote after it put the user's rows back, and the request was
    closed as done."""
    from analytics_assets.defs.storage.lake import ParquetLakeIOManager
    from analytics_assets.defs.storage.resources import MongoResource

    lake = ParquetLakeIOManager(base_url=str(Path(tempfile.mkdtemp()) / "lake")).lake()
    first, second = date(2026, 11, 3), date(2026, 11, 4)
    privacy = PrivacyResource(pseudonym_key=KEY)
    theirs = privacy.pseudonym("user-1")

    def rows(day, ids, users):
        return pl.DataFrame({"conversation_id": ids, "user_id": users, "day": [day] * len(ids)})

    lake.write_day("conversations", first, rows(first, ["c-1", "c-2"], [theirs, "u_other"]))
    lake.write_day("conversation_messages", first, pl.DataFrame(
        {"conversation_id": ["c-1"], "content": ["my order never came"], "day": [first]}
    ))  # fmt: skip
    # Written by the discovery job, which takes no day leases: scrubbed without holding.
    later = date(2026, 11, 9)
    lake.write_day("topic_discovery", later, pl.DataFrame(
        {"cluster": [0], "examples": [["my order never came", "other"]], "day": [later]}
    ))  # fmt: skip
    held: list[list[date]] = []

    def confirm_days(days):
        if not set(days) <= set(held[-1]):
            raise RuntimeError(f"rewrote {days} without holding them")

    @contextmanager
    def hold_days(days):
        held.append(days)
        if len(held) == 1:
            # A day run that was writing when the erasure asked for the days: it ends
            # (giving the lease) having written the user's conversation on the next day.
            lake.write_day("conversations", second, rows(second, ["c-1b"], [theirs]))
        yield

    class WritingBack:
        """The lake, with a run that holds no lease writing the user's row back to the
        first day right after the erasure rewrote it."""

        written = False

        def write_day(self, table, day, frame):
            lake.write_day(table, day, frame)
            if table == "conversations" and day == first and not self.written:
                self.written = True
                lake.write_day(table, day, rows(first, ["c-1", "c-2"], [theirs, "u_other"]))

        def __getattr__(self, name):
            return getattr(lake, name)

    eraser = _eraser(
        WritingBack(), MongoResource(uri=mongo_server, database="privacy_holding").db(), privacy
    )
    result = eraser.erase(theirs, hold_days=hold_days, confirm_days=confirm_days)
    # All the days at once: the second day found, the first is given back and both taken.
    assert held == [[first], [first, second]]
    assert lake.scan_all("topic_discovery").collect()["examples"].to_list() == [["other"]]
    left = lake.scan_all("conversations").collect()
    assert left["user_id"].to_list() == ["u_other"]
    assert result.conversations == 2 and result.changed_days == {first, second}
    assert result.lake_rows["conversations"] == 3
    assert lake.scan_all("conversation_messages").collect().is_empty()


def test_reports_a_stopped_cli_left_unrebuilt_are_requested_an_hour_later(mongo_server):
    from dagster import DagsterRun, DagsterRunStatus, instance_for_test
    from pymongo import MongoClient

    from analytics_assets.defs.privacy.jobs import RUN_KEY_TAG, abandoned_rebuild_requests

    db = MongoClient(mongo_server)["privacy_abandoned_rebuilds"]
    now = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
    reports = {"daily_report": ["2026-11-02"], "weekly_report": ["2026-11-02"]}
    db[AUDIT_COLLECTION].insert_many([
        {"_id": "stopped", "reports_rebuilt": False, "reports_to_rebuild": reports,
         "finished_at": (now - timedelta(hours=2)).isoformat()},
        # Still rebuilding: an hour's work, but its last rebuild finished 5 minutes ago.
        {"_id": "still-rebuilding", "reports_rebuilt": False, "reports_to_rebuild": reports,
         "finished_at": now - timedelta(hours=2), "rebuilt_at": now - timedelta(minutes=5)},
        {"_id": "done", "reports_rebuilt": True, "reports_to_rebuild": reports,
         "finished_at": now - timedelta(hours=5)},
    ])  # fmt: skip
    with instance_for_test() as instance:
        requested = abandoned_rebuild_requests(instance, db, now)
        assert [(r.job_name, r.tags["privacy/erasure"]) for r in requested] == [
            ("daily_report_job", "stopped")
        ]
        # Not marked before its runs exist (a tick that failed after would lose them) ...
        assert db[AUDIT_COLLECTION].find_one({"_id": "stopped"})["reports_rebuilt"] is False
        instance.add_run(
            DagsterRun(
                job_name="daily_report_job",
                run_id="rebuild-1",
                status=DagsterRunStatus.SUCCESS,
                tags={**requested[0].tags, RUN_KEY_TAG: requested[0].run_key},
            )
        )
        # ... and once they do, not asked again.
        assert abandoned_rebuild_requests(instance, db, now) == []
    assert db[AUDIT_COLLECTION].find_one({"_id": "stopped"})["reports_rebuilt"] == "requested"


def test_a_pull_reading_tombstones_while_they_are_merged_misses_none(tmp_path):
    """A reader that listed the files a compaction then merged and deleted read none of
    them and not the merged file either: every tombstone in them was missed, and the pull
    brought those erased users' raw records back."""
    from analytics_assets.defs.storage.lake import ParquetLakeIOManager
    from analytics_assets.privacy import erasure

    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake")).lake()
    for n in range(3):
        frame = pl.DataFrame({"record_digest": [f"d{n}"], "erased_at": [datetime.now(UTC)]})
        lake.write_file(f"{erasure.TOMBSTONE_FOLDER}/f{n}.parquet", frame)

    class MergedMeanwhile:
        listings = 0

        def files_under(self, folder):
            listed = lake.files_under(folder)
            self.listings += 1
            if self.listings == 1:  # another erasure merges right after this listing
                merged = pl.concat([lake.read_file(name) for name in listed])
                lake.write_file(f"{folder}/merged.parquet", merged)
                for name in listed:
                    lake.delete_file(name)
            return listed

        def __getattr__(self, name):
            return getattr(lake, name)

    reader = MergedMeanwhile()
    assert erasure.tombstones(reader) == {"d0", "d1", "d2"}
    assert reader.listings == 2


def test_tombstones_are_a_file_per_erasure_merged_past_twenty(mongo_server):
    """One shared file, read, added to and written back, lost one of two erasures'
    tombstones when they ran at once (prod runs 8 runs at a time): the next pull brought
    that user's raw records back. Each erasure now writes its own file."""
    from analytics_assets.defs.storage.lake import ParquetLakeIOManager
    from analytics_assets.defs.storage.resources import MongoResource
    from analytics_assets.privacy.erasure import (
        TOMBSTONE_FILES_MAX,
        TOMBSTONE_FOLDER,
        TOMBSTONES,
        Eraser,
        tombstone_digest,
        tombstones,
    )
    from analytics_assets.sources.schema import SourceSchema

    lake = ParquetLakeIOManager(base_url=str(Path(tempfile.mkdtemp()) / "lake")).lake()
    privacy = PrivacyResource(pseudonym_key=KEY)
    digest = privacy.digester()
    # What an earlier version wrote: one file, still read.
    legacy = pl.DataFrame(
        {
            "record_digest": [tombstone_digest(digest, "messages:0")],
            "erased_at": [datetime.now(UTC)],
        }
    )
    lake.write_file(TOMBSTONES, legacy)
    eraser = Eraser(
        lake,
        MongoResource(uri=mongo_server, database="privacy_tombstones").db(),
        pseudonym_of=privacy.pseudonymizer(),
        digest=digest,
        schema=SourceSchema(),
    )
    for n in range(1, 31):
        assert eraser._add_tombstones([f"messages:{n}", "messages:0"]) == 1
    assert len(lake.files_under(TOMBSTONE_FOLDER)) <= TOMBSTONE_FILES_MAX
    expected = {tombstone_digest(digest, f"messages:{n}") for n in range(31)}
    assert tombstones(lake) == expected


def test_an_erasure_names_the_user_as_ingestion_stored_them_and_refuses_a_blank_id(tmp_path):
    """Ingestion strips a user id and removes its control characters: `erase-user " user-1 "`
    hashed the id as typed and found nothing, a raw `" user-1\\x01"` was not matched to the
    user it is stored as, and `erase-user ""` erased every conversation whose id was blank,
    the conversations of different people."""
    from analytics_assets.cli import UsageError, _user_id
    from analytics_assets.defs.storage.lake import ParquetLakeIOManager

    for typed in ("", "   ", "\x01\t"):
        with pytest.raises(UsageError, match="blank"):
            _user_id(typed)
    assert _user_id(" user-1\x01 ") == "user-1"
    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake")).lake()
    day = date(2026, 11, 3)
    raw_ids = ["user-1", " user-1\x01", "", "user-2"]
    lake.write_day("nocodb_raw_pages", day, pl.DataFrame(
        {"table": ["conversations"] * 4, "record_id": ["1", "2", "3", "4"], "day": [day] * 4,
         "record": [json.dumps({"conversation_id": f"c-{n}", "user_id": user})
                    for n, user in enumerate(raw_ids)]}
    ))  # fmt: skip
    privacy = PrivacyResource(pseudonym_key=KEY)
    eraser = _eraser(lake, None, privacy)
    theirs = privacy.pseudonym(_user_id(" user-1 "))
    assert sorted(eraser.user_ids(theirs)) == sorted([theirs, "user-1", " user-1\x01"])


def test_an_erasure_rewrites_days_written_before_a_release_added_a_column(tmp_path, mongo_server):
    """The lake's scan of a whole table merges its days' columns; a day written before a
    release added `user_pseudonym` lacks it, and its rewrite matched on the merged columns
    and failed (ColumnNotFoundError)."""
    from analytics_assets.defs.storage.lake import ParquetLakeIOManager
    from analytics_assets.defs.storage.resources import MongoResource

    lake = ParquetLakeIOManager(base_url=str(tmp_path / "lake")).lake()
    privacy = PrivacyResource(pseudonym_key=KEY)
    theirs = privacy.pseudonym("user-1")
    old, new = date(2026, 11, 3), date(2026, 11, 4)
    lake.write_day("conversations", old, pl.DataFrame(
        {"conversation_id": ["c-1", "c-2"], "user_id": [theirs, "u_other"], "day": [old] * 2}
    ))  # fmt: skip
    lake.write_day("conversations", new, pl.DataFrame(
        {"conversation_id": ["c-3"], "user_id": [theirs], "day": [new]}
    ))  # fmt: skip
    lake.write_day("conversation_analytics", old, pl.DataFrame(
        {"conversation_id": ["c-1", "c-2"], "user_id": [theirs, "u_other"], "day": [old] * 2}
    ))  # fmt: skip
    lake.write_day("conversation_analytics", new, pl.DataFrame(
        {"conversation_id": ["c-3", "c-4"], "user_id": [theirs, "u_other"],
         "user_pseudonym": [theirs, "u_other"], "day": [new] * 2}
    ))  # fmt: skip
    eraser = _eraser(
        lake, MongoResource(uri=mongo_server, database="privacy_columns_added").db(), privacy
    )
    eraser.erase(theirs)
    analytics = lake.scan_all("conversation_analytics").collect()
    assert sorted(analytics["conversation_id"].to_list()) == ["c-2", "c-4"]
    assert lake.scan_all("conversations").collect()["conversation_id"].to_list() == ["c-2"]


def test_an_erasure_request_keeps_why_not_who(mongo_server):
    """`--reason` was stored verbatim: a reason quoting the user's address kept it in the
    audit collections, which an erasure never empties."""
    from analytics_assets.defs.storage.resources import MongoResource

    db = MongoResource(uri=mongo_server, database="privacy_reason").db()
    pseudonym = PrivacyResource(pseudonym_key=KEY).pseudonym("user-1")
    request_id = submit_request(db, pseudonym, requested_by="dpo",
                                reason="erase jane@example.com, ticket T-17")  # fmt: skip
    stored = db[REQUESTS_COLLECTION].find_one({"_id": request_id})
    assert stored["reason"] == "erase <EMAIL>, ticket T-17"


def test_erasing_a_message_without_a_nocodb_id_spares_the_same_id_in_other_conversations(
    mongo,
):
    """An export without NocoDB's `Id` column tombstones a raw message by its key: the
    message id alone. A source numbering messages per conversation has message 1 in every
    conversation, so erasing one user dropped every other user's message 1 from each later
    pull (their conversations lost their opening turn, without an error)."""
    from analytics_assets.defs.storage.lake import ParquetLakeIOManager
    from analytics_assets.privacy.erasure import Eraser, drop_tombstoned
    from analytics_assets.sources.schema import SourceSchema

    day = date(2026, 11, 2)
    lake = ParquetLakeIOManager(base_url=str(Path(tempfile.mkdtemp()) / "lake")).lake()
    privacy = PrivacyResource(pseudonym_key=KEY)
    schema = SourceSchema()
    at = datetime(2026, 11, 2, 9, tzinfo=UTC)

    def raw(table, records):
        return raw_frame_from_records(records, table=table, day=day, page=0, fetched_at=at,
                                      source="export:test")  # fmt: skip

    conversations = [{"conversation_id": f"c-{n}", "user_id": f"user-{n}",
                      "started_at": at.isoformat()} for n in (1, 2)]  # fmt: skip
    messages = [{"message_id": "1", "conversation_id": f"c-{n}", "role": "user",
                 "content": "hello", "created_at": at.isoformat()} for n in (1, 2)]  # fmt: skip
    pulled = pl.concat([raw("conversations", conversations), raw("messages", messages)])
    assert pulled["record_id"].is_null().all()
    lake.write_day(tables.NOCODB_RAW_PAGES, day, pulled)
    eraser = Eraser(lake, mongo.db(), pseudonym_of=privacy.pseudonymizer(),
                    digest=privacy.digester(), schema=schema)  # fmt: skip
    eraser.erase(privacy.pseudonymizer()("user-1"))
    # The day pulled again: user 1's records go, user 2's stay.
    kept, dropped = drop_tombstoned(pulled, lake, schema, privacy.digester)
    left = kept.select(
        "table", pl.col("record").str.json_path_match("$.conversation_id").alias("conversation")
    )
    assert sorted(left.iter_rows()) == [("conversations", "c-2"), ("messages", "c-2")]
    assert dropped == 2
