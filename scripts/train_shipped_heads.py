"""Train the heads the package ships (`analytics_assets/categorization/heads/<encoder>/`).

Corpus: `heads/support_training*.jsonl`, support-chat messages in 12 languages labelled for
topic, intent and sentiment by helpers from the label definitions alone (they never saw
the taxonomy's rules or any evaluation set). Heads for topic and intent fit the support
taxonomy; the sentiment head fits every taxonomy. Also fitted here, on the same corpus:
the encoder's zero-shot temperature (what a custom taxonomy without heads runs on).

Weight decay is chosen by 5-fold cross-validation on the corpus itself, so no evaluation
set is touched. Deterministic: the same corpus and encoder give the same weights.

    .venv/bin/python scripts/train_shipped_heads.py [--encoder use-m3]
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

CORPORA = sorted(SHIPPED_HEADS.glob("support_training*.jsonl"))
DIMENSIONS = ("topic", "intent", "sentiment")
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encoder", default="use-m3")
    args = parser.parse_args()
    rows = [
        json.loads(line)
        for corpus in CORPORA
        for line in corpus.read_text(encoding="utf-8").splitlines()
        if line
    ]
    # A stable order (by id) so the folds, and so the weights, do not depend on file order.
    rows.sort(key=lambda row: row["id"])
    digest = hashlib.sha256(b"".join(c.read_bytes() for c in CORPORA)).hexdigest()[:12]
    encoder = load_encoder(args.encoder, "cpu")
    x = encoder.embed([row["text"] for row in rows])
    taxonomy = load_taxonomy()
    folder = SHIPPED_HEADS / args.encoder
    versions, temperatures = [], {}
    for dimension in DIMENSIONS:
        labels = [canonical_label(row[dimension]) for row in rows]
        if dimension != "sentiment":
            assert set(labels) == set(taxonomy.names(dimension)), (dimension, set(labels))
            zero_shot = ZeroShot.from_taxonomy(taxonomy, dimension, encoder.embed)
            temperatures[dimension] = round(zero_shot.fit_temperature(x, labels), 5)
        cv = {wd: cross_validated_macro_f1(x, labels, wd) for wd in WEIGHT_DECAYS}
        best = max(cv, key=cv.get)
        head = train_head(x, labels, fallback=taxonomy.fallbacks[dimension], weight_decay=best)
        head.version = f"shipped-{args.encoder}-support-{dimension}-{digest}"
        head.metrics = {
            "dimension": dimension,
            "corpora": [c.name for c in CORPORA],
            "corpus_sha256_12": digest,
            "trained_on": len(rows),
            "weight_decay": best,
            "cross_validated_macro_f1": {str(k): round(v, 4) for k, v in cv.items()},
        }
        for stale in folder.glob(f"shipped-{args.encoder}-support-{dimension}-*"):
            stale.unlink()
        head.save(folder)
        versions.append(head.version)
        print(f"{dimension}: weight decay {best}, 5-fold macro-F1 {cv[best]:.3f} ({len(rows)})")
    index = {"heads": versions, "zero_shot_temperature": temperatures}
    (folder / "index.json").write_text(json.dumps(index, indent=2) + "\n")
    print(f"zero-shot temperatures: {temperatures}")


if __name__ == "__main__":
    main()
