"""The dashboard's numbers: conversations (as `conversation_analytics` holds them, one document
a conversation) summed per period: volumes, the four category dimensions, and quality and
satisfaction per model. Pure: the caller filters (date range, model, channel) and streams the
documents in."""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Literal

Grain = Literal["daily", "weekly", "monthly"]

# The dashboard's chart name -> the conversation field it counts.
DIMENSIONS = {"topics": "topic", "intents": "intent", "sentiments": "sentiment",
              "languages": "language"}  # fmt: skip
SCORES = ("quality_score", "satisfaction_score")
# All a conversation contributes: what the caller projects from MongoDB.
FIELDS = ("day", "model", "channel", "message_count", *DIMENSIONS.values(), *SCORES)
# A conversation not (yet) categorized, or without a model, is counted under this label.
UNKNOWN = "unknown"


def period_of(day: str, grain: Grain) -> str:
    """The period a day (ISO date) falls in, named as the reports name them: the day, the
    week's Monday, or `YYYY-MM`."""
    if grain == "daily":
        return day
    if grain == "weekly":
        return period_start(date.fromisoformat(day), grain).isoformat()
    return day[:7]


def period_start(day: date, grain: Grain) -> date:
    """The first day of the period `day` falls in."""
    if grain == "daily":
        return day
    if grain == "weekly":
        return day - timedelta(days=day.weekday())
    return day.replace(day=1)


def period_days(period: str, grain: Grain, window: tuple[date, date] | None = None) -> int:
    """How many days of the period (named as `period_of` names it) lie in `window` (first,
    last), all of them without one."""
    start = date.fromisoformat(period if grain != "monthly" else f"{period}-01")
    length = {"daily": 1, "weekly": 7}.get(grain) or calendar.monthrange(start.year, start.month)[1]
    end = start + timedelta(days=length - 1)
    if window is not None:
        start, end = max(start, window[0]), min(end, window[1])
    return max(0, (end - start).days + 1)


@dataclass
class _Mean:
    total: float = 0.0
    n: int = 0

    def add(self, value: float | None) -> None:
        if value is not None:
            self.total += float(value)
            self.n += 1

    @property
    def value(self) -> float | None:
        return round(self.total / self.n, 4) if self.n else None


@dataclass
class _ModelPeriod:
    conversations: int = 0
    scores: dict[str, _Mean] = field(default_factory=lambda: {name: _Mean() for name in SCORES})


def aggregate(
    conversations: Iterable[Mapping], grain: Grain, window: tuple[date, date] | None = None
) -> dict:
    """Totals, and per period (sorted): volumes, each dimension's counts, and each model's
    conversations and mean scores (a mean over the conversations that have the score).
    Each volume says how many days of its period the date range `window` holds (`days`),
    and whether that is all of them (`whole`): a week in progress has fewer conversations
    than a whole one, and its bar must not read as a fall."""
    volumes: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    counts = {name: defaultdict(int) for name in DIMENSIONS}
    per_model: dict[tuple[str, str], _ModelPeriod] = defaultdict(_ModelPeriod)
    overall = {name: _Mean() for name in SCORES}
    for conversation in conversations:
        # Stored as an ISO date; a datetime would read the same in its first 10 characters.
        period = period_of(str(conversation["day"])[:10], grain)
        volume = volumes[period]
        volume[0] += 1
        volume[1] += int(conversation.get("message_count") or 0)
        for name, source in DIMENSIONS.items():
            counts[name][(period, conversation.get(source) or UNKNOWN)] += 1
        model = per_model[(period, conversation.get("model") or UNKNOWN)]
        model.conversations += 1
        for score in SCORES:
            model.scores[score].add(conversation.get(score))
            overall[score].add(conversation.get(score))
    return {
        "totals": {
            "conversations": sum(v[0] for v in volumes.values()),
            "messages": sum(v[1] for v in volumes.values()),
            "quality_mean": overall["quality_score"].value,
            "satisfaction_mean": overall["satisfaction_score"].value,
        },
        "volumes": [
            {
                "period": period,
                "conversations": v[0],
                "messages": v[1],
                "days": days,
                "whole": days == period_days(period, grain),
            }
            for period, v in sorted(volumes.items())
            for days in [period_days(period, grain, window)]
        ],
        **{
            name: [
                {"period": period, "value": value, "count": count}
                for (period, value), count in sorted(by_value.items())
            ]
            for name, by_value in counts.items()
        },
        "by_model": [
            {
                "period": period,
                "model": name,
                "conversations": model.conversations,
                "quality_mean": model.scores["quality_score"].value,
                "satisfaction_mean": model.scores["satisfaction_score"].value,
            }
            for (period, name), model in sorted(per_model.items())
        ],
    }
