"""The pure polars transforms on hand-written records with exact expected results."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from analytics_assets.sources.schema import SourceSchema
from analytics_assets.transforms.conversations import build_conversations
from analytics_assets.transforms.raw import raw_frame_from_records
from analytics_assets.transforms.records import (
    CONVERSATION_HEADER_SCHEMA,
    ERROR_SCHEMA,
    KEPT_WITHOUT_VALUE,
    KEPT_WITHOUT_VALUES,
    MAX_ID_BYTES,
    MESSAGE_SCHEMA,
    carried_rows_digest,
    is_lost,
    validate_conversation_headers,
    validate_messages,
)
from analytics_assets.transforms.timestamps import parse_utc_timestamp

DAY = date(2026, 11, 1)
FETCHED = datetime(2026, 11, 30, tzinfo=UTC)


def raw(table: str, records: list[dict], day: date = DAY) -> pl.DataFrame:
    return raw_frame_from_records(
        records, table=table, day=day, page=0, fetched_at=FETCHED, source="test"
    )


def message(number: int, **fields) -> dict:
    base = {
        "Id": number,
        "message_id": f"m-{number}",
        "conversation_id": "c1",
        "role": "user",
        "content": "hello",
        "model": None,
        "created_at": "2026-11-01 10:00:00+00:00",
        "prompt_tokens": None,
        "completion_tokens": None,
        "latency_ms": None,
        "feedback": None,
        "CreatedAt": "2026-11-01 10:00:01+00:00",
        "UpdatedAt": None,
    }
    return base | fields


def test_timestamps_parse_every_format_to_utc():
    texts = pl.Series(
        [
            "2026-11-01 23:50:00+00:00",
            "2026-11-01T23:50:00.250Z",
            "2026-11-01 23:50:00",
            "2026-11-01 22:50:00-02:00",
            "2026-11-01 23:50",
            # Postgres' offset of whole hours, which Python reads (the source's day).
            "2026-11-02T00:50:00+01",
            "not a time",
            None,
        ]
    )
    parsed = pl.select(parse_utc_timestamp(pl.lit(texts))).to_series().to_list()
    assert parsed == [
        datetime(2026, 11, 1, 23, 50, tzinfo=UTC),
        datetime(2026, 11, 1, 23, 50, 0, 250000, tzinfo=UTC),
        datetime(2026, 11, 1, 23, 50, tzinfo=UTC),
        datetime(2026, 11, 2, 0, 50, tzinfo=UTC),
        datetime(2026, 11, 1, 23, 50, tzinfo=UTC),
        datetime(2026, 11, 1, 23, 50, tzinfo=UTC),
        None,
        None,
    ]


def test_valid_messages_are_typed_and_sorted():
    records = [
        message(
            2,
            role="Assistant",
            created_at="2026-11-01 10:00:05+00:00",
            prompt_tokens=12,
            completion_tokens=30,
            latency_ms=812.5,
            feedback="UP",
            model="gpt-4o",
        ),
        message(1, content="¿Cuánto cuesta? 🎉"),
    ]
    result = validate_messages(raw("messages", records))
    assert result.rejected.height == 0
    assert result.valid.schema == pl.Schema(MESSAGE_SCHEMA)
    rows = result.valid.to_dicts()
    assert [row["message_id"] for row in rows] == ["m-1", "m-2"]
    assert rows[0]["content"] == "¿Cuánto cuesta? 🎉"
    assert rows[1]["role"] == "assistant"
    assert rows[1]["feedback"] == "up"
    assert rows[1]["prompt_tokens"] == 12
    assert rows[1]["latency_ms"] == 812.5
    assert rows[1]["created_at"] == datetime(2026, 11, 1, 10, 0, 5, tzinfo=UTC)
    assert rows[1]["record_id"] == "2"
    assert rows[1]["day"] == DAY


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"message_id": None}, "missing message_id"),
        ({"conversation_id": "  "}, "missing conversation_id"),
        ({"role": "bot"}, "invalid role 'bot'"),
        ({"content": None}, "missing content"),
        ({"created_at": None}, "missing created_at"),
        ({"created_at": "yesterday"}, "invalid created_at 'yesterday'"),
        (
            {"created_at": "2026-11-02 00:00:01+00:00"},
            "created_at 2026-11-02 00:00:01+00:00 is outside partition day 2026-11-01",
        ),
    ],
)
def test_each_rule_rejects_with_its_reason(fields, reason):
    result = validate_messages(raw("messages", [message(7, **fields), message(8)]))
    assert result.valid["message_id"].to_list() == ["m-8"]
    assert result.rejected.schema == pl.Schema(ERROR_SCHEMA)
    error = result.rejected.row(0, named=True)
    assert error["reason"] == reason
    assert error["table"] == "messages"
    assert error["stage"] == "validate"
    assert error["record_id"] == "7"
    assert error["conversation_id"] == (None if "conversation_id" in fields else "c1")
    assert json.loads(error["record"])["Id"] == 7


def test_roles_as_common_chat_formats_and_the_deployment_name_them():
    """A tool's output was rejected as an invalid role: a bot that calls tools lost a
    message per call, and its days were marked incomplete."""
    roles = ["user", "Human", "gpt", "AI", "model", "developer", "tool", "function",
             " Bot ", "narrator"]  # fmt: skip
    records = [message(n, role=role) for n, role in enumerate(roles, start=1)]
    schema = SourceSchema(role_names={"BOT": "assistant"})
    result = validate_messages(raw("messages", records), schema)
    assert result.valid["role"].to_list() == [
        "user", "user", "assistant", "assistant", "assistant", "system", "tool", "tool",
        "assistant",
    ]  # fmt: skip
    # Another role is rejected, named as written.
    assert result.rejected["reason"].to_list() == ["invalid role 'narrator'"]
    # Without the deployment's name, "bot" is no role.
    plain = validate_messages(raw("messages", records))
    assert plain.rejected["reason"].to_list() == ["invalid role 'Bot'", "invalid role 'narrator'"]
    with pytest.raises(ValueError, match="unknown role"):
        SourceSchema(role_names={"bot": "agent"})
    assert SourceSchema(role_names={"Bot": " Assistant"}).role_map()["bot"] == "assistant"


def test_an_assistants_tool_call_without_text_is_kept_with_empty_content():
    """OpenAI's format writes a tool call's content as null: rejected as "missing
    content", a bot that calls tools lost a message per call."""
    records = [
        message(1, role="assistant", content=None),
        message(2, role="tool", content=None),
        message(3, role="user", content=None),
        message(4, role="system", content=None),
    ]
    result = validate_messages(raw("messages", records))
    assert result.valid.select("message_id", "content").rows() == [("m-1", ""), ("m-2", "")]
    assert result.rejected.select("key", "reason").rows() == [
        ("m-3", "missing content"),
        ("m-4", "missing content"),
    ]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"prompt_tokens": "many"}, "invalid prompt_tokens 'many'"),
        ({"prompt_tokens": 1.5}, "invalid prompt_tokens '1.5'"),
        # Read through a double, it was 3.
        ({"prompt_tokens": "2.9999999999999999"}, "invalid prompt_tokens '2.9999999999999999'"),
        ({"completion_tokens": -5}, "negative completion_tokens -5"),
        ({"latency_ms": -1.5}, "negative latency_ms -1.5"),
        ({"latency_ms": "NaN"}, "latency_ms is not a finite number"),
        ({"feedback": "meh"}, "invalid feedback 'meh'"),
    ],
)
def test_a_wrong_optional_value_is_left_empty_and_its_message_kept(fields, reason):
    """A message with a negative token count or feedback 'meh' was rejected whole: its text
    went uncategorized and its conversation counted one message fewer."""
    (name,) = fields
    result = validate_messages(raw("messages", [message(7, **fields), message(8)]))
    assert result.valid["message_id"].to_list() == ["m-7", "m-8"]
    kept = result.valid.row(0, named=True)
    assert kept[name] is None
    assert kept["content"] == message(7)["content"]
    error = result.rejected.row(0, named=True)
    assert result.rejected.height == 1
    assert error["reason"] == f"{reason}; {KEPT_WITHOUT_VALUE}"
    assert (error["table"], error["stage"], error["record_id"]) == ("messages", "validate", "7")
    assert json.loads(error["record"])[name] == fields[name]
    assert result.rejected.select(is_lost(pl.col("reason"))).item() is False


def test_a_message_with_several_wrong_values_keeps_the_right_ones():
    record = message(3, prompt_tokens=-1, completion_tokens=12, latency_ms="inf", feedback="Up")
    result = validate_messages(raw("messages", [record]))
    kept = result.valid.row(0, named=True)
    assert (kept["prompt_tokens"], kept["completion_tokens"]) == (None, 12)
    assert (kept["latency_ms"], kept["feedback"]) == (None, "up")
    assert result.rejected["reason"].to_list() == [
        f"negative prompt_tokens -1; latency_ms is not a finite number; {KEPT_WITHOUT_VALUES}"
    ]


def test_one_value_that_breaks_two_rules_is_one_value_left_empty():
    # A latency of -inf is negative and not finite: two reasons, one value left empty.
    result = validate_messages(raw("messages", [message(3, latency_ms="-inf", feedback="up")]))
    assert result.valid.select("latency_ms", "feedback").row(0) == (None, "up")
    assert result.rejected["reason"].to_list() == [
        f"negative latency_ms -inf; latency_ms is not a finite number; {KEPT_WITHOUT_VALUE}"
    ]


def test_a_record_kept_without_a_value_is_counted_once_among_the_records_validated():
    # It is in `valid` and in `rejected`: the run's record count and throughput counted it
    # twice.
    records = [message(1, feedback="meh"), message(2), message(3, role=None)]
    copies = [message(4), message(5, message_id="m-4", UpdatedAt="2026-11-01 11:00:00+00:00")]
    result = validate_messages(raw("messages", records + copies))
    assert (result.valid.height, result.rejected.height) == (3, 3)
    assert result.records == len(records + copies)


def test_ids_too_long_to_be_keys_are_rejected_and_not_named_in_the_rejection():
    """An id of megabytes (a field mapped wrong, an attack) became a MongoDB `_id` and a
    filter's key: a day of them was over MongoDB's 16 MB and failed on every retry."""
    long_id = "m" * (MAX_ID_BYTES + 1)
    records = [
        message(1, message_id=long_id),
        message(2, conversation_id="c" * 300 + "é" * 200),  # 700 bytes in 500 characters
        message(3, message_id="m" * MAX_ID_BYTES),
    ]
    for kept_record_id in (True, False):
        sent = records if kept_record_id else [{**r, "Id": None} for r in records]
        result = validate_messages(raw("messages", sent))
        assert result.valid["message_id"].to_list() == ["m" * MAX_ID_BYTES]
        rejected = result.rejected.sort("reason")
        assert rejected["reason"].to_list() == [
            f"conversation_id is longer than {MAX_ID_BYTES} bytes",
            f"message_id is longer than {MAX_ID_BYTES} bytes",
        ]
        assert rejected["conversation_id"].to_list() == [None, "c1"]
        assert rejected["record_key"].str.len_bytes().max() <= MAX_ID_BYTES
        assert long_id in rejected["record"][1]  # the record keeps what was sent
    headers = validate_conversation_headers(
        raw("conversations", [header("c" * 600 + "-1"), header("c-2")])
    )
    assert headers.valid["conversation_id"].to_list() == ["c-2"]
    assert headers.rejected["reason"].to_list() == [
        f"conversation_id is longer than {MAX_ID_BYTES} bytes"
    ]


def test_several_failures_are_all_named():
    # A record rejected for a required field names its wrong optional values too.
    result = validate_messages(raw("messages", [message(3, role=None, feedback="meh")]))
    assert result.valid.is_empty()
    assert result.rejected["reason"].to_list() == ["missing role; invalid feedback 'meh'"]


def test_duplicate_message_keeps_the_newest_copy_and_reports_the_other():
    older = message(4, content="first")
    newer = message(5, message_id="m-4", content="edited", UpdatedAt="2026-11-01 10:05:00+00:00")
    result = validate_messages(raw("messages", [newer, older]))
    assert result.valid["content"].to_list() == ["edited"]
    assert result.rejected["reason"].to_list() == [
        "duplicate message_id; superseded by a newer copy"
    ]
    assert result.rejected["record_id"].to_list() == ["4"]


def test_ids_that_differ_only_once_cleaned_are_errors_not_copies():
    """ "m-1", "m-1\x01" and " m-1 " read as one message once cleaned: the older two were
    called superseded copies, which the error rate leaves out, so two real messages went
    without a word."""
    from analytics_assets.transforms.records import is_superseded

    records = [
        message(1, message_id="m-1", content="first"),
        message(2, message_id="m-1\x01", content="second"),
        message(3, message_id="\u00a0m-1\u2003", content="third"),
        message(4, message_id="m-1", content="first, sent again"),
    ]
    result = validate_messages(raw("messages", records))
    assert result.valid["content"].to_list() == ["first, sent again"]
    reasons = dict(zip(result.rejected["record_id"], result.rejected["reason"], strict=True))
    assert reasons["1"] == "duplicate message_id; superseded by a newer copy"
    assert reasons["2"] == "message_id 'm-1\x01' is another record's message_id once cleaned"
    assert "is another record's message_id once cleaned" in reasons["3"]
    superseded = result.rejected.filter(is_superseded(pl.col("reason")))
    assert superseded["record_id"].to_list() == ["1"]


def test_a_message_id_two_conversations_use_is_an_error_not_a_copy():
    """A source that numbers messages 1, 2, 3... within each conversation: the newer of two
    different messages is kept, and the other is an error the rate counts (it was a
    "superseded copy", left out of the rate: 49 of 50 conversations lost at 0 %)."""
    from analytics_assets.transforms.records import is_superseded

    records = [
        message(1, message_id="1", conversation_id="c1", content="hello from c1"),
        message(2, message_id="1", conversation_id="c2", content="hello from c2",
                UpdatedAt="2026-11-01 10:05:00+00:00"),
        message(3, message_id="m-9", conversation_id="c1", content="a copy"),
        message(4, message_id="m-9", conversation_id="c1", content="a copy, sent again"),
    ]  # fmt: skip
    result = validate_messages(raw("messages", records))
    assert sorted(result.valid["content"].to_list()) == ["a copy, sent again", "hello from c2"]
    reasons = dict(zip(result.rejected["record_id"], result.rejected["reason"], strict=True))
    assert reasons["1"] == (
        "duplicate message_id: another conversation's message has it too, and the newer one "
        "was kept"
    )
    assert reasons["3"] == "duplicate message_id; superseded by a newer copy"
    superseded = result.rejected.filter(is_superseded(pl.col("reason")))
    assert superseded["record_id"].to_list() == ["3"]


def test_three_copies_over_two_conversations_count_one_lost_message():
    """c1's message held twice and c2's once, newest: one message is lost, and c1's older
    copy is its copy, not a second loss (the rate counted two)."""
    from analytics_assets.transforms.records import is_superseded

    records = [
        message(1, message_id="1", conversation_id="c1", content="hello from c1"),
        message(2, message_id="1", conversation_id="c1", content="hello from c1, again",
                UpdatedAt="2026-11-01 10:03:00+00:00"),
        message(3, message_id="1", conversation_id="c2", content="hello from c2",
                UpdatedAt="2026-11-01 10:05:00+00:00"),
    ]  # fmt: skip
    result = validate_messages(raw("messages", records))
    assert result.valid["content"].to_list() == ["hello from c2"]
    reasons = dict(zip(result.rejected["record_id"], result.rejected["reason"], strict=True))
    assert reasons["2"].startswith("duplicate message_id: another conversation's message")
    assert reasons["1"] == "duplicate message_id; superseded by a newer copy"
    lost = result.rejected.filter(~is_superseded(pl.col("reason")))
    assert lost["record_id"].to_list() == ["2"]


def test_renamed_source_fields_are_mapped():
    schema = SourceSchema(message_fields={"content": "text", "conversation_id": "thread"})
    record = message(1)
    record["text"] = record.pop("content")
    record["thread"] = record.pop("conversation_id")
    result = validate_messages(raw("messages", [record]), schema)
    assert result.valid.select("content", "conversation_id").row(0) == ("hello", "c1")


def test_unknown_canonical_field_in_mapping_is_an_error():
    with pytest.raises(ValueError, match="Unknown canonical messages field"):
        SourceSchema(message_fields={"body": "text"}).field_map("messages")


def header(conversation_id: str, **fields) -> dict:
    return {
        "Id": int(conversation_id.split("-")[-1]),
        "conversation_id": conversation_id,
        "user_id": "u1",
        "model": "gpt-4o",
        "channel": "Web",
        "started_at": "2026-11-01 09:59:00+00:00",
        "rating": 4,
        "CreatedAt": "2026-11-01 09:59:01+00:00",
        "UpdatedAt": None,
    } | fields


def test_conversation_headers_rules():
    records = [
        header("c-1"),
        header("c-2", rating=7),
        header("c-3", user_id=None),
        header("c-4", started_at=None),
        header("c-5", rating=None),
    ]
    result = validate_conversation_headers(raw("conversations", records))
    assert result.valid.schema == pl.Schema(CONVERSATION_HEADER_SCHEMA)
    # A rating of 7 rejected its conversation whole: its messages then counted in none.
    assert result.valid["conversation_id"].to_list() == ["c-1", "c-2", "c-5"]
    assert result.valid["rating"].to_list() == [4, None, None]
    assert result.valid["channel"].to_list() == ["web", "web", "web"]
    assert dict(zip(result.rejected["key"], result.rejected["reason"], strict=True)) == {
        "c-2": f"rating 7 outside 1-5; {KEPT_WITHOUT_VALUE}",
        "c-3": "missing user_id",
        "c-4": "missing started_at",
    }
    lost = result.rejected.filter(is_lost(pl.col("reason")))
    assert sorted(lost["key"]) == ["c-3", "c-4"]


def test_build_conversations_exact_numbers():
    headers = validate_conversation_headers(
        raw(
            "conversations",
            [
                header("c-1", model=None, started_at="2026-11-01 23:59:00+00:00"),
                header("c-2", rating=None),
            ],
        )
    ).valid
    day_one = [
        message(1, conversation_id="c-1", created_at="2026-11-01 23:59:00+00:00"),
        message(
            2,
            conversation_id="c-1",
            role="assistant",
            model="llama-3-70b",
            created_at="2026-11-01 23:59:30+00:00",
            prompt_tokens=10,
            completion_tokens=20,
            latency_ms=1000.0,
            feedback="up",
        ),
        message(9, conversation_id="c-other", created_at="2026-11-01 12:00:00+00:00"),
    ]
    day_two = [
        message(3, conversation_id="c-1", created_at="2026-11-02 00:01:00+00:00"),
        message(
            4,
            conversation_id="c-1",
            role="assistant",
            model="llama-3-70b",
            created_at="2026-11-02 00:01:02+00:00",
            prompt_tokens=40,
            completion_tokens=5,
            latency_ms=3000.0,
            feedback="down",
        ),
    ]
    messages = pl.concat(
        [
            validate_messages(raw("messages", day_one)).valid,
            validate_messages(raw("messages", day_two, day=date(2026, 11, 2))).valid,
        ]
    )
    summary = build_conversations(headers, messages)
    first, second = summary.to_dicts()
    assert first["conversation_id"] == "c-2"  # started 09:59, sorted by start
    assert second == {
        "conversation_id": "c-1",
        "user_id": "u1",
        "model": "llama-3-70b",
        "channel": "web",
        "started_at": datetime(2026, 11, 1, 23, 59, tzinfo=UTC),
        "ended_at": datetime(2026, 11, 2, 0, 1, 2, tzinfo=UTC),
        "duration_s": 122.0,
        "turns": 2,
        "message_count": 4,
        "user_messages": 2,
        "assistant_messages": 2,
        "system_messages": 0,
        "prompt_tokens": 50,
        "completion_tokens": 25,
        "total_tokens": 75,
        "latency_ms_mean": 2000.0,
        "latency_ms_max": 3000.0,
        "rating": 4,
        "feedback_up": 1,
        "feedback_down": 1,
        "day": DAY,
    }
    assert first["message_count"] == 0
    assert first["duration_s"] == 0.0
    assert first["rating"] is None


def test_a_blank_model_is_the_one_that_wrote_most_replies_not_most_turns():
    """A client may tag user and system turns with a model: they do not outvote the replies
    (docs/metrics.md: "the model that wrote most of its replies")."""
    headers = validate_conversation_headers(raw("conversations", [header("c-1", model=None)]))
    turns = [
        ("system", "llama"),
        ("user", "llama"),
        ("assistant", "gpt-4o"),
        ("user", "llama"),
        ("assistant", "gpt-4o"),
    ]
    records = [
        message(number, conversation_id="c-1", role=role, model=model,
                created_at=f"2026-11-01 10:00:0{number}+00:00")
        for number, (role, model) in enumerate(turns, start=1)
    ]  # fmt: skip
    messages = validate_messages(raw("messages", records)).valid
    assert build_conversations(headers.valid, messages)["model"].to_list() == ["gpt-4o"]
    # No reply names a model: the other turns' model is still better than none.
    user_tagged = messages.with_columns(
        pl.when(pl.col("role") == "assistant").then(None).otherwise(pl.col("model")).alias("model")
    )
    assert build_conversations(headers.valid, user_tagged)["model"].to_list() == ["llama"]


def test_a_message_held_on_two_days_counts_once_and_none_ends_before_its_start():
    """NocoDB holding m-1 on D at 23:59 and again on D+1 (a re-delivery): each day kept
    its own copy, and the conversation read over both counted 3 messages and 2 turns. A
    message stamped before its conversation began gave a negative duration."""
    from analytics_assets.transforms.records import newest_copies

    headers = validate_conversation_headers(
        raw("conversations", [header("c-1", started_at="2026-11-01 23:59:00+00:00"),
                              header("c-2", started_at="2026-11-01 10:00:00+00:00")])
    ).valid  # fmt: skip
    day_one = [
        message(1, message_id="m-1", conversation_id="c-1", created_at="2026-11-01 23:59:00+00:00"),
        message(2, conversation_id="c-1", role="assistant", created_at="2026-11-01 23:59:30+00:00"),
        message(5, conversation_id="c-2", created_at="2026-11-01 08:00:00+00:00"),
    ]
    again = message(
        3, message_id="m-1", conversation_id="c-1", content="edited copy",
        created_at="2026-11-02 00:00:10+00:00", UpdatedAt="2026-11-02 00:00:11+00:00",
    )  # fmt: skip
    messages = pl.concat(
        [
            validate_messages(raw("messages", day_one)).valid,
            validate_messages(raw("messages", [again], day=date(2026, 11, 2))).valid,
        ]
    )
    kept = newest_copies(messages).filter(pl.col("message_id") == "m-1")
    assert kept["content"].to_list() == ["edited copy"]
    assert newest_copies(messages.lazy()).collect().height == 3
    # Another conversation's message with the same id on the next day is another message
    # (one of the two was dropped without a word).
    other = message(4, message_id="m-1", conversation_id="c-2",
                    created_at="2026-11-02 00:00:20+00:00")  # fmt: skip
    with_other = pl.concat(
        [messages, validate_messages(raw("messages", [other], day=date(2026, 11, 2))).valid]
    )
    assert newest_copies(with_other).filter(pl.col("message_id") == "m-1").height == 2
    summary = {
        row["conversation_id"]: row for row in build_conversations(headers, messages).to_dicts()
    }
    assert (summary["c-1"]["message_count"], summary["c-1"]["turns"]) == (2, 1)
    # The copy kept is sent when m-1 was first sent: before the reply, not after it (the
    # conversation ended with the user's turn, unanswered, at 00:00:10).
    assert kept["created_at"].to_list() == [datetime(2026, 11, 1, 23, 59, tzinfo=UTC)]
    assert summary["c-1"]["ended_at"] == datetime(2026, 11, 1, 23, 59, 30, tzinfo=UTC)
    assert summary["c-1"]["duration_s"] == 30.0
    assert summary["c-2"]["duration_s"] == 0.0
    assert summary["c-2"]["ended_at"] == summary["c-2"]["started_at"]


def test_empty_inputs_give_empty_frames_with_schemas():
    empty = raw("messages", [])
    assert validate_messages(empty).valid.schema == pl.Schema(MESSAGE_SCHEMA)
    assert validate_messages(empty).rejected.schema == pl.Schema(ERROR_SCHEMA)
    headers = validate_conversation_headers(empty).valid
    assert build_conversations(headers, validate_messages(empty).valid).height == 0


def test_control_characters_and_lone_surrogates_are_removed_from_text():
    record = message(1, content="a\x00b\x07c\ud800d\te\nf", model="gpt\x00-4")
    validated = validate_messages(raw("messages", [record]))
    row = validated.valid.row(0, named=True)
    assert row["content"] == "abcd\te\nf"
    assert row["model"] == "gpt-4"
    # Recorded: the run's metadata says how many records were cleaned.
    assert validated.records_with_controls_removed == 1
    clean = validate_messages(raw("messages", [message(2, content="plain\ttext")]))
    assert clean.records_with_controls_removed == 0


@pytest.mark.parametrize("code_point", [c for c in range(0x20) if chr(c) not in "\t\n\r"])
@pytest.mark.parametrize("written_as", ["escape", "literal"])
def test_every_control_character_is_removed_however_the_json_writes_it(code_point, written_as):
    # Whether the JSON escapes the character (\u0001, \b, \f) or holds it as is (which
    # polars' decoder refuses, so the record is written again first).
    record = message(1, content=f"a{chr(code_point)}b", model=f"m{chr(code_point)}")
    frame = raw("messages", [record, message(2, content="plain")])
    if written_as == "literal":
        frame = frame.with_columns(
            pl.col("record").str.replace_all(
                json.dumps(chr(code_point))[1:-1], chr(code_point), literal=True
            )
        )
    validated = validate_messages(frame)
    assert validated.valid["content"].to_list() == ["ab", "plain"]
    assert validated.valid["model"].to_list() == ["m", None]
    assert validated.records_with_controls_removed == 1


def test_a_control_character_escaped_in_upper_case_hex_is_found_too():
    """Only records whose JSON writes an escape of one are searched field by field; a
    source may write the hex digits in upper case (`\\u001F`, `\\uD800`)."""
    frame = raw("messages", [message(1, content="aXb"), message(2, content="cYd")])
    frame = frame.with_columns(
        pl.col("record").str.replace("X", "\\u001F", literal=True)
        .str.replace("Y", "\\uD800", literal=True)
    )  # fmt: skip
    validated = validate_messages(frame)
    assert validated.valid["content"].to_list() == ["ab", "cd"]
    assert validated.records_with_controls_removed == 2


def test_text_that_only_looks_like_an_escaped_control_character_is_kept():
    validated = validate_messages(raw("messages", [message(1, content="C:\\bin\\u0001 \\f")]))
    assert validated.valid["content"].to_list() == ["C:\\bin\\u0001 \\f"]
    assert validated.records_with_controls_removed == 0


@pytest.mark.parametrize(
    ("broken", "kept"),
    [
        ("\udc00", ""),
        ("x\ude00y", "xy"),
        ("\ud800\ud800", ""),
        # The two halves of an emoji, escaped apart, still make the emoji.
        ("\udfff\ud83d\ude00", "😀"),
        ("😀\ud83d", "😀"),
    ],
)
def test_an_unpaired_surrogate_polars_refuses_costs_only_that_character(broken, kept):
    # A lone low surrogate (half an emoji, escaped by JSON.stringify) used to fail the
    # decode of the whole day.
    records = [message(1, content=f"a{broken}b", model="\udc00gpt"), message(2, content="ok")]
    validated = validate_messages(raw("messages", records))
    assert validated.rejected.height == 0
    assert validated.valid["content"].to_list() == [f"a{kept}b", "ok"]
    assert validated.valid["model"].to_list() == ["gpt", None]
    assert validated.records_with_controls_removed == 1


def test_a_rejected_record_with_an_unpaired_surrogate_keeps_the_record_as_sent():
    record = message(1, content="a\udc00b", role="bot")
    validated = validate_messages(raw("messages", [record]))
    assert validated.rejected["reason"].to_list() == ["invalid role 'bot'"]
    assert "\\udc00" in validated.rejected["record"][0]


def test_token_counts_and_latencies_no_model_produces_are_left_empty():
    # 9e18 tokens in two messages wrapped a conversation's and a day's totals negative.
    records = [
        message(1, prompt_tokens=9_000_000_000_000_000_000),
        message(2, completion_tokens=1_000_000_001),
        message(3, latency_ms=1.7e308),
        message(4, prompt_tokens=1_000_000_000, completion_tokens=0, latency_ms=86_400_000),
        # As text, these parse as floats.
        message(5, latency_ms="NaN"),
        message(6, latency_ms="inf"),
    ]
    validated = validate_messages(raw("messages", records))
    assert validated.valid["message_id"].to_list() == [f"m-{n}" for n in range(1, 7)]
    assert validated.valid.select(
        pl.col("prompt_tokens").sum(), pl.col("completion_tokens").sum(), pl.col("latency_ms").max()
    ).row(0) == (1_000_000_000, 0, 86_400_000)
    assert validated.rejected.select("key", "reason").rows() == [
        ("m-1", f"prompt_tokens 9000000000000000000 is over a billion; {KEPT_WITHOUT_VALUE}"),
        ("m-2", f"completion_tokens 1000000001 is over a billion; {KEPT_WITHOUT_VALUE}"),
        ("m-3", f"latency_ms 1.7e+308 is over a day; {KEPT_WITHOUT_VALUE}"),
        ("m-5", f"latency_ms is not a finite number; {KEPT_WITHOUT_VALUE}"),
        ("m-6", f"latency_ms is not a finite number; {KEPT_WITHOUT_VALUE}"),
    ]


def _with_record_text(frame: pl.DataFrame, position: int, text: str) -> pl.DataFrame:
    """`frame` with the record at `position` replaced by `text`, as a source could send it."""
    return frame.with_columns(frame["record"].scatter(position, text))


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"content": ["a", "b"]}, "content holds a JSON array, not a single value"),
        (
            {"content": {"type": "text", "text": "hi"}},
            "content holds a JSON object, not a single value",
        ),
        ({"role": []}, "role holds a JSON array, not a single value"),
        # Decoded as the texts "true" and "false", they were a message and a conversation.
        ({"content": True}, "content holds JSON true, not a text or a number"),
        ({"conversation_id": False}, "conversation_id holds JSON false, not a text or a number"),
        # A required field's problem names the optional ones' too.
        (
            {"role": [], "feedback": {"up": True}},
            "role holds a JSON array, not a single value; "
            "feedback holds a JSON object, not a single value",
        ),
    ],
)
def test_a_field_that_is_not_a_single_value_rejects_only_its_record(fields, reason):
    # One such record used to fail the decode of the whole day, so no record of it landed.
    validated = validate_messages(raw("messages", [message(1, **fields), message(2)]))
    assert validated.valid["message_id"].to_list() == ["m-2"]
    assert validated.rejected.select("key", "reason").rows() == [("m-1", reason)]
    # processing_errors keeps the record as the source sent it.
    assert validated.rejected["record"][0] == raw("messages", [message(1, **fields)])["record"][0]


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"prompt_tokens": {}}, "prompt_tokens holds a JSON object, not a single value"),
        (
            {"model": ["gpt-4o"], "feedback": {"up": True}},
            "model holds a JSON array, not a single value; "
            "feedback holds a JSON object, not a single value",
        ),
        ({"feedback": True}, "feedback holds JSON true, not a text or a number"),
        # Python writes these as Infinity and NaN, which JSON lacks.
        ({"latency_ms": float("inf")}, "latency_ms is not a finite number"),
        ({"completion_tokens": float("nan")}, "completion_tokens is not a finite number"),
    ],
)
def test_an_optional_field_that_is_not_a_single_value_is_left_empty(fields, reason):
    """A latency written as NaN (as Python's json writes it) or a feedback column holding an
    object rejected the whole message, where a latency of "NaN" or feedback "meh" is only
    left empty."""
    validated = validate_messages(raw("messages", [message(1, **fields), message(2)]))
    assert validated.valid["message_id"].to_list() == ["m-1", "m-2"]
    assert all(validated.valid[name][0] is None for name in fields)
    ending = KEPT_WITHOUT_VALUES if len(fields) > 1 else KEPT_WITHOUT_VALUE
    assert validated.rejected.select("key", "reason").rows() == [("m-1", f"{reason}; {ending}")]
    assert validated.rejected["record"][0] == raw("messages", [message(1, **fields)])["record"][0]


def test_a_number_no_double_holds_rejects_its_record_and_is_ignored_outside_the_fields():
    frame = raw("messages", [message(1), message(2), message(3)])
    frame = _with_record_text(
        frame, 0, frame["record"][0].replace('"latency_ms": null', '"latency_ms": 1e400')
    )
    frame = _with_record_text(
        frame, 1, frame["record"][1].replace('{"Id"', '{"score": -1e999, "Id"')
    )
    validated = validate_messages(frame)
    assert validated.valid["message_id"].to_list() == ["m-1", "m-2", "m-3"]
    assert validated.valid["latency_ms"].to_list() == [None, None, None]
    assert validated.rejected["reason"].to_list() == [
        f"latency_ms is not a finite number; {KEPT_WITHOUT_VALUE}"
    ]
    assert "1e400" in validated.rejected["record"][0]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("[1, 2]", "the record is a JSON array, not an object"),
        ('"hello"', "the record is a JSON string, not an object"),
        ("42", "the record is a JSON number, not an object"),
        (
            '{"message_id": "m-1"',
            "the record is not valid JSON (Expecting ',' delimiter at character 20)",
        ),
        ("", "the record is not valid JSON (Expecting value at character 0)"),
        ("not json", "the record is not valid JSON (Expecting value at character 0)"),
    ],
)
def test_a_record_that_is_not_a_json_object_is_rejected_as_it_was_sent(text, reason):
    frame = _with_record_text(raw("messages", [message(1), message(2)]), 0, text)
    validated = validate_messages(frame)
    assert validated.valid["message_id"].to_list() == ["m-2"]
    assert validated.rejected.select("record_id", "reason", "record").rows() == [
        ("1", reason, text)
    ]


def test_arrays_objects_and_huge_numbers_outside_the_mapped_fields_are_ignored():
    # A NocoDB table can hold attachment, link or JSON columns the pipeline never reads.
    extra = {"attachments": [{"url": "https://x/a.png"}], "meta": {"a": [1, {"b": 2}]}}
    plain = validate_messages(raw("messages", [message(1), message(2, content="x")]))
    frame = raw("messages", [message(1, **extra), message(2, content="x")])
    frame = _with_record_text(frame, 1, frame["record"][1].replace('{"Id"', '{"big": 1e400, "Id"'))
    validated = validate_messages(frame)
    assert validated.rejected.height == 0
    assert validated.valid.drop("record_id").equals(plain.valid.drop("record_id"))


def test_a_conversation_whose_user_is_a_link_object_is_rejected_with_its_reason():
    # NocoDB returns a link to another table's record as an object.
    records = [header("c-1", user_id={"Id": 7, "Title": "u7"}), header("c-2")]
    validated = validate_conversation_headers(raw("conversations", records))
    assert validated.valid["conversation_id"].to_list() == ["c-2"]
    assert validated.rejected.select("key", "reason").rows() == [
        ("c-1", "user_id holds a JSON object, not a single value")
    ]


def test_a_repeated_key_and_a_nested_key_named_like_a_field_read_as_polars_reads_them():
    # polars keeps the first of a repeated key; a record written again must too.
    repeated = raw("messages", [message(1, content="x"), message(2)])
    repeated = _with_record_text(
        repeated,
        0,
        repeated["record"][0].replace('"content": "x"', '"content": "x", "content": ["y"]'),
    )
    # A payload kept in a column the pipeline does not read, with a key named like a field.
    nested = message(3, payload={"content": [{"type": "text"}], "role": {"a": 1}})
    validated = validate_messages(pl.concat([repeated, raw("messages", [nested])]))
    assert validated.rejected.height == 0
    assert validated.valid.select("message_id", "content").rows() == [
        ("m-1", "x"),
        ("m-2", "hello"),
        ("m-3", "hello"),
    ]


def test_a_record_nested_too_deeply_for_python_is_rejected_not_raised():
    # 5,000 levels crashed the process in polars' streaming decoder (a segfault).
    deep = "[" * 5000 + "]" * 5000
    frame = raw("messages", [message(1), message(2)])
    frame = _with_record_text(
        frame, 0, frame["record"][0].replace('"content": "hello"', f'"content": {deep}')
    )
    validated = validate_messages(frame)
    assert validated.valid["message_id"].to_list() == ["m-2"]
    assert validated.rejected["reason"].to_list() == ["the record is nested too deeply to read"]


def test_text_full_of_brackets_is_read_as_written():
    # Read by Python first (as a record that could be nested deeply), with the same result.
    text = "[{" * 3000 + " code " + "}]" * 3000
    validated = validate_messages(raw("messages", [message(1, content=text), message(2)]))
    assert validated.rejected.height == 0
    assert validated.valid["content"].to_list() == [text, "hello"]


def test_a_mapped_field_whose_name_holds_regex_characters_is_found():
    schema = SourceSchema(message_fields={"content": "text (v2)+"})
    records = [message(1) | {"text (v2)+": ["a"]}, message(2) | {"text (v2)+": "b"}]
    validated = validate_messages(raw("messages", records), schema)
    assert validated.valid["content"].to_list() == ["b"]
    assert validated.rejected["reason"].to_list() == [
        "text (v2)+ holds a JSON array, not a single value"
    ]


def test_what_polars_refuses_even_when_written_again_keeps_no_field(monkeypatch):
    # `_readable_json` writes scalars only, which polars decodes; the guard behind it is
    # what keeps the day's second decode from failing should that ever change.
    from analytics_assets.transforms import records

    monkeypatch.setattr(records, "_readable_json", lambda record, *fields: ("[1]", None, None))
    validated = validate_messages(raw("messages", [message(1, content=["x"]), message(2)]))
    assert validated.valid["message_id"].to_list() == ["m-2"]
    assert validated.rejected["reason"].to_list() == ["the record could not be decoded"]


_HOSTILE_FIELDS = [
    {"content": ["x"]},
    {"role": {"name": "user"}},
    {"latency_ms": float("inf")},
    {"feedback": [[[["up"]]]]},
    {"model": json.loads("[" * 900 + "]" * 900)},
]
_OPTIONAL_FIELDS = {"latency_ms", "feedback", "model"}
_HARMLESS_FIELDS = [
    {"attachments": [{"url": "u"}]},
    {"meta": {"content": ["x"]}},
    {"score": float("nan")},
    {"big": 10**40},
    # Read by Python first for its brackets, with the same values.
    {"pasted": "[{" * 600},
]


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.sampled_from(["clean", "hostile", "harmless", "not json", "too deep"]), max_size=40
    ),
    st.sampled_from([2, 50_000]),
)
def test_hostile_records_cost_only_themselves(kinds, streamed_from):
    """However hostile records mix with clean ones, every other record validates exactly as
    it does alone, and each hostile one is rejected with a reason. `streamed_from` 2 runs
    the day's halving through the streaming engine, as a day of 50,000 records does."""
    from analytics_assets.transforms import records as module

    module_threshold, module._STREAMED_FROM = module._STREAMED_FROM, streamed_from
    try:
        _hostile_records_cost_only_themselves(kinds)
    finally:
        module._STREAMED_FROM = module_threshold


def _hostile_records_cost_only_themselves(kinds: list[str]) -> None:
    changes = {"hostile": _HOSTILE_FIELDS, "harmless": _HARMLESS_FIELDS}
    records = [
        message(number, content=f"text {number}")
        | (changes[kind][number % 5] if kind in changes else {})
        for number, kind in enumerate(kinds)
    ]
    frame = raw("messages", records)
    # Deeper than Python reads, and than polars' streaming decoder survives.
    deep = "[" * 6000 + "]" * 6000
    for number, kind in enumerate(kinds):
        if kind == "not json":
            frame = _with_record_text(frame, number, f"{{broken {number}")
        if kind == "too deep":
            text = frame["record"][number].replace(f'"text {number}"', deep)
            frame = _with_record_text(frame, number, text)
    validated = validate_messages(frame)

    def optional_only(number: int, kind: str) -> bool:
        # A hostile latency, feedback or model is left empty; its message is kept.
        return kind == "hostile" and set(_HOSTILE_FIELDS[number % 5]) <= _OPTIONAL_FIELDS

    kept = [
        message(n, content=f"text {n}")
        for n, k in enumerate(kinds)
        if k in ("clean", "harmless") or optional_only(n, k)
    ]
    alone = validate_messages(raw("messages", kept))
    assert validated.valid.drop("record_id").equals(alone.valid.drop("record_id"))
    lost = validated.rejected.filter(is_lost(pl.col("reason")))
    assert sorted(int(i) for i in lost["record_id"]) == [
        n
        for n, k in enumerate(kinds)
        if k in ("not json", "too deep") or (k == "hostile" and not optional_only(n, k))
    ]
    emptied = validated.rejected.filter(~is_lost(pl.col("reason")))
    assert sorted(int(i) for i in emptied["record_id"]) == [
        n for n, k in enumerate(kinds) if optional_only(n, k)
    ]
    assert validated.rejected["reason"].is_not_null().all()


def test_validated_timestamps_equal_parse_utc_timestamp_in_every_format():
    # Validation parses NocoDB's format first and the rest only where it failed.
    texts = [
        "2026-11-01 10:00:00+00:00",
        "2026-11-01T10:00:00.250Z",
        "2026-11-01 10:00:00",
        "2026-11-01 12:00:00+02:00",
        "2026-11-01 10:00",
        "2026-11-01 10:00:00.5+00:00",
        " 2026-11-01T10:00:00+00:00 ",
        "2026-11-01 11:00:00+01",
        "not a time",
    ]
    records = [
        message(n, created_at=text, CreatedAt=text, UpdatedAt=text) for n, text in enumerate(texts)
    ]
    validated = validate_messages(raw("messages", records))
    expected = pl.select(parse_utc_timestamp(pl.lit(pl.Series(texts)))).to_series().to_list()
    by_id = {row["message_id"]: row for row in validated.valid.to_dicts()}
    for number, value in enumerate(expected[:-1]):
        row = by_id[f"m-{number}"]
        assert row["created_at"] == row["source_created_at"] == row["source_updated_at"] == value
    assert validated.rejected["reason"].to_list() == ["invalid created_at 'not a time'"]


def test_a_range_run_gives_each_day_what_a_run_of_that_day_gives_it():
    """A message NocoDB holds on D and D+1 (a re-delivery stamped after midnight): validated
    day by day, each day keeps its copy; validated as one range, D's copy was rejected as
    superseded, and D's figures depended on how the day was built."""
    from datetime import timedelta

    next_day = DAY + timedelta(days=1)
    on_day = message(1, content="late answer", created_at="2026-11-01 23:59:59+00:00")
    late = {"created_at": "2026-11-02 00:00:01+00:00", "CreatedAt": "2026-11-02 00:00:02+00:00"}
    again = message(2, message_id="m-1", content="late answer", **late)
    first, second = raw("messages", [on_day]), raw("messages", [again], next_day)
    by_day = [validate_messages(first), validate_messages(second)]
    as_range = validate_messages(pl.concat([first, second]))
    assert as_range.rejected.is_empty() and all(day.rejected.is_empty() for day in by_day)
    assert as_range.valid.equals(pl.concat([day.valid for day in by_day]))


def test_the_digest_of_what_a_day_reads_of_the_next_changes_only_with_those_rows():
    """`carried_rows_digest`: what day D's build read of D+1 (the rows of D+1 that belong to
    D's conversations), independent of row and column order, blind to every other row."""
    next_day = date(2026, 11, 2)
    conversations = pl.DataFrame(
        {"conversation_id": ["c-late", "c-other-day"], "day": [DAY, next_day]}
    )
    messages = pl.DataFrame(
        {
            "message_id": ["m-1", "m-2", "m-3", "m-4"],
            "conversation_id": ["c-late", "c-late", "c-late", "c-other-day"],
            "content": ["before midnight", "after midnight", "later still", "another"],
            "prompt_tokens": [1, None, 3, 4],
            "day": [DAY, next_day, next_day, next_day],
        }
    )
    digest = carried_rows_digest(messages, conversations, DAY)
    shuffled = messages.reverse().select(sorted(messages.columns, reverse=True))
    assert carried_rows_digest(shuffled.lazy(), conversations, DAY) == digest
    # Rows D does not read of D+1: its own day's, and another day's conversations'.
    unread = messages.with_columns(
        pl.when(pl.col("message_id").is_in(["m-1", "m-4"]))
        .then(pl.lit("edited"))
        .otherwise(pl.col("content"))
        .alias("content")
    )
    assert carried_rows_digest(unread, conversations, DAY) == digest
    # Any field of a row it read, a null becoming a value, a row gone.
    edited = messages.with_columns(
        pl.when(pl.col("message_id") == "m-2").then(pl.lit("edited")).otherwise("content")
        .alias("content")
    )  # fmt: skip
    assert carried_rows_digest(edited, conversations, DAY) != digest
    filled = messages.with_columns(pl.col("prompt_tokens").fill_null(0))
    assert carried_rows_digest(filled, conversations, DAY) != digest
    deleted = messages.filter(pl.col("message_id") != "m-3")
    assert carried_rows_digest(deleted, conversations, DAY) != digest
    # Nothing read then, nothing now: the same digest (no rebuild for an empty next day).
    empty = messages.filter(pl.col("day") == DAY)
    assert carried_rows_digest(empty, conversations, DAY) == carried_rows_digest(
        messages.clear(), conversations, DAY
    )


def test_rejections_of_one_message_id_in_two_conversations_are_two_error_documents():
    """An export without NocoDB's `Id`: a rejected record is named by its key. Message 1 of
    two conversations, both rejected on one day, were both `record_key` "1": one MongoDB
    processing_errors document (the second replaced the first) for two lake rows."""
    from analytics_assets.storage.collections import COLLECTIONS
    from analytics_assets.storage.mongo import frame_to_documents
    from analytics_assets.transforms.records import validate_messages

    day, at = date(2026, 11, 2), datetime(2026, 11, 2, 9, tzinfo=UTC)
    records = [{"message_id": "1", "conversation_id": conversation, "role": "bot",
                "content": "x", "created_at": at.isoformat()}
               for conversation in ("c-1", "c-2")]  # fmt: skip
    raw = raw_frame_from_records(records, table="messages", day=day, page=0, fetched_at=at,
                                 source="export:test")  # fmt: skip
    rejected = validate_messages(raw).rejected
    assert rejected.height == 2
    ids = {doc["_id"] for doc in frame_to_documents(rejected, COLLECTIONS["processing_errors"])}
    assert len(ids) == 2


def test_rows_of_one_record_without_an_id_are_documents_of_their_own():
    """An export without NocoDB's `Id`: an older copy of a message (superseded) and its
    newer copy kept without a wrong value were both keyed `c-1:1`: one MongoDB document for
    two rows in the lake."""
    from analytics_assets.storage.collections import COLLECTIONS
    from analytics_assets.storage.mongo import frame_to_documents

    day, at = date(2026, 11, 2), datetime(2026, 11, 2, 9, tzinfo=UTC)
    base = {"message_id": "1", "conversation_id": "c-1", "role": "user", "content": "x",
            "created_at": at.isoformat(), "CreatedAt": at.isoformat()}  # fmt: skip
    newer = base | {"feedback": "meh", "UpdatedAt": (at + timedelta(minutes=5)).isoformat()}
    lone = base | {"message_id": "2", "latency_ms": -1}
    raw = raw_frame_from_records([base, newer, lone], table="messages", day=day, page=0,
                                 fetched_at=at, source="export:test")  # fmt: skip
    rejected = validate_messages(raw).rejected
    assert rejected.height == 3
    ids = {doc["_id"] for doc in frame_to_documents(rejected, COLLECTIONS["processing_errors"])}
    assert len(ids) == 3
    # A key no other row has is kept as it was.
    assert "c-1:2" in rejected["record_key"].to_list()


def test_identical_rows_of_one_record_without_an_id_are_documents_of_their_own():
    """An export without NocoDB's `Id` holding one record several times, byte for byte (a
    re-delivery): its older copies, or its bad copies, had the same record and reason, so
    the hash left them one key: one MongoDB document for several rows in the lake."""
    from analytics_assets.storage.collections import COLLECTIONS
    from analytics_assets.storage.mongo import frame_to_documents

    day, at = date(2026, 11, 2), datetime(2026, 11, 2, 9, tzinfo=UTC)
    good = {"message_id": "1", "conversation_id": "c-1", "role": "user", "content": "x",
            "created_at": at.isoformat(), "CreatedAt": at.isoformat()}  # fmt: skip
    bad = good | {"message_id": "2", "created_at": None}
    raw = raw_frame_from_records([good, good, good, bad, bad], table="messages", day=day,
                                 page=0, fetched_at=at, source="export:test")  # fmt: skip
    rejected = validate_messages(raw).rejected
    assert rejected.height == 4
    ids = {doc["_id"] for doc in frame_to_documents(rejected, COLLECTIONS["processing_errors"])}
    assert len(ids) == 4
    # The same rows keep the same keys in the next run.
    assert (
        validate_messages(raw).rejected["record_key"].to_list() == rejected["record_key"].to_list()
    )


def test_rejected_messages_whose_ids_hold_colons_keep_keys_of_their_own():
    """Message `m` of conversation `c:d` and message `d:m` of conversation `c` were both
    `c:d:m`, joined without escaping: one processing_errors document for two lake rows. The
    key is written as every key of several ids is (`keys.joined_key`), the way tombstones
    and MongoDB `_id`s already were."""
    from analytics_assets.keys import joined_key
    from analytics_assets.storage.collections import COLLECTIONS
    from analytics_assets.storage.mongo import frame_to_documents
    from analytics_assets.transforms.records import validate_messages

    day, at = date(2026, 11, 2), datetime(2026, 11, 2, 9, tzinfo=UTC)
    # The last has no conversation (a reason to reject it): its id alone is escaped too, or
    # `c:m` would be message `m` of conversation `c`.
    ids = (("c:d", "m"), ("c", "d:m"), ("c", "m"), (None, "c:m"))
    records = [{"message_id": message, "conversation_id": conversation, "role": "bot",
                "content": "x", "created_at": at.isoformat()}
               for conversation, message in ids]  # fmt: skip
    raw = raw_frame_from_records(records, table="messages", day=day, page=0, fetched_at=at,
                                 source="export:test")  # fmt: skip
    rejected = validate_messages(raw).rejected
    assert sorted(rejected["record_key"]) == sorted(
        [joined_key("c:d", "m"), joined_key("c", "d:m"), joined_key("c", "m"), joined_key("c:m")]
    )
    documents = frame_to_documents(rejected, COLLECTIONS["processing_errors"])
    assert len({doc["_id"] for doc in documents}) == 4
