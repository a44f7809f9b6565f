"""Deterministic sample source: NocoDB-shaped conversations and messages of a SaaS chatbot.

The same records become the embedded default (an export folder) and seed a live NocoDB, so
the local run, the tests and the benchmarks all see one realistic, reproducible data set.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from analytics_assets.sources.phrases import (
    ASSISTANT_REPLIES,
    CHANNELS,
    FOLLOW_UPS,
    LANGUAGE_WEIGHTS,
    MODELS,
    OPENINGS,
)

SAMPLE_START = date(2026, 11, 1)
SENTIMENT_WEIGHTS = {"positive": 0.35, "neutral": 0.40, "negative": 0.25}
SYSTEM_PROMPT = "You are a helpful support assistant for Acme Analytics."


# `_inject_problems` spoils 3 conversations and 7 messages of the sample.
MIN_CONVERSATIONS_WITH_BAD_RECORDS = 5


@dataclass(frozen=True)
class SampleSpec:
    start: date = SAMPLE_START
    days: int = 14
    conversations: int = 3200
    users: int = 300
    seed: int = 20261101
    with_bad_records: bool = True

    def __post_init__(self) -> None:
        for name in ("days", "conversations", "users"):
            if getattr(self, name) < 1:
                raise ValueError(f"a sample needs at least 1 of {name}, got {getattr(self, name)}")
        if self.with_bad_records and self.conversations < MIN_CONVERSATIONS_WITH_BAD_RECORDS:
            raise ValueError(
                f"a sample with bad records needs at least {MIN_CONVERSATIONS_WITH_BAD_RECORDS} "
                f"conversations (the bad records are edits of good ones), got {self.conversations}"
            )

    @property
    def end(self) -> date:
        """The last day (inclusive) that holds conversations."""
        return self.start + timedelta(days=self.days - 1)


@dataclass
class InjectedProblem:
    table: str
    key: str | None
    conversation_id: str | None
    reason: str
    # Validation keeps the record, with the wrong optional value left empty.
    kept: bool = False


@dataclass
class SampleData:
    spec: SampleSpec
    conversations: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    # Ground truth for every conversation: topic, intent, sentiment, language.
    labels: list[dict[str, Any]]
    problems: list[InjectedProblem] = field(default_factory=list)

    def days(self) -> list[date]:
        return [self.spec.start + timedelta(days=offset) for offset in range(self.spec.days)]


def format_timestamp(moment: datetime | None) -> str | None:
    """NocoDB's own DateTime format in API responses."""
    return None if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S+00:00")


def _weighted(rng: random.Random, weights: dict[str, float]) -> str:
    return rng.choices(list(weights), weights=list(weights.values()))[0]


def _start_time(rng: random.Random, day: date) -> datetime:
    # Office-hours peak with a long tail into the night, so some conversations cross midnight.
    hour = min(23, max(0, int(rng.gauss(14, 4.5))))
    start = datetime(day.year, day.month, day.day, hour, tzinfo=UTC)
    return start + timedelta(minutes=rng.randrange(60), seconds=rng.randrange(60))


def _conversation(
    rng: random.Random, index: int, spec: SampleSpec, user_ids: list[str]
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    conversation_id = f"conv-{index:06d}"
    language = _weighted(rng, LANGUAGE_WEIGHTS)
    topic, intent, opening = rng.choice(OPENINGS[language])
    sentiment = "negative" if intent == "complaint" else _weighted(rng, SENTIMENT_WEIGHTS)
    model = _weighted(rng, MODELS)
    # Skewed activity: a few users talk a lot, most talk rarely.
    user_id = user_ids[min(len(user_ids) - 1, int(rng.paretovariate(1.2)) - 1)]
    if rng.random() < 0.7:
        user_id = rng.choice(user_ids)
    day = spec.start + timedelta(days=rng.randrange(spec.days))
    started_at = _start_time(rng, day)

    messages: list[dict[str, Any]] = []
    moment = started_at
    context_tokens = 0

    def add(role: str, content: str, **extra: Any) -> None:
        nonlocal moment
        turn = len(messages)
        messages.append(
            {
                "message_id": f"msg-{index:06d}-{turn:02d}",
                "conversation_id": conversation_id,
                "role": role,
                "content": content,
                "model": model if role == "assistant" else None,
                "created_at": format_timestamp(moment),
                "prompt_tokens": extra.get("prompt_tokens"),
                "completion_tokens": extra.get("completion_tokens"),
                "latency_ms": extra.get("latency_ms"),
                "feedback": extra.get("feedback"),
                "CreatedAt": format_timestamp(moment + timedelta(seconds=1)),
                "UpdatedAt": None,
            }
        )

    if rng.random() < 0.2:
        add("system", SYSTEM_PROMPT)
        context_tokens += 12
    turns = 1 + min(7, int(rng.expovariate(1 / 3.2)))
    abandoned = rng.random() < 0.06
    for turn in range(turns):
        text = opening if turn == 0 else rng.choice(FOLLOW_UPS[language][sentiment])
        if rng.random() < 0.03:
            text += " 🙏"
        add("user", text)
        context_tokens += max(1, len(text) // 4)
        if abandoned and turn == turns - 1:
            break
        latency_ms = round(rng.lognormvariate(7.3, 0.6), 1)
        moment += timedelta(milliseconds=latency_ms)
        reply = rng.choice(ASSISTANT_REPLIES[language])
        completion_tokens = max(1, len(reply) // 4 + rng.randrange(40))
        feedback = None
        if rng.random() < 0.25:
            up_share = {"positive": 0.9, "neutral": 0.6, "negative": 0.15}[sentiment]
            feedback = "up" if rng.random() < up_share else "down"
        add(
            "assistant",
            reply,
            prompt_tokens=context_tokens,
            completion_tokens=completion_tokens,
            latency_ms=latency_ms,
            feedback=feedback,
        )
        context_tokens += completion_tokens
        moment += timedelta(seconds=rng.randrange(8, 150))

    rating = None
    updated_at = None
    if rng.random() < 0.4:
        center = {"positive": 4.6, "neutral": 3.6, "negative": 1.8}[sentiment]
        rating = min(5, max(1, round(rng.gauss(center, 0.7))))
        # Ratings arrive after the conversation ends, as an edit of the row.
        updated_at = moment + timedelta(minutes=rng.randrange(1, 30))
    conversation = {
        "conversation_id": conversation_id,
        "user_id": user_id,
        "model": model,
        "channel": _weighted(rng, CHANNELS),
        "started_at": format_timestamp(started_at),
        "rating": rating,
        "CreatedAt": format_timestamp(started_at + timedelta(seconds=1)),
        "UpdatedAt": format_timestamp(updated_at),
    }
    label = {
        "conversation_id": conversation_id,
        "topic": topic,
        "intent": intent,
        "sentiment": sentiment,
        "language": language,
        "opening": opening,
    }
    return conversation, messages, label


def _inject_problems(data: SampleData, rng: random.Random) -> None:
    """A few deliberately bad records, each of a kind seen in real chatbot logs."""
    messages = data.messages
    conversations = data.conversations
    picks = rng.sample(range(len(messages)), 7)

    def problem(
        table: str, record: dict[str, Any], key_field: str, reason: str, *, kept: bool = False
    ) -> None:
        data.problems.append(
            InjectedProblem(
                table, record.get(key_field), record.get("conversation_id"), reason, kept
            )
        )

    bad = messages[picks[0]]
    bad["role"] = "bot"
    problem("messages", bad, "message_id", "invalid role")
    bad = messages[picks[1]]
    data.problems.append(
        InjectedProblem("messages", bad["message_id"], None, "missing conversation_id")
    )
    bad["conversation_id"] = None
    bad = messages[picks[2]]
    bad["completion_tokens"] = -5
    problem("messages", bad, "message_id", "negative completion_tokens", kept=True)
    bad = messages[picks[3]]
    bad["feedback"] = "meh"
    problem("messages", bad, "message_id", "invalid feedback", kept=True)
    bad = messages[picks[4]]
    bad["latency_ms"] = -120.0
    problem("messages", bad, "message_id", "negative latency_ms", kept=True)
    bad = messages[picks[5]]
    bad["created_at"] = None
    problem("messages", bad, "message_id", "missing created_at")
    # A message delivered twice: the later copy is an edit of the same message.
    original = messages[picks[6]]
    duplicate = dict(original, content=original["content"] + " (edited)")
    duplicate["UpdatedAt"] = format_timestamp(
        datetime.fromisoformat(original["CreatedAt"]) + timedelta(minutes=5)
    )
    messages.append(duplicate)
    problem("messages", original, "message_id", "duplicate message_id")

    picks = rng.sample(range(len(conversations)), 3)
    bad = conversations[picks[0]]
    bad["rating"] = 7
    problem("conversations", bad, "conversation_id", "rating out of range", kept=True)
    bad = conversations[picks[1]]
    bad["user_id"] = None
    problem("conversations", bad, "conversation_id", "missing user_id")
    bad = conversations[picks[2]]
    bad["started_at"] = None
    problem("conversations", bad, "conversation_id", "missing started_at")


def generate_sample(spec: SampleSpec | None = None) -> SampleData:
    spec = spec or SampleSpec()
    rng = random.Random(spec.seed)
    user_ids = [f"user-{number:05d}" for number in range(1, spec.users + 1)]
    data = SampleData(spec=spec, conversations=[], messages=[], labels=[])
    for index in range(spec.conversations):
        conversation, messages, label = _conversation(rng, index, spec, user_ids)
        data.conversations.append(conversation)
        data.messages.extend(messages)
        data.labels.append(label)
    if spec.with_bad_records:
        _inject_problems(data, rng)
    return data


def write_export(data: SampleData, folder: Path) -> Path:
    """Writes the data as NocoDB-shaped JSON exports plus the labels and a manifest."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in (
        ("conversations", data.conversations),
        ("messages", data.messages),
        ("labels", data.labels),
    ):
        tmp = folder / f".{name}.json.tmp"
        tmp.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
        tmp.replace(folder / f"{name}.json")
    # Corrections as a team would enter them: every fifth conversation's true labels.
    feedback = [
        {
            "conversation_id": label["conversation_id"],
            "topic": label["topic"],
            "intent": label["intent"],
            "sentiment": label["sentiment"],
            "corrected_by": "analyst@example.com",
            "corrected_at": f"{data.spec.end.isoformat()} 18:00:00+00:00",
        }
        for label in data.labels[::5]
    ]
    (folder / "category_feedback.json").write_text(json.dumps(feedback), encoding="utf-8")
    manifest = {
        "spec": {**asdict(data.spec), "start": data.spec.start.isoformat()},
        "days": [day.isoformat() for day in data.days()],
        "conversations": len(data.conversations),
        "messages": len(data.messages),
        "users": len({row["user_id"] for row in data.conversations if row["user_id"]}),
        "injected_problems": [asdict(problem) for problem in data.problems],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return folder


def ensure_sample_export(folder: Path, spec: SampleSpec | None = None) -> Path:
    """Generates the sample export once; later calls reuse it (it is deterministic)."""
    spec = spec or SampleSpec()
    manifest = folder / "manifest.json"
    files = ("conversations.json", "messages.json", "labels.json", "category_feedback.json")
    if manifest.exists() and all((folder / name).exists() for name in files):
        recorded = json.loads(manifest.read_text())["spec"]
        if recorded == {**asdict(spec), "start": spec.start.isoformat()}:
            return folder
    return write_export(generate_sample(spec), folder)


def iter_for_nocodb(rows: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Records as NocoDB accepts them on insert: its system columns are set by the server."""
    for row in rows:
        yield {key: value for key, value in row.items() if key not in ("CreatedAt", "UpdatedAt")}
