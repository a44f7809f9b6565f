"""Conversation analytics on a hand-built fixture, with hand-computed expected numbers."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from analytics_assets.analytics.scores import ANALYTICS_SCHEMA, conversation_analytics

T0 = datetime(2026, 11, 1, 10, tzinfo=UTC)
DAY = date(2026, 11, 1)


def conversations() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "conversation_id": ["c-1", "c-2"],
            "user_id": ["u-1", "u-2"],
            "model": ["gpt-4o", "llama-3-70b"],
            "channel": ["web", "api"],
            "started_at": [T0, T0 + timedelta(hours=1)],
            "ended_at": [T0 + timedelta(seconds=40), T0 + timedelta(hours=1, seconds=5)],
            "duration_s": [40.0, 5.0],
            "turns": [3, 1],
            "message_count": [5, 2],
            "prompt_tokens": [30, 10],
            "completion_tokens": [20, 5],
            "total_tokens": [50, 15],
            "rating": [4, None],
            "feedback_up": [1, 0],
            "feedback_down": [1, 0],
            "day": [DAY, DAY],
        },
        schema_overrides={"rating": pl.Int8, "feedback_up": pl.UInt32, "feedback_down": pl.UInt32},
    )


def messages() -> pl.DataFrame:
    rows = [
        ("m1", "c-1", "user", "How do I export?", 0, None),
        ("m2", "c-1", "assistant", "Open Settings.", 10, 1000.0),
        ("m3", "c-1", "user", "how do I export", 20, None),  # the same question again
        ("m4", "c-1", "assistant", "Use the Export button.", 30, 3000.0),
        ("m5", "c-1", "user", "I want to talk to a human agent", 40, None),  # unanswered
        ("m6", "c-2", "user", "Thanks, great product", 3600, None),
        ("m7", "c-2", "assistant", "Glad to help!", 3605, 500.0),
    ]
    return pl.DataFrame(
        {
            "message_id": [r[0] for r in rows],
            "conversation_id": [r[1] for r in rows],
            "role": [r[2] for r in rows],
            "content": [r[3] for r in rows],
            "created_at": [T0 + timedelta(seconds=r[4]) for r in rows],
            "latency_ms": [r[5] for r in rows],
        }
    )


def categories() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "conversation_id": ["c-1", "c-2"],
            "topic": ["how_to", "feedback"],
            "intent": ["support", "complaint"],
            "language": ["en", "en"],
            "sentiment_opening": ["neutral", "positive"],
            "sentiment": ["negative", "negative"],
        }
    )


def test_every_signal_and_score_is_what_the_formulas_give():
    result = conversation_analytics(conversations(), messages(), categories())
    assert result.schema == pl.Schema(ANALYTICS_SCHEMA)
    first, second = result.to_dicts()

    assert first["latency_p50_ms"] == 2000.0
    assert first["latency_p95_ms"] == pytest.approx(2900.0)
    assert (first["repeated_question"], first["unanswered_last_turn"]) == (True, True)
    assert (first["escalation"], first["abandoned_after_reply"], first["complaint"]) == (
        True, False, False,
    )  # fmt: skip
    assert first["latency_score"] == pytest.approx(1 - 900 / 8000)
    assert first["thumbs_score"] == 0.5
    assert first["rating_score"] == 0.75
    assert first["sentiment_change_score"] == 0.25
    # quality: (0 + 0 + 0 + 2 x 0.5 + 0.5 x 0.8875) / 5.5
    assert first["quality_score"] == pytest.approx(1.44375 / 5.5)
    # satisfaction: (3 x 0.75 + 2 x 0.5 + 0 + 0.5 x 0.25 + 1 + 0) / 8.5
    assert first["satisfaction_score"] == pytest.approx(4.375 / 8.5)

    assert second["latency_p95_ms"] == 500.0 and second["latency_score"] == 1.0
    assert second["abandoned_after_reply"] and second["complaint"]
    assert second["thumbs_score"] is None and second["rating_score"] is None
    assert second["quality_score"] == pytest.approx(1.0)
    # One user turn: no change of sentiment to measure.
    assert second["sentiment_change_score"] is None
    # satisfaction without rating, thumbs or change: (0 + 0 + 1) / 3
    assert second["satisfaction_score"] == pytest.approx(1 / 3)


def _one_conversation(
    turns: list[tuple[str, str]], categorized: pl.DataFrame | None = None, **header
) -> dict:
    """The analytics row of one conversation of (role, text) turns, a second apart, with
    `categorized` as its categories (by default the first fixture row's)."""
    header_frame = conversations().head(1)
    frame = header_frame.with_columns(
        *(
            pl.lit(value).cast(header_frame.schema[name]).alias(name)
            for name, value in header.items()
        )
    )
    rows = (
        messages()
        .head(0)
        .vstack(
            pl.DataFrame(
                {
                    "message_id": [f"x{i}" for i in range(len(turns))],
                    "conversation_id": ["c-1"] * len(turns),
                    "role": [role for role, _ in turns],
                    "content": [text for _, text in turns],
                    "created_at": [T0 + timedelta(seconds=i) for i in range(len(turns))],
                    "latency_ms": [500.0 if role == "assistant" else None for role, _ in turns],
                }
            )
        )
    )
    if categorized is None:
        categorized = categories().head(1)
    return conversation_analytics(frame, rows, categorized).row(0, named=True)


def test_a_conversation_without_a_user_turn_is_not_scored_as_a_perfect_one():
    """No messages (they are not there yet), or only the bot's greeting: nothing was asked,
    so answered, no repeat, no escalation, no complaint, latency and sentiment are absent,
    and quality is null without thumbs. A rating still scores satisfaction."""
    absent = (
        "answered_score", "no_repeat_score", "no_escalation_score", "no_complaint_score",
        "latency_score", "sentiment_end_score", "sentiment_change_score",
    )  # fmt: skip
    for turns in ([], [("assistant", "Hi! How can I help?")]):
        row = _one_conversation(turns, feedback_up=0, feedback_down=0)
        assert {name: row[name] for name in absent} == dict.fromkeys(absent)
        assert row["quality_score"] is None
        assert row["satisfaction_score"] == pytest.approx(0.75)  # rated 4 of 5


def test_thanks_and_emoji_said_twice_are_not_a_repeated_question():
    for first, again in (("👍", "🙏"), ("thanks!", "Thanks"), ("ok", "OK."), ("谢谢", "谢谢")):
        turns = [("user", "How do I export my data?"), ("assistant", "Use Export."),
                 ("user", first), ("assistant", "You are welcome."), ("user", again),
                 ("assistant", ":)")]  # fmt: skip
        assert not _one_conversation(turns)["repeated_question"], (first, again)
    turns = [("user", "¿Cómo exporto mis datos?"), ("assistant", "Con Exportar."),
             ("user", "cómo exporto mis datos"), ("assistant", "Con Exportar.")]  # fmt: skip
    assert _one_conversation(turns)["repeated_question"]
    # Two Han characters are a question: 退款 ("refund") asked again is a repeat.
    turns = [("user", "退款"), ("assistant", "好的。"), ("user", "退款！"), ("assistant", "…")]
    assert _one_conversation(turns)["repeated_question"]


@pytest.mark.parametrize(
    ("text", "escalates"),
    [
        ("does the password manager sync across devices?", False),
        ("I am the office manager, how do I add seats?", False),
        ("I'm a lawyer drafting a contract, can you check clause 3?", False),
        ("my supervisor asked me to export the report", False),
        ("I want to speak to your manager", True),
        ("get me a human please", True),
        ("can I talk with someone?", True),
        ("please transfer me to a representative", True),
        ("cancel my subscription now", True),
        ("my lawyer will hear about this", True),
        ("quiero hablar con un agente", True),
    ],
)
def test_escalation_is_a_request_to_leave_the_bot_not_the_word_manager(text, escalates):
    turns = [("user", text), ("assistant", "Sure.")]
    assert _one_conversation(turns)["escalation"] is escalates


def test_a_day_without_conversations_gives_an_empty_valid_frame():
    empty = conversation_analytics(
        conversations().clear(), messages().clear(), categories().clear()
    )
    assert empty.height == 0
    assert empty.schema == pl.Schema(ANALYTICS_SCHEMA)


def test_a_conversation_not_categorized_yet_is_not_scored_complaint_free():
    """No categories (not built yet, or built before the conversation came in): whether it
    was a complaint is unknown, so that component is absent. It was 1.0, and with no rating,
    thumbs or sentiment the satisfaction score came out a perfect 1.0."""
    turns = [("user", "this is useless, nothing works"), ("assistant", "Sorry to hear that.")]
    row = _one_conversation(
        turns, categories().head(0), rating=None, feedback_up=0, feedback_down=0
    )
    assert row["complaint"] is None and row["no_complaint_score"] is None
    # Only "no escalation" is known, which says nothing of satisfaction: no score.
    assert row["sentiment_end_score"] is None and row["satisfaction_score"] is None


def test_an_abstained_intent_is_not_a_complaint_free_conversation():
    turns = [("user", "hmm"), ("assistant", "How can I help?")]
    abstained = categories().head(1).with_columns(
        pl.lit("uncertain").alias("intent"), pl.lit("uncertain").alias("sentiment"),
        pl.lit("uncertain").alias("sentiment_opening"),
    )  # fmt: skip
    row = _one_conversation(turns, abstained, rating=None, feedback_up=0, feedback_down=0)
    assert row["no_complaint_score"] is None and row["satisfaction_score"] is None


def test_an_abstention_is_read_from_the_method_whatever_the_taxonomy_calls_its_fallback():
    """A team's taxonomy may call its intent fallback `unclear`: the row's method says it
    abstained. It was read as a known, non-complaint intent, so no_complaint_score was a
    perfect 1.0 for every conversation the categorizer could not read."""
    turns = [("user", "hmm"), ("assistant", "How can I help?")]
    abstained = (
        categories()
        .head(1)
        .with_columns(pl.lit("unclear").alias("intent"), pl.lit("fallback").alias("intent_method"))
    )
    row = _one_conversation(turns, abstained, rating=None, feedback_up=0, feedback_down=0)
    assert row["complaint"] is None and row["no_complaint_score"] is None
    # A label the categorizer gave is read as it is, whatever its name.
    given = abstained.with_columns(pl.lit("rules").alias("intent_method"))
    row = _one_conversation(turns, given, rating=None, feedback_up=0, feedback_down=0)
    assert row["complaint"] is False and row["no_complaint_score"] == 1.0


def test_a_tools_output_after_the_reply_is_not_the_last_word():
    """A tool message logged after the assistant's reply (or a system note) made the last
    role neither user nor assistant: the reply then read as never given."""
    tool_after = messages().vstack(
        pl.DataFrame(
            {
                "message_id": ["m8", "m9"],
                "conversation_id": ["c-2", "c-1"],
                "role": ["tool", "tool"],
                "content": ['{"status": "ok"}', '{"ticket": 7}'],
                "created_at": [T0 + timedelta(seconds=3606), T0 + timedelta(seconds=41)],
                "latency_ms": [None, None],
            }
        )
    )
    result = conversation_analytics(conversations(), tool_after, categories())
    first, second = result.to_dicts()
    assert first["unanswered_last_turn"] and not first["abandoned_after_reply"]
    assert second["abandoned_after_reply"] and not second["unanswered_last_turn"]
