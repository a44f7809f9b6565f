"""The model tier: zero-shot by similarity to the taxonomy, or a trained head when labelled
corrections exist. numpy here; torch only inside the embedder and the head's training."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from analytics_assets.categorization.taxonomy import Taxonomy

if TYPE_CHECKING:
    from analytics_assets.categorization.ngram_heads import NgramHead

# Heads trained by `scripts/train_shipped_heads.py` on the labelled corpus shipped beside
# them, one folder per encoder: what the model tier uses before any correction exists.
SHIPPED_HEADS = Path(__file__).resolve().parent / "heads"
SENTIMENT_LABELS = ("negative", "neutral", "positive")
# The domain of a shipped corpus whose heads say none (those trained before domains), and the
# one whose sentiment head a taxonomy gets when none of its own ships: support's.
DEFAULT_DOMAIN = "support"

# Cosine similarities sit in a narrow band; dividing by a temperature before the softmax
# spreads them so that a clear winner gets a confident probability. Each encoder's is fitted
# on the shipped corpus (`zero_shot_temperature`); 0.05 was MiniLM's, fitted on the
# sample's labelled openings, and stays the default for an encoder without a fitted one.
DEFAULT_TEMPERATURE = 0.05
DEFAULT_THRESHOLD = 0.5
# Where a shipped encoder head has an n-gram head of the same labels beside it (the support
# and assistant corpora), the model tier can pool the two: a weighted geometric mean, this
# much the encoder head's, the rest the n-gram head's. 1.0, the encoder head alone, in every
# dimension: pooling sentiment at 0.7 was chosen on the dev half of the support set
# (macro-F1 0.853 -> 0.885) and did not hold on the frozen test half (0.855 -> 0.852), and
# topic and intent gained nothing on dev (docs/categorization.md, "Two heads together").
# `benchmarks/eval_multilingual.py --encoder-weight W` measures it again. Pooling ignores the
# n-gram heads' floors (`ngram_heads.FLOORS`: support's topic head must reach 0.7 alone,
# because it is confidently wrong off its domain): measure that before pooling topic.
ENCODER_WEIGHTS = {"topic": 1.0, "intent": 1.0, "sentiment": 1.0}


def softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


@dataclass
class Prediction:
    labels: list[str]
    confidence: np.ndarray
    method: str
    version: str


def _decide(probabilities: np.ndarray, names: Sequence[str], fallback: str, threshold: float):
    best = probabilities.argmax(axis=1)
    confidence = probabilities.max(axis=1)
    labels = [
        names[i] if c >= threshold else fallback for i, c in zip(best, confidence, strict=True)
    ]
    return labels, confidence


def _prototype_texts(label) -> list[str]:
    if label.description or label.examples:
        return [label.description, *label.examples]
    return [label.name.replace("_", " "), *label.keywords]


@dataclass
class ZeroShot:
    """Each label's prototype: the mean embedding of its description and examples."""

    names: list[str]
    prototypes: np.ndarray  # labels x dims, L2-normalized
    fallback: str
    temperature: float = DEFAULT_TEMPERATURE

    @classmethod
    def from_taxonomy(cls, taxonomy: Taxonomy, dimension: str, embed) -> ZeroShot:
        """A label written with keywords only is read from its name and keywords: left out,
        a taxonomy of keywords only failed to load, and one of a single described label
        gave that label, at 1.0, to every text. The fallback is not a prototype of its own
        unless the taxonomy describes it."""
        fallback = taxonomy.fallbacks[dimension]
        labels = [
            label
            for label in taxonomy.labels[dimension].values()
            if label.description or label.examples or label.name != fallback
        ]
        prototypes = []
        for label in labels:
            vectors = embed(_prototype_texts(label))
            mean = vectors.mean(axis=0)
            prototypes.append(mean / np.linalg.norm(mean))
        if len(labels) < 2:
            # One label has nothing to be told apart from: every text would be it, sure.
            return cls(names=[], prototypes=np.zeros((0, 1)), fallback=fallback)
        return cls(
            names=[label.name for label in labels],
            prototypes=np.stack(prototypes),
            fallback=fallback,
        )

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        if not self.names:
            return np.zeros((len(embeddings), 0))
        return softmax(embeddings @ self.prototypes.T / self.temperature)

    def predict(self, embeddings: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> Prediction:
        if not self.names:
            count = len(embeddings)
            return Prediction([self.fallback] * count, np.zeros(count), "zero_shot",
                              "zero-shot-none")  # fmt: skip
        labels, confidence = _decide(
            self.probabilities(embeddings), self.names, self.fallback, threshold
        )
        return Prediction(labels, confidence, "zero_shot", f"zero-shot-T{self.temperature}")

    def fit_temperature(self, embeddings: np.ndarray, truth: Sequence[str]) -> float:
        """The temperature that minimizes the negative log-likelihood of labelled texts."""
        index = {name: i for i, name in enumerate(self.names)}
        rows = [i for i, label in enumerate(truth) if label in index]
        targets = np.array([index[truth[i]] for i in rows])
        sims = embeddings[rows] @ self.prototypes.T
        candidates = np.geomspace(0.005, 0.5, 60)
        losses = [
            -np.log(softmax(sims / t)[np.arange(len(rows)), targets] + 1e-12).mean()
            for t in candidates
        ]
        self.temperature = float(candidates[int(np.argmin(losses))])
        return self.temperature


@dataclass
class Scores:
    accuracy: float
    macro_f1: float
    abstention: float
    per_label_f1: dict[str, float] = field(default_factory=dict)
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)


def score(truth: Sequence[str], predicted: Sequence[str], fallbacks: Sequence[str] = ()) -> Scores:
    """Accuracy, macro-F1 over the true labels, abstention rate and the confusion matrix.
    An abstention (a fallback label) counts as wrong for accuracy and F1."""
    labels = sorted(set(truth))
    confusion = {t: {} for t in labels}
    for t, p in zip(truth, predicted, strict=True):
        confusion[t][p] = confusion[t].get(p, 0) + 1
    f1 = {}
    for label in labels:
        tp = confusion[label].get(label, 0)
        fp = sum(row.get(label, 0) for other, row in confusion.items() if other != label)
        fn = sum(count for p, count in confusion[label].items() if p != label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1[label] = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    total = len(truth)
    return Scores(
        accuracy=sum(t == p for t, p in zip(truth, predicted, strict=True)) / total
        if total
        else 0.0,
        macro_f1=sum(f1.values()) / len(f1) if f1 else 0.0,
        abstention=sum(p in fallbacks for p in predicted) / total if total else 0.0,
        per_label_f1={label: round(value, 4) for label, value in f1.items()},
        confusion=confusion,
    )


@dataclass
class Head:
    """A linear softmax layer on the embeddings, trained with PyTorch on corrections."""

    names: list[str]
    weights: np.ndarray  # labels x dims
    bias: np.ndarray
    fallback: str
    version: str
    metrics: dict = field(default_factory=dict)

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        return softmax(embeddings @ self.weights.T + self.bias)

    def predict(self, embeddings: np.ndarray, threshold: float = DEFAULT_THRESHOLD) -> Prediction:
        labels, confidence = _decide(
            self.probabilities(embeddings), self.names, self.fallback, threshold
        )
        return Prediction(labels, confidence, "head", self.version)

    def save(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{self.version}.npz"
        # Through a file object: the folder may be an S3 location (storage/state.py).
        with path.open("wb") as out:
            np.savez(out, weights=self.weights, bias=self.bias)
        (folder / f"{self.version}.json").write_text(
            json.dumps({"names": self.names, "fallback": self.fallback, "metrics": self.metrics})
            + "\n"
        )
        return path

    @classmethod
    def load(cls, folder: Path, version: str) -> Head:
        with (folder / f"{version}.npz").open("rb") as stored:
            arrays = np.load(io.BytesIO(stored.read()))
        meta = json.loads((folder / f"{version}.json").read_text())
        return cls(meta["names"], arrays["weights"], arrays["bias"], meta["fallback"], version,
                   meta["metrics"])  # fmt: skip


def train_head(
    embeddings: np.ndarray,
    labels: Sequence[str],
    *,
    fallback: str,
    epochs: int = 200,
    weight_decay: float = 1e-4,
    seed: int = 0,
) -> Head:
    """Full-batch training of a linear layer (cross-entropy, Adam); seconds on the CPU."""
    import torch

    torch.manual_seed(seed)
    names = sorted(set(labels))
    index = {name: i for i, name in enumerate(names)}
    x = torch.tensor(embeddings, dtype=torch.float32)
    y = torch.tensor([index[label] for label in labels])
    layer = torch.nn.Linear(x.shape[1], len(names))
    optimizer = torch.optim.Adam(layer.parameters(), lr=0.05, weight_decay=weight_decay)
    for _ in range(epochs):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(layer(x), y)
        loss.backward()
        optimizer.step()
    return Head(
        names=names,
        weights=layer.weight.detach().numpy().copy(),
        bias=layer.bias.detach().numpy().copy(),
        fallback=fallback,
        version=f"head-{time.strftime('%Y%m%dT%H%M%S')}",
    )


def split_held_out(
    count: int, fraction: float = 0.25, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(count)
    cut = int(count * (1 - fraction))
    return order[:cut], order[cut:]


def zero_shot_temperature(encoder: str) -> dict[str, float]:
    """The encoder's zero-shot temperatures, fitted on the shipped corpus (an encoder's
    cosines sit in its own band: e5's between 0.75 and 0.95, use-m3's between 0 and 0.8)."""
    index = SHIPPED_HEADS / encoder / "index.json"
    if not index.exists():
        return {}
    return json.loads(index.read_text()).get("zero_shot_temperature", {})


def head_fits(dimension: str, labels, taxonomy: Taxonomy) -> bool:
    """Whether a shipped head's labels may label `taxonomy`: a sentiment head whose labels
    are sentiments fits every taxonomy; a topic or intent head one that has every one of its
    labels, the dimension's fallback aside (a head may have learnt `other` as a class where
    the taxonomy has it as its fallback only). A taxonomy with more labels keeps the head
    for the labels it knows: a topic promoted from discovery (`promote-topic`) is found by
    its own keywords, which decide before the head. Requiring exactly the head's labels
    dropped the heads from every promoted taxonomy, and `other` went from 34 % to 81 % of
    the support set."""
    if dimension == "sentiment":
        return set(labels) <= set(SENTIMENT_LABELS)
    fallback = {taxonomy.fallbacks[dimension]}
    return set(labels) - fallback <= set(taxonomy.names(dimension)) - fallback


def one_per_dimension(fitting: Sequence[tuple[str, str, object]]) -> dict[str, object]:
    """From the shipped heads that fit a taxonomy, as (dimension, domain, head) in shipped
    order, one per dimension: the taxonomy's own domain's (that of its topic head's corpus),
    else support's (`DEFAULT_DOMAIN`), else the first. Only sentiment ever has a choice:
    every sentiment head fits every taxonomy, and support complaints and open-domain
    requests read differently. Shared by the encoder and the n-gram heads."""
    domain = next((d for dimension, d, _ in fitting if dimension == "topic"), DEFAULT_DOMAIN)
    heads: dict[str, object] = {}
    # A stable sort: within each rank, the shipped order.
    for dimension, _, head in sorted(
        fitting, key=lambda item: (item[1] != domain, item[1] != DEFAULT_DOMAIN)
    ):
        heads.setdefault(dimension, head)
    return heads


def shipped_heads(encoder: str, taxonomy: Taxonomy) -> dict[str, Head]:
    """The shipped heads for `encoder` that fit `taxonomy`: a topic or intent head only
    when its labels are the taxonomy's (`head_fits`), so a custom taxonomy falls back to
    zero-shot instead of being labelled with names it does not have. A sentiment head fits
    every taxonomy; where several do, the one of the taxonomy's own domain (that of its
    topic head's corpus), else support's (`one_per_dimension`)."""
    index = SHIPPED_HEADS / encoder / "index.json"
    if not index.exists():
        return {}
    fitting = []
    for version in json.loads(index.read_text())["heads"]:
        head = Head.load(index.parent, version)
        dimension = head.metrics["dimension"]
        if head_fits(dimension, head.names, taxonomy):
            fitting.append((dimension, head.metrics.get("domain", DEFAULT_DOMAIN), head))
    heads = one_per_dimension(fitting)
    for dimension, head in heads.items():
        head.fallback = taxonomy.fallbacks[dimension]
    return heads


def _companions(
    predictors: dict, shipped: dict[str, Head], taxonomy: Taxonomy
) -> dict[str, NgramHead]:
    """The shipped n-gram heads that may be pooled with the shipped encoder heads: only where the
    encoder head in use is the shipped one (a head adopted from a team's corrections was
    measured alone, and stays alone) and both have the same labels."""
    # Here, not at the top: ngram_heads imports this module for `head_fits`.
    from analytics_assets.categorization.ngram_heads import ngram_heads

    companions = {}
    for dimension, ngram in ngram_heads(taxonomy).items():
        head = predictors.get(dimension)
        if head is not None and head is shipped.get(dimension) and set(head.names) == ngram.labels:
            companions[dimension] = ngram
    return companions


@dataclass
class ModelTier:
    """Embeds texts once and labels each dimension with its head (a correction-trained one,
    else the shipped one), else zero-shot; sentiment only where a head exists."""

    embedder: object  # an encoder from `multilingual` (untyped: torch loads only here)
    predictors: dict[str, ZeroShot | Head]
    threshold: float = DEFAULT_THRESHOLD
    # Whether a head's confident label replaces a keyword rule's (see `apply_model_tier`).
    heads_override_rules: bool = True
    # Per dimension, the labels that are a decision: the taxonomy's names. A head may have
    # learnt the fallback (`other`, `uncertain`) as a class; a sure fallback is still an
    # abstention unless the taxonomy names it as a label too (support's `other`).
    decisive: dict[str, frozenset[str]] = field(default_factory=dict)
    # Per dimension, the shipped n-gram head pooled with the shipped encoder head
    # (`ENCODER_WEIGHTS`); none for a correction-trained head or zero-shot.
    companions: dict[str, NgramHead] = field(default_factory=dict)
    encoder_weights: dict[str, float] = field(default_factory=lambda: dict(ENCODER_WEIGHTS))
    # The previous call's embeddings by text (see `_embed`).
    _last_batch: dict[str, np.ndarray] = field(default_factory=dict, init=False, repr=False)

    def head_overrides_rules(self, dimension: str) -> bool:
        return self.heads_override_rules and isinstance(self.predictors.get(dimension), Head)

    @classmethod
    def build(cls, embedder, taxonomy: Taxonomy, heads: dict[str, Head] | None = None, *,
              threshold: float = DEFAULT_THRESHOLD, shipped: bool = True) -> ModelTier:  # fmt: skip
        shipped_ones = shipped_heads(embedder.name, taxonomy) if shipped else {}
        heads = {**shipped_ones, **(heads or {})}
        predictors: dict[str, ZeroShot | Head] = {}
        temperatures = zero_shot_temperature(embedder.name)
        for dimension in ("topic", "intent"):
            if dimension in heads:
                predictors[dimension] = heads[dimension]
                continue
            zero_shot = ZeroShot.from_taxonomy(taxonomy, dimension, embedder.embed)
            zero_shot.temperature = temperatures.get(dimension, zero_shot.temperature)
            predictors[dimension] = zero_shot
        if "sentiment" in heads:
            predictors["sentiment"] = heads["sentiment"]
        decisive = {d: frozenset(taxonomy.names(d)) for d in ("topic", "intent")}
        return cls(embedder, predictors, threshold, decisive=decisive,
                   companions=_companions(predictors, shipped_ones, taxonomy))  # fmt: skip

    def predict(
        self, texts: list[str], dimensions: Sequence[str] | None = None
    ) -> dict[str, Prediction]:
        wanted = [d for d in (dimensions or self.predictors) if d in self.predictors]
        if not wanted:
            return {}
        embeddings = self._embed(texts)
        return {dimension: self._predict(dimension, texts, embeddings) for dimension in wanted}

    def _predict(self, dimension: str, texts: list[str], embeddings: np.ndarray) -> Prediction:
        predictor = self.predictors[dimension]
        companion = self.companions.get(dimension)
        encoder_weight = self.encoder_weights.get(dimension, 1.0)
        if companion is None or encoder_weight >= 1.0:
            return predictor.predict(embeddings, self.threshold)
        probabilities = predictor.probabilities(embeddings)
        ngram, answered = companion.distributions(texts, predictor.names)
        # A weighted geometric mean (log-linear pooling), renormalized: where the two heads
        # agree the label gets surer, where they disagree less sure. An arithmetic mean
        # only ever flattened the encoder head's confidence and abstained more (dev half of
        # the support set, topic abstention 6.5 % -> 10.5 %, accuracy 0.865 -> 0.844).
        # A text too short for the n-grams keeps the encoder head's probabilities.
        weight = np.where(answered, encoder_weight, 1.0)[:, None]
        log_mixed = weight * np.log(np.maximum(probabilities, 1e-9)) + (1 - weight) * np.log(
            np.maximum(ngram, 1e-9)
        )
        mixed = softmax(log_mixed)
        labels, confidence = _decide(mixed, predictor.names, predictor.fallback, self.threshold)
        return Prediction(labels, confidence, "head", predictor.version)

    def companion_versions(self) -> dict[str, str]:
        """Per dimension, what the n-gram head pooled with its encoder head adds to the
        model version: the n-gram head's version and the encoder head's weight."""
        return {
            dimension: f"{companion.version}@{self.encoder_weights[dimension]:g}"
            for dimension, companion in self.companions.items()
            if self.encoder_weights.get(dimension, 1.0) < 1.0
        }

    def _embed(self, texts: list[str]) -> np.ndarray:
        """The texts' embeddings, reusing the previous call's for texts it already had:
        categorizing conversations asks for the topic and intent of each opening, then for
        the sentiment of the same openings, and each is embedded once."""
        if not texts:
            return self.embedder.embed(texts)
        known = self._last_batch
        missing = [text for text in texts if text not in known]
        vectors = dict(zip(missing, self.embedder.embed(missing), strict=True)) if missing else {}
        batch = {text: vectors[text] if text in vectors else known[text] for text in texts}
        self._last_batch = batch
        return np.stack([batch[text] for text in texts])
