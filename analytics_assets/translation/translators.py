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

from analytics_assets.nocodb.client import RetryPolicy
from analytics_assets.settings import url_without_credentials


class TranslationError(Exception):
    """A batch could not be translated (after retries); its messages are recorded."""


@dataclass(frozen=True)
class Item:
    message_id: str
    text: str
    source_language: str


class Translator(ABC):
    name: str
    version: str

    @abstractmethod
    def supports(self, source_language: str, target_language: str) -> bool: ...

    @abstractmethod
    def translate(self, items: Sequence[Item], target_language: str) -> dict[str, str]:
        """message_id -> translated text, for the items it could translate (all from one
        source language). Raises TranslationError when the batch failed."""


class SourceTranslator(Translator):
    """Translations already in the source: a mapping (message_id, language) -> text."""

    name = "source"

    def __init__(self, stored: Mapping[tuple[str, str], str], version: str = "1"):
        self.stored = stored
        self.version = version
        self._targets = {language for _, language in stored}

    def supports(self, source_language: str, target_language: str) -> bool:
        return target_language in self._targets

    def translate(self, items: Sequence[Item], target_language: str) -> dict[str, str]:
        return {
            item.message_id: self.stored[(item.message_id, target_language)]
            for item in items
            if (item.message_id, target_language) in self.stored
        }


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
        self._lock = threading.Lock()
        self.retries = 0
        # Stored with every translation: where it came from, never a credential in the URL.
        self.version = f"libretranslate@{url_without_credentials(self.url)}"

    def __repr__(self) -> str:  # never the API key
        return f"HttpTranslator({self.url!r})"

    def _call(self, method: str, path: str, **kwargs) -> httpx.Response:
        last: Exception | None = None
        for attempt in range(self.max_attempts):
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
                last = error
                if attempt + 1 < self.max_attempts:
                    self.retries += 1
                    time.sleep(self.retry_policy.backoff(attempt))
        reason = "timed out" if isinstance(last, httpx.TimeoutException) else f"failed ({last})"
        raise TranslationError(f"{path} {reason} after {self.max_attempts} attempts")

    def supports(self, source_language: str, target_language: str) -> bool:
        with self._lock:
            if self._pairs is None:
                languages = self._call("GET", "/languages").json()
                self._pairs = {entry["code"]: set(entry.get("targets", [])) for entry in languages}
        return target_language in self._pairs.get(source_language, set())

    def translate(self, items: Sequence[Item], target_language: str) -> dict[str, str]:
        translated: dict[str, str] = {}
        for start in range(0, len(items), self.batch_size):
            batch = items[start : start + self.batch_size]
            body = {
                "q": [item.text for item in batch],
                "source": batch[0].source_language,
                "target": target_language,
                "format": "text",
            }
            if self._api_key:
                body["api_key"] = self._api_key
            texts = self._call("POST", "/translate", json=body).json()["translatedText"]
            if len(texts) != len(batch):
                raise TranslationError(f"{len(batch)} texts sent, {len(texts)} returned")
            translated.update(
                {item.message_id: text for item, text in zip(batch, texts, strict=True)}
            )
        return translated


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
            digest.update((self.root / pair / "config.json").read_bytes())
        self.version = f"local:{digest.hexdigest()[:12]}"

    def supports(self, source_language: str, target_language: str) -> bool:
        return f"{source_language}-{target_language}" in self.pairs

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
            if pair not in self._models:
                # transformers costs seconds to import: only the local translator pays it.
                from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

                folder = self.root / pair
                tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
                model = AutoModelForSeq2SeqLM.from_pretrained(folder, local_files_only=True)
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
        ordered = sorted(items, key=lambda item: len(item.text))
        translated: dict[str, str] = {}
        try:
            for start in range(0, len(ordered), self.batch_size):
                batch = ordered[start : start + self.batch_size]
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
