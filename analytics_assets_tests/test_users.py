"""User analytics: activity and retention on a hand-built history."""

from __future__ import annotations

from datetime import date, timedelta

import polars as pl

from analytics_assets.analytics.users import USER_SCHEMA, user_analytics

DAY = date(2026, 11, 20)


def rows(user: str, day: date, topic: str, model: str, satisfaction: float) -> dict:
    return {
        "user_id": user, "day": day, "message_count": 4, "topic": topic, "model": model,
        "sentiment_end_score": 0.5, "satisfaction_score": satisfaction, "quality_score": 0.8,
    }  # fmt: skip


def test_activity_first_seen_and_returns_within_7_and_30_days():
    window = pl.DataFrame(
        [
            rows("u1", DAY - timedelta(days=10), "billing", "gpt-4o", 0.2),
            rows("u1", DAY, "billing", "gpt-4o", 0.6),
            rows("u1", DAY, "bug", "llama-3-70b", 0.8),
            rows("u2", DAY - timedelta(days=3), "pricing", "gpt-4o", 0.5),
            rows("u2", DAY, "pricing", "gpt-4o", 1.0),
            rows("u3", DAY, "how_to", "claude-3-5-sonnet", 0.4),
            rows("u4", DAY - timedelta(days=40), "bug", "gpt-4o", 0.4),  # beyond 30 days
            rows("u4", DAY, "bug", "gpt-4o", 0.4),
        ]
    )
    result = {row["user_id"]: row for row in user_analytics(DAY, window).to_dicts()}
    assert set(result) == {"u1", "u2", "u3", "u4"}
    u1 = result["u1"]
    assert (u1["conversations"], u1["messages"]) == (2, 8)
    assert u1["topics"] == ["billing", "bug"] and u1["models"] == ["gpt-4o", "llama-3-70b"]
    assert u1["satisfaction_mean"] == 0.7
    assert u1["first_seen"] == DAY - timedelta(days=10) and u1["last_seen"] == DAY
    assert (u1["returned_within_7d"], u1["returned_within_30d"]) == (False, True)
    assert (result["u2"]["returned_within_7d"], result["u2"]["returned_within_30d"]) == (True, True)
    assert (result["u3"]["returned_within_7d"], result["u3"]["returned_within_30d"]) == (
        False,
        False,
    )
    assert result["u4"]["returned_within_30d"] is False and result["u4"]["first_seen"] == DAY
    assert result["u1"]["period"] == "2026-11-20"


def test_a_day_without_users_is_empty_and_valid():
    window = pl.DataFrame([rows("u1", DAY - timedelta(days=1), "bug", "gpt-4o", 0.5)])
    result = user_analytics(DAY, window)
    assert result.height == 0 and result.schema == pl.Schema(USER_SCHEMA)


def test_each_mean_says_how_many_conversations_it_is_over():
    scored = rows("u1", DAY, "billing", "gpt-4o", 0.6)
    unscored = {**rows("u1", DAY, "bug", "gpt-4o", 0.8), "sentiment_end_score": None}
    window = pl.DataFrame([scored, unscored, unscored])
    (u1,) = user_analytics(DAY, window).to_dicts()
    assert (u1["conversations"], u1["sentiment_end_scored"], u1["quality_scored"]) == (3, 1, 3)
    assert u1["sentiment_end_mean"] == 0.5
