"""Topic, intent, sentiment and language on multilingual support chats nobody tuned on.

The data (`analytics_assets_tests/data/support_multilingual.jsonl`) was written by a helper
that never saw the taxonomy, its rules, the heads or this team's generator: first messages
to a SaaS support bot in 12 languages (en es de fr pt it zh ja ru ko ar tr), with typos,
fragments, emoji, pasted errors, sarcasm and spam, labelled from the label definitions
alone. It is split once by a hash of each id into dev (choose and tune here) and test
(frozen: `support_multilingual.test.sha256`, checked by the tests).

The shipped heads are trained on different corpora (`categorization/heads/
support_training*.jsonl`, written by three other helpers from the same definitions); neither
half of this set is trained on.

    .venv/bin/python benchmarks/eval_multilingual.py [--split dev|test] [--compare-encoders]
        [--encoders use-m3,e5-small] [--llm-oracle [--llm-budget 20]] [--rules-against-heads]
        [--encoder-weight 1.0]

Prints per language and overall, for the rules tier and the model tier: accuracy, macro-F1
and abstention of topic, intent and sentiment, and language accuracy; `--compare-encoders`
measures each candidate encoder (zero-shot and a head trained on the training corpus) side
by side, with its throughput.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from analytics_assets.categorization.conversations import categorize_texts
from analytics_assets.categorization.model_tier import ModelTier, ZeroShot, score, train_head
from analytics_assets.categorization.taxonomy import canonical_label, load_taxonomy

ROOT = Path(__file__).resolve().parents[1]
LABELLED = ROOT / "analytics_assets_tests" / "data" / "support_multilingual.jsonl"
HEADS = ROOT / "analytics_assets" / "categorization" / "heads"
DIMENSIONS = ("topic", "intent", "sentiment")


def split_of(item_id: str) -> str:
    return "test" if hashlib.sha256(item_id.encode()).digest()[0] % 2 else "dev"


def read_jsonl(path: Path) -> pl.DataFrame:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    frame = pl.DataFrame(rows)
    return frame.with_columns(
        pl.col(d).map_elements(canonical_label, return_dtype=pl.String) for d in DIMENSIONS
    )


def load(split: str | None = None) -> pl.DataFrame:
    frame = read_jsonl(LABELLED).with_columns(
        pl.col("id").map_elements(split_of, return_dtype=pl.String).alias("split")
    )
    return frame if split is None else frame.filter(pl.col("split") == split)


def training() -> pl.DataFrame:
    """The shipped heads' corpora (three helpers, 2,160 texts)."""
    return pl.concat([read_jsonl(path) for path in sorted(HEADS.glob("support_training*.jsonl"))])


def test_split_digest() -> str:
    """What `support_multilingual.test.sha256` holds: the test split's ids, texts, labels."""
    columns = ("id", "text", "language", *DIMENSIONS)
    test = load("test").sort("id").select(columns)
    payload = "\n".join("\t".join(row) for row in test.iter_rows())
    return hashlib.sha256(payload.encode()).hexdigest()


def table(frame: pl.DataFrame, predicted: pl.DataFrame) -> pl.DataFrame:
    """One row per dimension and language (and `all`): accuracy over every text (an
    abstention counts as wrong), accuracy of the labels given, macro-F1 and abstention."""
    rows = []
    for dimension in (*DIMENSIONS, "language"):
        truth, guess = frame[dimension], predicted[dimension]
        if dimension == "language":
            answered = guess != "unknown"
        else:
            # Abstained: the tiers left the fallback (`other` is also a real topic, so the
            # label alone cannot tell an abstention from a right `other`).
            answered = predicted[f"{dimension}_method"] != "fallback"
        groups = [("all", pl.repeat(True, frame.height, eager=True))] + [
            (language, frame["language"] == language)
            for language in sorted(frame["language"].unique())
        ]
        for language, mask in groups:
            t, g, a = truth.filter(mask), guess.filter(mask), answered.filter(mask)
            right = t == g
            rows.append({
                "dimension": dimension, "language": language, "n": len(t),
                "accuracy": right.mean(),
                "answered_accuracy": right.filter(a).mean() if a.any() else None,
                "macro_f1": score(t.to_list(), g.to_list()).macro_f1,
                "abstention": 1 - a.mean(),
            })  # fmt: skip
    return pl.DataFrame(rows).with_columns(pl.selectors.float().round(3))


def print_table(result: pl.DataFrame) -> None:
    """Per dimension, a row per language."""
    for dimension in (*DIMENSIONS, "language"):
        print(f"  {dimension}")
        part = result.filter(pl.col("dimension") == dimension).drop("dimension")
        for row in part.iter_rows(named=True):
            answered = row["answered_accuracy"]
            print(
                f"    {row['language']:<4} n={row['n']:<4} accuracy {row['accuracy']:.3f}  "
                f"answered {answered if answered is not None else float('nan'):.3f}  "
                f"macro-F1 {row['macro_f1']:.3f}  abstention {row['abstention']:.3f}"
            )


def evaluate(frame: pl.DataFrame, model: ModelTier | None = None) -> pl.DataFrame:
    taxonomy = load_taxonomy()
    predicted = categorize_texts(frame.select("id", "text"), taxonomy, model=model)
    return table(frame, predicted)


def llm_oracle_ceiling(frame: pl.DataFrame, model: ModelTier, budget: int) -> None:
    """The LLM tier's plumbing on this set, against a local fake OpenAI-compatible server
    that answers with the true labels: how many texts the tier is asked about (what the
    rules and the model left undecided), what the budget and the cache do, and the ceiling
    a perfect LLM would lift accuracy to. Not a measurement of any real LLM."""
    import json as jsonlib
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from analytics_assets.categorization.llm import LlmLabeler

    truth = {row["text"]: row for row in frame.iter_rows(named=True)}

    class Oracle(BaseHTTPRequestHandler):
        def do_POST(self):
            body = jsonlib.loads(self.rfile.read(int(self.headers["Content-Length"])))
            row = truth.get(body["messages"][-1]["content"], {})
            labels = {d: row.get(d, "other") for d in DIMENSIONS}
            data = jsonlib.dumps({
                "choices": [{"message": {"content": jsonlib.dumps(labels)}}],
                "usage": {"prompt_tokens": 300, "completion_tokens": 20},
            }).encode()  # fmt: skip
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Oracle)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        labeler = LlmLabeler(f"http://127.0.0.1:{server.server_port}/v1", "oracle",
                             budget=budget, price_per_1k_tokens=0.00015)  # fmt: skip
        predicted = categorize_texts(
            frame.select("id", "text"), load_taxonomy(), model=model, llm=labeler
        )
        run = labeler.last_run
        print(f"LLM tier (fake oracle server, budget {budget}): {run.metadata()}")
        result = table(frame, predicted)
        for d in ("topic", "intent"):
            row = result.filter((pl.col("dimension") == d) & (pl.col("language") == "all"))
            print(f"  ceiling {d}: accuracy {row['accuracy'][0]:.3f}, "
                  f"abstention {row['abstention'][0]:.3f}")  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()


def rules_against_heads(frame: pl.DataFrame, model: ModelTier) -> None:
    """Where the rules (keywords, or VADER for sentiment) gave a label, how often it was
    right, and how often the heads were right on the same texts: what decides which tier
    wins (`apply_model_tier`, `apply_model_sentiment`)."""
    rules = categorize_texts(frame.select("id", "text"), load_taxonomy())
    predicted = model.predict(frame["text"].to_list())
    for dimension, method in (("topic", "rules"), ("intent", "rules"), ("sentiment", "lexicon")):
        if dimension not in predicted:
            continue
        decided = (rules[f"{dimension}_method"] == method).to_list()
        rows = [i for i, flag in enumerate(decided) if flag]
        truth = frame[dimension].to_list()
        rule_right = sum(rules[dimension][i] == truth[i] for i in rows)
        head_right = sum(predicted[dimension].labels[i] == truth[i] for i in rows)
        rule_share, head_share = rule_right / len(rows), head_right / len(rows)
        print(f"  {dimension:<9} {method} labelled {len(rows):>3}: right {rule_share:.3f}; "
              f"the head on the same texts {head_share:.3f}")  # fmt: skip


def vader_baseline(frame: pl.DataFrame) -> float:
    """Plain VADER (the whole lexicon, every language) macro-F1 on sentiment."""
    from analytics_assets.categorization.rules import VADER_NEUTRAL_BOUND as bound
    from analytics_assets.categorization.rules import lexicon_compound

    compound = frame.select(lexicon_compound(frame, "text").alias("c"))["c"]
    labels = [
        "positive" if c >= bound else "negative" if c <= -bound else "neutral" for c in compound
    ]
    return score(frame["sentiment"].to_list(), labels).macro_f1


def compare_encoders(frame: pl.DataFrame, names: list[str]) -> pl.DataFrame:
    """Each encoder zero-shot (taxonomy descriptions and examples) and with a head trained on
    the training corpus, scored on `frame`; per-language minimum accuracy shows whether it
    works in every language, not only on average."""
    from analytics_assets.categorization.multilingual import load_encoder

    taxonomy = load_taxonomy()
    corpus = training()
    rows = []
    for name in names:
        encoder = load_encoder(name, "cpu")
        started = time.perf_counter()
        x = encoder.embed(frame["text"].to_list())
        rate = frame.height / (time.perf_counter() - started)
        x_train = encoder.embed(corpus["text"].to_list())
        for d in DIMENSIONS:
            predictions = {}
            if d != "sentiment":
                predictions["zero-shot"] = ZeroShot.from_taxonomy(taxonomy, d, encoder.embed)
            predictions["head"] = train_head(x_train, corpus[d].to_list(), fallback="?")
            for method, predictor in predictions.items():
                labels = predictor.predict(x, threshold=0.0).labels
                judged = frame.with_columns(pl.Series("p", labels))
                per_language = judged.group_by("language").agg(
                    (pl.col("p") == pl.col(d)).mean().alias("acc")
                )
                s = score(frame[d].to_list(), labels)
                rows.append({
                    "encoder": name, "dimension": d, "method": method,
                    "accuracy": s.accuracy, "macro_f1": s.macro_f1,
                    "worst_language": per_language.sort("acc").row(0)[0],
                    "worst_language_acc": per_language["acc"].min(),
                    "texts_per_s": rate,
                })  # fmt: skip
    return pl.DataFrame(rows).with_columns(pl.selectors.float().round(3))


def add_encoder_weight_option(parser: argparse.ArgumentParser) -> None:
    """`--encoder-weight`, shared with eval_open_domain.py (see `pool_everywhere`)."""
    parser.add_argument(
        "--encoder-weight",
        type=float,
        default=None,
        help="the encoder head's weight where the model tier pools it with the n-gram head, "
        "for every dimension (default: model_tier.ENCODER_WEIGHTS; 1.0: encoder heads alone)",
    )


def pool_everywhere(model: ModelTier, encoder_weight: float | None) -> None:
    """Every dimension's encoder head pooled at `encoder_weight` with its n-gram head (where
    one fits); None keeps the shipped `model_tier.ENCODER_WEIGHTS`."""
    if encoder_weight is not None:
        model.encoder_weights = dict.fromkeys(model.encoder_weights, encoder_weight)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--split", choices=["dev", "test"], default="test")
    parser.add_argument("--compare-encoders", action="store_true")
    parser.add_argument("--encoders", default="use-m3")
    parser.add_argument(
        "--llm-oracle",
        action="store_true",
        help="also run the LLM tier against a fake server that knows the labels",
    )
    parser.add_argument("--llm-budget", type=int, default=20)
    parser.add_argument("--rules-against-heads", action="store_true")
    add_encoder_weight_option(parser)
    args = parser.parse_args()
    frame = load(args.split)
    print(f"split {args.split}: {frame.height} texts, {frame['language'].n_unique()} languages")
    pl.Config.set_tbl_rows(100)  # --compare-encoders prints a table
    pl.Config.set_tbl_cols(20)
    pl.Config.set_tbl_width_chars(250)
    if args.compare_encoders:
        print(compare_encoders(frame, args.encoders.split(",")))
        return
    from analytics_assets.categorization.feedback import load_model_tier

    print(f"plain VADER sentiment macro-F1 (baseline): {vader_baseline(frame):.3f}")
    print("rules tier")
    print_table(evaluate(frame))
    for encoder in args.encoders.split(","):
        started = time.perf_counter()
        model = load_model_tier(
            load_taxonomy(), device="cpu", batch_size=128, threshold=0.5, encoder=encoder
        )
        pool_everywhere(model, args.encoder_weight)
        seconds = time.perf_counter() - started
        print(f"model tier ({model.embedder.version}, loaded in {seconds:.1f} s)")
        print_table(evaluate(frame, model))
        if args.llm_oracle:
            llm_oracle_ceiling(frame, model, budget=args.llm_budget)
        if args.rules_against_heads:
            print("where the rules labelled, rules vs heads:")
            rules_against_heads(frame, model)


if __name__ == "__main__":
    main()
