"""A small, known `conversation_analytics` for the dashboard tests: seven days, two models,
two channels, uneven on purpose (so that each filter changes every total), some
conversations without scores or categories (as before the scoring and categorization runs)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

FIRST_DAY = date(2026, 11, 2)  # a Monday
DAYS = [FIRST_DAY + timedelta(days=n) for n in range(7)]
MODELS = ("gpt-4o", "claude-sonnet")
CHANNELS = ("web", "whatsapp")
TOPICS = ("billing", "shipping", "account")
INTENTS = ("question", "complaint")
SENTIMENTS = ("positive", "neutral", "negative")
LANGUAGES = ("en", "fr", "de")


def conversations() -> list[dict]:
    documents = []
    for day_number, day in enumerate(DAYS):
        for n in range(10 + 3 * day_number):
            conversation_id = f"conv-{day:%m%d}-{n:03d}"
            documents.append(
                {
                    "_id": conversation_id,
                    "conversation_id": conversation_id,
                    "user_id": f"u_{n % 7:020x}",
                    "started_at": datetime(day.year, day.month, day.day, 8, n, tzinfo=UTC),
                    "day": day.isoformat(),
                    # One in three on the second model, channels alternating.
                    "model": MODELS[n % 3 == 0],
                    "channel": CHANNELS[n % 2],
                    "message_count": 2 + n % 4,
                    "topic": None if n == 5 else TOPICS[(n + day_number) % 3],
                    "intent": INTENTS[n % 2 == 0 and n % 3 == 0],
                    "sentiment": SENTIMENTS[(n * day_number) % 3],
                    "language": LANGUAGES[n % 3 == 1] if n % 5 else LANGUAGES[2],
                    "quality_score": round(0.4 + (n % 5) / 10 + (n % 3 == 0) * 0.1, 2),
                    "satisfaction_score": None if n % 4 == 3 else round(0.3 + (n % 6) / 10, 2),
                }
            )
    return documents


def seed(db) -> list[dict]:
    documents = conversations()
    db["conversation_analytics"].delete_many({})
    db["conversation_analytics"].insert_many(documents)
    return documents
