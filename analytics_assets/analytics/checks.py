"""The arithmetic of the asset checks (pure, so each is tested on fixtures that trip it)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# PSI above 0.25 is the usual line for a significant population shift (0.1-0.25: moderate).
PSI_ALERT = 0.25
# Volume outside half to double the trailing median is worth a look, not an outage.
VOLUME_LOW, VOLUME_HIGH = 0.5, 2.0
# Fewer days of history than this and a median means little: the check passes and says so.
MIN_HISTORY_DAYS = 3
# Share of a day's records rejected before reports built on it stop being trustworthy.
ERROR_RATE_ALERT = 0.02
# Share of a day's records kept with a wrong optional value left empty above which a column
# is likely mapped or written wrong (every feedback "thumbs_up", ratings out of 10): nothing
# is lost, so the error rate stays quiet, but a metric goes empty without a word.
VALUES_LEFT_EMPTY_ALERT = 0.02
_EPSILON = 1e-4


@dataclass(frozen=True)
class Verdict:
    passed: bool
    metadata: dict


def population_stability_index(current: Mapping[str, int], baseline: Mapping[str, int]) -> float:
    """PSI = sum over labels of (p - q) * ln(p / q), shares smoothed so a new label counts."""
    labels = set(current) | set(baseline)
    total_now = sum(current.values()) or 1
    total_then = sum(baseline.values()) or 1
    psi = 0.0
    for label in labels:
        p = max(current.get(label, 0) / total_now, _EPSILON)
        q = max(baseline.get(label, 0) / total_then, _EPSILON)
        psi += (p - q) * math.log(p / q)
    return psi


def drift_verdict(current: Mapping[str, int], history: Sequence[Mapping[str, int]]) -> Verdict:
    if len(history) < MIN_HISTORY_DAYS or not sum(current.values()):
        return Verdict(True, {"history_days": len(history), "note": "not enough to compare"})
    baseline: dict[str, int] = {}
    for day in history:
        for label, count in day.items():
            baseline[label] = baseline.get(label, 0) + count
    psi = population_stability_index(current, baseline)
    return Verdict(psi <= PSI_ALERT, {"psi": round(psi, 4), "threshold": PSI_ALERT,
                                      "history_days": len(history)})  # fmt: skip


def volume_verdict(today: int, history: Sequence[int]) -> Verdict:
    """Today against the median of the trailing days that had records. Days without any
    are an outage (or a quiet weekend), not the normal: counted in, four empty days of seven
    made the median 0, and the check went green on the fifth day of a dead source. A day
    without records after any day with some fails; once the whole window is empty there is
    nothing left to compare with."""
    delivering = [count for count in history if count]
    figures = {"today": today, "history_days": len(history),
               "empty_days": len(history) - len(delivering)}  # fmt: skip
    if len(history) < MIN_HISTORY_DAYS or not delivering:
        return Verdict(True, {**figures, "note": "not enough to compare"})
    median = statistics.median(delivering)
    figures |= {"trailing_median": median, "ratio": round(today / median, 3),
                "allowed": [VOLUME_LOW, VOLUME_HIGH]}  # fmt: skip
    if not today:
        return Verdict(False, {**figures, "note": "no records after days with records"})
    if len(delivering) < MIN_HISTORY_DAYS:
        return Verdict(True, {**figures, "note": "not enough to compare"})
    return Verdict(VOLUME_LOW <= today / median <= VOLUME_HIGH, figures)


def error_rate_verdict(errors: int, accepted: int, superseded: int = 0) -> Verdict:
    """`errors`: records lost to validation; `superseded`: older copies of records kept in
    their newest copy, shown but neither lost nor counted."""
    total = errors + accepted
    rate = errors / total if total else 0.0
    return Verdict(
        rate <= ERROR_RATE_ALERT,
        {"errors": errors, "records": total, "error_rate": round(rate, 5),
         "threshold": ERROR_RATE_ALERT, "superseded_copies": superseded},
    )  # fmt: skip


def values_left_empty_verdict(
    kept: int, accepted: int, reasons: Mapping[str, int] | None = None
) -> Verdict:
    """`kept`: the day's records kept with a wrong optional value left empty, among the
    `accepted` ones; `reasons`: what was wrong, values left out, by count."""
    rate = kept / accepted if accepted else 0.0
    return Verdict(
        rate <= VALUES_LEFT_EMPTY_ALERT,
        {"kept_without_values": kept, "records": accepted, "rate": round(rate, 5),
         "threshold": VALUES_LEFT_EMPTY_ALERT, "reasons": dict(reasons or {})},
    )  # fmt: skip


def rejected_records_note(day, errors: int, accepted: int, superseded: int = 0) -> str | None:
    """What a day's report says of itself when more of its records were rejected than
    `error_rate_verdict` allows (a `missing_inputs` entry: records it was built without)."""
    verdict = error_rate_verdict(errors, accepted, superseded)
    if verdict.passed:
        return None
    return (
        f"processing_errors {day.isoformat()} ({verdict.metadata['error_rate']:.2%} of "
        f"{verdict.metadata['records']:,} records rejected, over {ERROR_RATE_ALERT:.0%})"
    )


RECONCILED_TOTALS = ("conversations", "messages", "prompt_tokens", "completion_tokens",
                     "total_tokens", "errors", "quality_count", "satisfaction_count",
                     "latency_count", "categorized_via_translation")  # fmt: skip
# Sums of scores: equal to float precision, not to the bit (the order of the additions).
RECONCILED_SUMS = ("quality_sum", "satisfaction_sum", "latency_p50_sum")
# Each mean of a period is its pooled mean: its sum over its count, not a mean of daily means.
POOLED_MEANS = {
    "quality_mean": ("quality_sum", "quality_count"),
    "satisfaction_mean": ("satisfaction_sum", "satisfaction_count"),
    "latency_p50_mean": ("latency_p50_sum", "latency_count"),
}
RECONCILED_DISTRIBUTIONS = ("topics", "intents", "sentiments", "languages")


def _close(a: object, b: object) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
    return a == b


def _models(rows: Sequence[Mapping]) -> dict[str, dict[str, float]]:
    """Per model, every part of `per_model` summed over `rows`."""
    models: dict[str, dict[str, float]] = {}
    for row in rows:
        for part in row.get("per_model") or []:
            summed = models.setdefault(part["model"], {})
            for key, value in part.items():
                if key != "model":
                    summed[key] = summed.get(key, 0) + (value or 0)
    return models


def reconciliation_verdict(period: Mapping, days: Sequence[Mapping]) -> Verdict:
    """A week's or month's report against its daily reports: every total and sum equals the
    sum of the days', its users the union of theirs, each distribution's counts and each
    model's parts the sum of theirs, and each mean the pooled one (its sum over its count).
    A field a day was reported without counts as nothing."""
    expected: dict[str, object] = {
        name: sum(day.get(name) or 0 for day in days) for name in RECONCILED_TOTALS
    }
    expected |= {name: sum(day.get(name) or 0.0 for day in days) for name in RECONCILED_SUMS}
    expected["users"] = len({user for day in days for user in day["user_ids"]})
    expected["new_users"] = len({user for day in days for user in day["new_user_ids"]})
    for name in RECONCILED_DISTRIBUTIONS:
        counts: dict[str, int] = {}
        for day in days:
            for item in day.get(name) or []:
                counts[item["value"]] = counts.get(item["value"], 0) + item["count"]
        expected[name] = counts
    expected["per_model"] = _models(days)
    actual: dict[str, object] = {
        name: period.get(name) or 0 for name in (*RECONCILED_TOTALS, *RECONCILED_SUMS)
    }
    actual["users"], actual["new_users"] = period["users"], period["new_users"]
    for name in RECONCILED_DISTRIBUTIONS:
        actual[name] = {item["value"]: item["count"] for item in period.get(name) or []}
    actual["per_model"] = _models([period])
    mismatches = {
        name: {"period": actual[name], "days": value}
        for name, value in expected.items()
        if not _same(actual[name], value)
    }
    for name, (total, count) in POOLED_MEANS.items():
        pooled = expected[total] / expected[count] if expected[count] else None
        stated = period.get(name)
        if (stated is None) != (pooled is None) or not _close(stated or 0.0, pooled or 0.0):
            mismatches[name] = {"period": stated, "days": pooled}
    return Verdict(not mismatches, {"mismatches": mismatches, "days": len(days)})


def _same(a: object, b: object) -> bool:
    """Equal, floats to their precision, dictionaries key by key."""
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(_same(a[key], b[key]) for key in a)
    return _close(a, b)
