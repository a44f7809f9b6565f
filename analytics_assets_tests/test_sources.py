"""The sample generator and the export source (JSON, NDJSON and CSV as NocoDB exports them)."""

from __future__ import annotations

import json
from datetime import date

import polars as pl
import pytest

from analytics_assets.sources.export import ExportSource
from analytics_assets.sources.generator import (
    SampleSpec,
    ensure_sample_export,
    generate_sample,
    write_export,
)
from analytics_assets.sources.schema import SourceSchema
from analytics_assets.transforms.records import validate_messages

SMALL = SampleSpec(days=2, conversations=60, users=20, seed=3)


def test_generator_is_deterministic_and_meets_the_sample_promise():
    data = generate_sample()
    again = generate_sample()
    assert data.messages == again.messages and data.conversations == again.conversations
    assert len(data.conversations) >= 2000
    assert len(data.messages) >= 20000
    assert len(data.days()) >= 14
    assert len({label["language"] for label in data.labels}) >= 5
    assert len({c["model"] for c in data.conversations}) >= 3
    assert len({c["user_id"] for c in data.conversations if c["user_id"]}) >= 200
    for label_name in ("topic", "intent", "sentiment"):
        assert len({label[label_name] for label in data.labels}) >= 3
    assert sum(c["rating"] is not None for c in data.conversations) > 500
    assert {m["feedback"] for m in data.messages} >= {"up", "down", None}
    assert len(data.problems) == 10
    assert generate_sample(SampleSpec(seed=1)).messages != data.messages


def test_export_is_reused_while_the_spec_is_unchanged(tmp_path):
    folder = ensure_sample_export(tmp_path / "export", SMALL)
    stamp = (folder / "messages.json").stat().st_mtime_ns
    ensure_sample_export(folder, SMALL)
    assert (folder / "messages.json").stat().st_mtime_ns == stamp
    ensure_sample_export(folder, SampleSpec(days=2, conversations=61, users=20, seed=3))
    assert len(json.loads((folder / "messages.json").read_text())) != 0
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["spec"]["conversations"] == 61


def test_export_source_serves_each_day_with_records_verbatim(tmp_path):
    data = generate_sample(SMALL)
    source = ExportSource(write_export(data, tmp_path))
    day = date(2026, 11, 1)
    frame = source.fetch_day("messages", day).frame
    # A record without created_at belongs to the day it was stored (CreatedAt).
    expected = [
        m for m in data.messages if (m["created_at"] or m["CreatedAt"]).startswith("2026-11-01")
    ]
    assert frame.height == len(expected)
    assert set(frame["day"]) == {day}
    first = json.loads(frame["record"][0])
    assert first == next(m for m in expected if m["message_id"] == first["message_id"])


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_ndjson_and_csv_exports_validate_like_json(tmp_path, suffix):
    data = generate_sample(SMALL)
    json_source = ExportSource(write_export(data, tmp_path / "json"))
    other = tmp_path / suffix
    other.mkdir()
    frame = pl.DataFrame(data.messages, infer_schema_length=None)
    if suffix == "csv":
        frame.write_csv(other / "messages.csv")
    else:
        frame.write_ndjson(other / "messages.jsonl")
    other_source = ExportSource(other)
    day = date(2026, 11, 2)
    via_json = validate_messages(json_source.fetch_day("messages", day).frame)
    via_other = validate_messages(other_source.fetch_day("messages", day).frame)
    assert via_other.valid.drop("record_id").equals(via_json.valid.drop("record_id"))
    assert (
        via_other.rejected["reason"].sort().to_list()
        == via_json.rejected["reason"].sort().to_list()
    )


def test_missing_export_file_names_what_was_looked_for(tmp_path):
    source = ExportSource(tmp_path, SourceSchema(messages_table="chat_messages"))
    with pytest.raises(FileNotFoundError, match=r"chat_messages\.json"):
        source.fetch_day("messages", date(2026, 11, 1))


def _conversation(number: int, **fields) -> dict:
    return {
        "Id": number,
        "conversation_id": f"c-{number}",
        "user_id": "u",
        "model": "m",
        "channel": "web",
        "started_at": "2026-11-01 10:00:00+00:00",
        "rating": 5,
        "CreatedAt": None,
        "UpdatedAt": None,
    } | fields


def test_mixed_types_in_a_json_export_are_read_and_reported_not_crashed(tmp_path):
    records = [
        _conversation(1),
        _conversation(2, started_at="2026-11-01 11:00:00+00:00", rating="five"),
    ]
    (tmp_path / "conversations.json").write_text(json.dumps(records))
    from analytics_assets.transforms.records import (
        KEPT_WITHOUT_VALUE,
        validate_conversation_headers,
    )

    raw = ExportSource(tmp_path).fetch_day("conversations", date(2026, 11, 1)).frame
    result = validate_conversation_headers(raw)
    # The rating is optional: the conversation is kept without it, and the reason reported.
    assert result.valid.select("conversation_id", "rating").rows() == [("c-1", 5), ("c-2", None)]
    assert result.rejected["reason"].to_list() == [f"invalid rating 'five'; {KEPT_WITHOUT_VALUE}"]


def test_a_json_export_whose_field_is_text_here_and_json_there_is_served_not_crashed(tmp_path):
    # An export whose mapped field holds JSON in some records (a link object, a list): no
    # frame holds text and objects in one column, which failed the read of the whole table.
    # Each record is kept as written; an optional field holding JSON is left empty.
    records = [
        _conversation(1),
        _conversation(2, user_id={"Id": 7, "Title": "u7"}),
        _conversation(3, channel=["web", "app"]),
    ]
    (tmp_path / "conversations.json").write_text(json.dumps({"list": records}))
    from analytics_assets.transforms.records import (
        KEPT_WITHOUT_VALUE,
        validate_conversation_headers,
    )

    raw = ExportSource(tmp_path).fetch_day("conversations", date(2026, 11, 1)).frame
    assert [json.loads(record) for record in raw["record"]] == records
    result = validate_conversation_headers(raw)
    assert result.valid.select("conversation_id", "channel").rows() == [
        ("c-1", "web"),
        ("c-3", None),
    ]
    assert result.rejected.select("key", "reason").rows() == [
        ("c-2", "user_id holds a JSON object, not a single value"),
        ("c-3", f"channel holds a JSON array, not a single value; {KEPT_WITHOUT_VALUE}"),
    ]
    # What reads the table whole (the freshness check's last day, feedback, translations).
    table = ExportSource(tmp_path).read_table("conversations", ["conversation_id", "user_id"])
    assert table.rows() == [("c-1", "u"), ("c-2", '{"Id": 7, "Title": "u7"}'), ("c-3", "u")]


def test_a_json_export_in_the_apis_own_page_form_gives_its_records(tmp_path):
    page = {"list": [_conversation(1), _conversation(2)], "pageInfo": {"totalRows": 2}}
    (tmp_path / "conversations.json").write_text(json.dumps(page))
    from analytics_assets.transforms.records import (
        validate_conversation_headers,
    )

    raw = ExportSource(tmp_path).fetch_day("conversations", date(2026, 11, 1)).frame
    result = validate_conversation_headers(raw)
    assert result.valid["conversation_id"].to_list() == ["c-1", "c-2"]
    assert result.rejected.height == 0


@pytest.mark.parametrize("suffix", [".json", ".ndjson"])
def test_an_unpaired_surrogate_in_an_export_costs_only_that_character(tmp_path, suffix):
    # Half an emoji (escaped by the JSON writer) used to fail the read of the whole file.
    records = [_conversation(1, channel="we\udc00b"), _conversation(2)]
    path = tmp_path / f"conversations{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(records))
    else:
        path.write_text("\n".join(json.dumps(record) for record in records))
    from analytics_assets.transforms.records import (
        validate_conversation_headers,
    )

    raw = ExportSource(tmp_path).fetch_day("conversations", date(2026, 11, 1)).frame
    result = validate_conversation_headers(raw)
    assert result.valid["channel"].to_list() == ["web", "web"]
    assert result.records_with_controls_removed == 1


@pytest.mark.parametrize("suffix", [".json", ".ndjson", ".csv"])
def test_a_byte_that_is_not_utf8_in_an_export_costs_only_that_character(tmp_path, suffix):
    """A Latin-1 "é" in one record (a file saved by a spreadsheet) made the whole table
    unreadable: every day's pull of it failed."""
    from analytics_assets.transforms.records import (
        validate_conversation_headers,
    )

    records = [_conversation(1, channel="web"), _conversation(2, channel="caf\u00e9")]
    path = tmp_path / f"conversations{suffix}"
    if suffix == ".csv":
        pl.DataFrame(records).write_csv(path)
    elif suffix == ".json":
        path.write_text(json.dumps(records, ensure_ascii=False))
    else:
        path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records))
    path.write_bytes(path.read_bytes().replace("é".encode(), "é".encode("latin-1")))
    raw = ExportSource(tmp_path).fetch_day("conversations", date(2026, 11, 1)).frame
    result = validate_conversation_headers(raw)
    assert result.valid["conversation_id"].to_list() == ["c-1", "c-2"]
    assert result.valid["channel"][0] == "web"
    assert result.valid["channel"][1] in ("caf", "caf\ufffd")


@pytest.mark.nocodb
def test_half_an_emoji_sent_to_nocodb_arrives_as_the_replacement_character(nocodb):
    """A client that cut an emoji in two sends its half as JSON.stringify writes it (an
    escaped unpaired surrogate). The real NocoDB stores it as U+FFFD, so from NocoDB it
    arrives as that (from an export, as the unpaired surrogate: above); a NUL arrives as
    sent and validation removes it."""
    import httpx

    from analytics_assets.sources.nocodb import NocoDBSource
    from analytics_assets.sources.seed import TABLE_COLUMNS, create_base, create_table
    from analytics_assets.transforms.records import validate_messages
    from analytics_assets_tests.conftest import make_client

    def sent(number: int, content: str) -> dict:
        return {"message_id": f"m-{number}", "conversation_id": "c-1", "role": "user",
                "content": content, "created_at": "2026-11-01 10:00:00"}  # fmt: skip

    with make_client(nocodb) as client:
        base_id = create_base(client, "half_an_emoji")
        table_id = create_table(client, base_id, "messages", TABLE_COLUMNS["messages"])
        create_table(client, base_id, "conversations", TABLE_COLUMNS["conversations"])
        body = json.dumps([sent(1, "a😀b"), sent(2, "a\ud83db"), sent(3, "a\ude00b\x00c")])
        response = httpx.post(
            f"{nocodb.url}/api/v2/tables/{table_id}/records",
            content=body.encode("ascii"),
            headers={"xc-token": nocodb.token, "content-type": "application/json"},
        )
        response.raise_for_status()
        frame = NocoDBSource(client, base_id=base_id).fetch_day("messages", date(2026, 11, 1))
    validated = validate_messages(frame.frame)
    assert validated.rejected.height == 0
    assert validated.valid["content"].to_list() == ["a😀b", "a\ufffdb", "a\ufffdbc"]
    assert validated.records_with_controls_removed == 1


@pytest.mark.nocodb
def test_an_attachment_column_from_nocodb_rejects_only_the_records_it_makes_unreadable(nocodb):
    """The real NocoDB returns an attachment column as an array of objects. Mapped to a
    field read as text, such a value used to fail the decode of the whole day; now, mapped to
    an optional field, its value is left empty and its record kept, with the reason in
    processing_errors. (A column the pipeline does not map is not asked for.)"""
    from analytics_assets.sources.nocodb import NocoDBSource
    from analytics_assets.sources.schema import SourceSchema
    from analytics_assets.sources.seed import TABLE_COLUMNS, create_base, create_table
    from analytics_assets.transforms.records import KEPT_WITHOUT_VALUE, validate_messages
    from analytics_assets_tests.conftest import make_client

    def sent(number: int, **fields) -> dict:
        return {"message_id": f"m-{number}", "conversation_id": "c-1", "role": "user",
                "content": "hi", "created_at": "2026-11-01 10:00:00"} | fields  # fmt: skip

    schema = SourceSchema(message_fields={"model": "screenshot"})
    with make_client(nocodb) as client:
        base_id = create_base(client, "attachment_column")
        columns = [*TABLE_COLUMNS["messages"], ("screenshot", "Attachment")]
        table_id = create_table(client, base_id, "messages", columns)
        create_table(client, base_id, "conversations", TABLE_COLUMNS["conversations"])
        image = {"url": "https://example.com/a.png", "title": "a.png"}
        client.insert_records(table_id, [sent(1, screenshot=[image]), sent(2), sent(3)])
        source = NocoDBSource(client, schema, base_id=base_id)
        raw = source.fetch_day("messages", date(2026, 11, 1)).frame
    first = json.loads(raw.filter(pl.col("record_id") == "1")["record"][0])
    assert first["screenshot"][0]["url"] == image["url"]
    validated = validate_messages(raw, schema)
    assert validated.valid["message_id"].to_list() == ["m-1", "m-2", "m-3"]
    assert validated.valid["model"].to_list() == [None, None, None]
    assert validated.rejected.select("key", "reason").rows() == [
        ("m-1", f"screenshot holds a JSON array, not a single value; {KEPT_WITHOUT_VALUE}")
    ]
