"""The optional LLM tier: an OpenAI-compatible chat endpoint (a self-hosted server or a
provider) labels what the rules and the model tier abstained on.

- Structured output: the request carries a JSON schema whose fields are enums of the
  taxonomy's labels; an answer that does not parse or names a label the taxonomy lacks is an
  abstention with its reason, never a label.
- Budget: at most `budget` requests per run; texts past it are skipped (and counted).
- Cache: answers are kept by a hash of (endpoint, model, the prompt and schema the taxonomy
  makes, text), so a backfill that meets the same text again does not pay for it twice, and
  a taxonomy edited without a new version (a label added, a description changed) asks again.
- Cost: tokens from the responses' `usage`, priced per 1,000 tokens, reported per run; the
  responses without a usable `usage` are counted, as their cost is unknown, not 0.
- An endpoint that failed `FAILURES_IN_A_ROW` requests in a row is not asked again in the
  run: at 30 s a timeout, a down endpoint cost the run's whole budget of them.

Off unless a deployment sets ANALYTICS_LLM_URL. Pure: no Dagster here.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from analytics_assets.categorization.taxonomy import Taxonomy, canonical_label

DIMENSIONS = ("topic", "intent", "sentiment")
SENTIMENTS = ("positive", "negative", "neutral")
# A label from the LLM is a claim without a calibrated probability; it is recorded with
# this confidence so that reports can tell it from the tiers that measure theirs.
LLM_CONFIDENCE = 0.7
MAX_TEXT_CHARS = 2000
FAILURES_IN_A_ROW = 5
# More tokens than this in one response's `usage` is a server's bug, not a bill.
MAX_TOKENS_PER_RESPONSE = 1_000_000


@dataclass
class LlmLabel:
    labels: dict[str, str] | None
    reason: str | None = None  # why it abstained
    cached: bool = False


@dataclass
class LlmRun:
    requests: int = 0
    cache_hits: int = 0
    over_budget: int = 0
    abstained: Counter = field(default_factory=Counter)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    without_usage: int = 0
    cost: float = 0.0
    seconds: float = 0.0

    def metadata(self) -> dict:
        return {
            "llm_requests": self.requests,
            "llm_cache_hits": self.cache_hits,
            "llm_over_budget": self.over_budget,
            "llm_abstained": dict(self.abstained),
            "llm_prompt_tokens": self.prompt_tokens,
            "llm_completion_tokens": self.completion_tokens,
            # Of the responses that said their usage; `llm_requests_without_usage` did not.
            "llm_cost": round(self.cost, 6),
            "llm_requests_without_usage": self.without_usage,
            "llm_seconds": round(self.seconds, 3),
        }


def _options(taxonomy: Taxonomy, dimension: str) -> list[str]:
    """The labels the endpoint may answer: the taxonomy's, and its fallback (`other`,
    `uncertain`), so that it can say none fits. Without it a strict schema made a compliant
    endpoint pick a label for anything, junk included, and the pick was stored as sure."""
    names = taxonomy.names(dimension)
    fallback = taxonomy.fallbacks[dimension]
    return names if fallback in names else [*names, fallback]


def _schema(taxonomy: Taxonomy) -> dict:
    options = {
        "topic": _options(taxonomy, "topic"),
        "intent": _options(taxonomy, "intent"),
        "sentiment": list(SENTIMENTS),
    }
    return {
        "name": "labels",
        "strict": True,
        "schema": {
            "type": "object",
            "properties": {d: {"type": "string", "enum": options[d]} for d in DIMENSIONS},
            "required": list(DIMENSIONS),
            "additionalProperties": False,
        },
    }


def _prompt(taxonomy: Taxonomy) -> str:
    lines = ["Label the user's first message to a chatbot. Answer with JSON only."]
    for dimension in ("topic", "intent"):
        lines.append(f"{dimension}:")
        lines += [
            f"- {label.name}: {label.description}" for label in taxonomy.labels[dimension].values()
        ]
        fallback = taxonomy.fallbacks[dimension]
        if fallback not in taxonomy.labels[dimension]:
            lines.append(f"- {fallback}: none of the above fits, or you cannot tell.")
    lines.append("sentiment: positive, negative or neutral (how the user feels).")
    return "\n".join(lines)


class LlmCache:
    """Answers by key in a SQLite file (None: in memory, for one process)."""

    def __init__(self, path: str | Path | None):
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path) if path else ":memory:", check_same_thread=False)
        self.db.execute("CREATE TABLE IF NOT EXISTS labels (key TEXT PRIMARY KEY, value TEXT)")

    def get(self, key: str) -> dict | None:
        row = self.db.execute("SELECT value FROM labels WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, value: dict) -> None:
        self.db.execute("INSERT OR REPLACE INTO labels VALUES (?, ?)", (key, json.dumps(value)))
        self.db.commit()


class LlmLabeler:
    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        budget: int = 200,
        price_per_1k_tokens: float = 0.0,
        cache_path: str | Path | None = None,
        timeout: float = 30.0,
    ):
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.budget = budget
        self.price_per_1k_tokens = price_per_1k_tokens
        self.cache = LlmCache(cache_path)
        self.last_run: LlmRun | None = None
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers,
                                   timeout=timeout)  # fmt: skip

    def close(self) -> None:
        self.client.close()

    def label(self, texts: Sequence[str], taxonomy: Taxonomy) -> tuple[list[LlmLabel], LlmRun]:
        run = LlmRun()
        started = time.perf_counter()
        system, schema = _prompt(taxonomy), _schema(taxonomy)
        # What the answer depends on, text aside: a custom taxonomy is "unversioned" however
        # it is edited, and another endpoint may serve another model under the same name.
        asked = json.dumps([self.base_url, self.model, system, schema], sort_keys=True)
        results = []
        failures_in_a_row = 0
        for text in texts:
            text = (text or "")[:MAX_TEXT_CHARS]
            if not any(character.isalnum() for character in text):
                # Zero-width spaces, a byte-order mark, emoji alone: nothing to label, and
                # the schema has no "don't know", so the endpoint made one up.
                results.append(LlmLabel(None, "no words"))
                run.abstained["no words"] += 1
                continue
            key = hashlib.sha256(f"{asked}\0{text}".encode()).hexdigest()
            cached = self.cache.get(key)
            if cached is not None and _validated(cached, taxonomy).labels is None:
                # A label the taxonomy no longer has (a custom taxonomy edited without a new
                # version): asked again, never served from the cache.
                cached = None
            if cached is not None:
                run.cache_hits += 1
                results.append(LlmLabel(cached, cached=True))
                continue
            if run.requests >= self.budget:
                run.over_budget += 1
                results.append(LlmLabel(None, "over budget"))
                continue
            if failures_in_a_row >= FAILURES_IN_A_ROW:
                result = LlmLabel(None, f"not sent after {failures_in_a_row} failed requests")
            else:
                run.requests += 1
                result = self._ask(text, system, schema, taxonomy, run)
                failed = (result.reason or "").startswith("request failed")
                failures_in_a_row = failures_in_a_row + 1 if failed else 0
            if result.labels is not None:
                self.cache.put(key, result.labels)
                if any(result.labels.get(d) == taxonomy.fallbacks[d] for d in ("topic", "intent")):
                    run.abstained["none of the labels fits"] += 1
            else:
                run.abstained[result.reason] += 1
            results.append(result)
        run.cost = (run.prompt_tokens + run.completion_tokens) / 1000 * self.price_per_1k_tokens
        run.seconds = time.perf_counter() - started
        self.last_run = run
        return results, run

    def _ask(self, text: str, system: str, schema: dict, taxonomy: Taxonomy, run: LlmRun):
        try:
            response = self.client.post(
                "/chat/completions",
                json={
                    "model": self.model,
                    "temperature": 0,
                    "messages": [
                        {"role": "system", "content": system},
                        {"role": "user", "content": text},
                    ],
                    "response_format": {"type": "json_schema", "json_schema": schema},
                },
            )
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError, RecursionError) as error:
            # RecursionError: JSON nested thousands deep, which failed the whole step.
            return LlmLabel(None, f"request failed: {type(error).__name__}")
        if not isinstance(body, dict):
            # `[]` or a text: an abstention, not an AttributeError that fails the whole run.
            return LlmLabel(None, "malformed output")
        usage = body.get("usage") if isinstance(body.get("usage"), dict) else {}
        prompt = _token_count(usage.get("prompt_tokens"))
        completion = _token_count(usage.get("completion_tokens"))
        if prompt is None or completion is None:
            run.without_usage += 1
        else:
            run.prompt_tokens += prompt
            run.completion_tokens += completion
        try:
            content = body["choices"][0]["message"]["content"]
            answer = json.loads(content)
        except (KeyError, IndexError, TypeError, ValueError, RecursionError):
            return LlmLabel(None, "malformed output")
        return _validated(answer, taxonomy)


def _token_count(value: object) -> int | None:
    """A usage figure as a whole number of tokens; None where it is not one (missing, a
    text such as "1e12", a fraction, negative, or more than a response can hold)."""
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= MAX_TOKENS_PER_RESPONSE else None


def _validated(answer: object, taxonomy: Taxonomy) -> LlmLabel:
    if not isinstance(answer, dict):
        return LlmLabel(None, "malformed output")
    allowed = {
        "topic": set(_options(taxonomy, "topic")),
        "intent": set(_options(taxonomy, "intent")),
        "sentiment": set(SENTIMENTS),
    }
    labels = {}
    for dimension in DIMENSIONS:
        value = answer.get(dimension)
        label = canonical_label(value) if isinstance(value, str) else None
        if label in allowed[dimension]:
            labels[dimension] = label
        elif dimension != "sentiment":
            return LlmLabel(None, f"unknown {dimension} label")
        # The tier labels topic and intent; a sentiment off the list cost both of them.
    return LlmLabel(labels)
