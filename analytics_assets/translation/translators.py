"""Translators behind one small interface, chosen by configuration:

- `source`: translations the chatbot already stored in NocoDB (a table of message_id,
  language, text), taken as they are;
- `http`: a LibreTranslate-compatible service (`POST /translate`), retried like every other
  network call;
- `local`: a Hugging Face seq2seq model per language pair (`<root>/<src>-<tgt>/`, e.g. a
  MarianMT opus-mt folder), loaded with transformers on the GPU when there is one.

Nothing downloads anything: models come from folders, services from configured URLs.
"""

from __future__ import annotations

import hashlib
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from analytics_assets.nocodb.client import RetryPolicy, retry_after_seconds
from analytics_assets.settings import url_without_credentials


class TranslationError(Exception):
    """A batch could not be translated (after retries); its messages are recorded."""


@dataclass(frozen=True)
class Item:
    message_id: str
    text: str
    source_language: str
    # A message id is one message within its conversation: a source may number them 1, 2, 3…
    # in each one.
    conversation_id: str | None = None


class Translator(ABC):
    name: str
    version: str

    @abstractmethod
    def supports(self, source_language: str, target_language: str) -> bool: ...

    @abstractmethod
    def translate(self, items: Sequence[Item], target_language: str) -> dict[str, str]:
        """message_id -> translated text, for the items it could translate (all from one
        source language). Raises TranslationError when the batch failed."""

    def batches(self, items: Sequence[Item]) -> list[list[Item]]:
        """`items` in the batches `translate` is called with: a failed batch costs only its
        own messages, never those translated (and paid for) before it."""
        return [list(items)] if items else []


class SourceTranslator(Translator):
    """Translations already in the source: a mapping (message_id, language) -> text, or
    (conversation_id, message_id, language) -> text where the source's table names the
    conversation too. Only the latter is exact when a source numbers messages per
    conversation: by the message id alone, message 1 of every conversation got the one
    stored translation of a message 1."""

    name = "source"

    def __init__(self, stored: Mapping[tuple[str, ...], str], version: str = "1"):
        self.stored = stored
        self.version = version
        self._targets = {key[-1] for key in stored}

    def supports(self, source_language: str, target_language: str) -> bool:
        return target_language in self._targets

    def translate(self, items: Sequence[Item], target_language: str) -> dict[str, str]:
        translated = {}
        for item in items:
            text = self.stored.get((item.conversation_id, item.message_id, target_language))
            if text is None:
                text = self.stored.get((item.message_id, target_language))
            if text is not None:
                translated[item.message_id] = text
        return translated


class HttpTranslator(Translator):
    """LibreTranslate's API: `GET /languages`, `POST /translate` with a list of texts."""

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        max_attempts: int = 4,
        backoff_s: float = 0.5,
        batch_size: int = 32,
    ):
        self.url = url.rstrip("/")
        self._api_key = api_key
        self.max_attempts = max_attempts
        # The NocoDB client's backoff: exponential with full jitter, capped.
        self.retry_policy = RetryPolicy(max_attempts=max_attempts, backoff_base_s=backoff_s)
        self.batch_size = batch_size
        self._http = httpx.Client(base_url=self.url, timeout=timeout_s)
        self._pairs: dict[str, set[str]] | None = None
        self._pairs_error: TranslationError | None = None
        self._lock = threading.Lock()
        self.retries = 0
        # How this translator waits between attempts (a test replaces it: patching
        # `time.sleep` would stop every other thread's waits in the process too).
        self.sleep = time.sleep
        # Stored with every translation: where it came from, never a credential in the URL.
        self.version = f"libretranslate@{url_without_credentials(self.url)}"

    def __repr__(self) -> str:  # never the API key, nor credentials in the URL
        return f"HttpTranslator({url_without_credentials(self.url)!r})"

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        last: Exception | None = None
        for attempt in range(self.max_attempts):
            wait_s = None
            try:
                response = self._http.request(method, path, **kwargs)
                if response.status_code == 429 or response.status_code >= 500:
                    raise httpx.HTTPStatusError(
                        f"{response.status_code}", request=response.request, response=response
                    )
                response.raise_for_status()
                return response
            except (httpx.TransportError, httpx.HTTPStatusError) as error:
                status = getattr(getattr(error, "response", None), "status_code", None)
                if status is not None and status < 500 and status != 429:
                    raise TranslationError(f"{path} answered {status}") from error
                if status == 429:
                    # LibreTranslate limits requests per minute: a retry before the wait it
                    # asks for is refused again, so its Retry-After is honoured. A longer
                    # wait than `MAX_RETRY_AFTER_S` fails the batch at once: the run does
                    # not sleep for an hour (nor retry early, to be refused again).
                    asked = retry_after_seconds(error.response)
                    if asked is not None and asked > MAX_RETRY_AFTER_S:
                        raise TranslationError(
                            f"{path} throttled: asked to wait {asked:.0f} s"
                        ) from error
                    wait_s = asked
                last = error
            if attempt + 1 < self.max_attempts:
                self.retries += 1
                self.sleep(wait_s if wait_s is not None else self.retry_policy.backoff(attempt))
        reason = "timed out" if isinstance(last, httpx.TimeoutException) else f"failed ({last})"
        raise TranslationError(f"{path} {reason} after {self.max_attempts} attempts")

    def supports(self, source_language: str, target_language: str) -> bool:
        with self._lock:
            if self._pairs_error is not None:
                # Asked once a run: every language group asking again, with its retries,
                # multiplied one outage by the number of groups.
                raise self._pairs_error
            if self._pairs is None:
                try:
                    languages = _json_answer(self._call("GET", "/languages"), "/languages")
                    try:
                        self._pairs = {
                            entry["code"]: set(entry.get("targets", [])) for entry in languages
                        }
                    except (TypeError, KeyError, AttributeError) as error:
                        raise TranslationError(
                            "/languages answered no list of languages"
                        ) from error
                except TranslationError as error:
                    self._pairs_error = error
                    raise
        return target_language in self._pairs.get(source_language, set())

    def batches(self, items: Sequence[Item]) -> list[list[Item]]:
        return [list(items[i : i + self.batch_size]) for i in range(0, len(items), self.batch_size)]

    def translate(self, items: Sequence[Item], target_language: str) -> dict[str, str]:
        translated: dict[str, str] = {}
        for batch in self.batches(items):
            body = {
                "q": [item.text for item in batch],
                "source": batch[0].source_language,
                "target": target_language,
                "format": "text",
            }
            if self._api_key:
                body["api_key"] = self._api_key
            answer = _json_answer(self._call("POST", "/translate", json=body), "/translate")
            texts = answer.get("translatedText") if isinstance(answer, dict) else None
            if isinstance(texts, str) and len(batch) == 1:
                texts = [texts]  # some servers answer a one-text list with a text
            if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
                raise TranslationError("/translate answered no list of translated texts")
            if len(texts) != len(batch):
                raise TranslationError(f"{len(batch)} texts sent, {len(texts)} returned")
            translated.update(
                {item.message_id: text for item, text in zip(batch, texts, strict=True)}
            )
        return translated


# The longest Retry-After waited for: a server asking for more fails the batch at once.
MAX_RETRY_AFTER_S = 60.0


def _json_answer(response: httpx.Response, path: str):
    """The answer's JSON; an answer that is not JSON (a proxy's HTML page) fails the batch."""
    try:
        return response.json()
    except (ValueError, RecursionError) as error:
        # RecursionError: JSON nested thousands deep (`[[[[…`), which failed the whole step.
        raise TranslationError(f"{path} answered something that is not JSON") from error


class LocalSeq2SeqTranslator(Translator):
    """One seq2seq model folder per language pair under `root` (`<src>-<tgt>`), each loaded
    on first use; batches sorted by length so padding stays small."""

    name = "local"

    def __init__(
        self,
        root: str | Path,
        *,
        device: str = "auto",
        batch_size: int = 16,
        max_new_tokens: int = 256,
    ):
        self.root = Path(root)
        self.requested_device = device
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens
        self._models: dict[str, tuple] = {}
        self._lock = threading.Lock()
        pairs = sorted(p.name for p in self.root.iterdir() if (p / "config.json").exists())
        self.pairs = set(pairs)
        digest = hashlib.sha256()
        for pair in pairs:
            digest.update(pair.encode())
            _digest_folder(digest, self.root / pair)
        self.version = f"local:{digest.hexdigest()[:12]}"

    def supports(self, source_language: str, target_language: str) -> bool:
        return f"{source_language}-{target_language}" in self.pairs

    def batches(self, items: Sequence[Item]) -> list[list[Item]]:
        # Sorted by length so that padding stays small.
        ordered = sorted(items, key=lambda item: len(item.text))
        return [ordered[i : i + self.batch_size] for i in range(0, len(ordered), self.batch_size)]

    @property
    def device(self) -> str:
        import torch

        if self.requested_device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device=cuda but torch sees no CUDA device")
        if self.requested_device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.requested_device

    def _model(self, pair: str):
        with self._lock:
            if isinstance(self._models.get(pair), TranslationError):
                raise self._models[pair]  # loaded once a run, failed or not
            if pair not in self._models:
                # transformers costs seconds to import: only the local translator pays it.
                from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

                folder = self.root / pair
                try:
                    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
                    model = AutoModelForSeq2SeqLM.from_pretrained(folder, local_files_only=True)
                except (OSError, ValueError, RuntimeError) as error:
                    # A folder with its config but not its weights, or weights of another
                    # architecture: that pair's messages are recorded, the run goes on.
                    failed = TranslationError(f"model {pair} could not be loaded: {error}")
                    self._models[pair] = failed
                    raise failed from error
                model.to(self.device).eval()
                if self.device == "cuda":
                    model.half()
                self._models[pair] = (tokenizer, model)
            return self._models[pair]

    def translate(self, items: Sequence[Item], target_language: str) -> dict[str, str]:
        import torch

        if not items:
            return {}
        tokenizer, model = self._model(f"{items[0].source_language}-{target_language}")
        translated: dict[str, str] = {}
        try:
            for batch in self.batches(items):
                encoded = tokenizer(
                    [item.text for item in batch],
                    return_tensors="pt",
                    padding=True,
                    truncation=True,
                    max_length=512,
                ).to(model.device)
                with torch.inference_mode():
                    generated = model.generate(**encoded, max_new_tokens=self.max_new_tokens)
                texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
                translated.update(
                    {item.message_id: text for item, text in zip(batch, texts, strict=True)}
                )
        except (RuntimeError, ValueError) as error:
            raise TranslationError(f"local model failed: {error}") from error
        return translated


# Of each weight or tokenizer file, its name, size and first and last MiB go into the
# version: fine-tuned weights keep the config (and often the size) of the model they came
# from, and hashing whole checkpoints (hundreds of MB a pair) would cost seconds a run.
_SAMPLED_BYTES = 1 << 20


def _digest_folder(digest, folder: Path) -> None:
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode())
        size = path.stat().st_size
        digest.update(size.to_bytes(8, "little"))
        with path.open("rb") as file:
            digest.update(file.read(_SAMPLED_BYTES))
            if size > 2 * _SAMPLED_BYTES:
                file.seek(size - _SAMPLED_BYTES)
                digest.update(file.read(_SAMPLED_BYTES))
