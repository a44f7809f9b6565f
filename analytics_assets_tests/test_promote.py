"""Discovered clusters get names, and one can be promoted into the taxonomy: afterwards the
rules label that cluster's kind of conversation with the new topic instead of `other`."""

from __future__ import annotations

from datetime import date

import numpy as np
import polars as pl
import pytest

from analytics_assets import tables
from analytics_assets.categorization.conversations import categorize_texts
from analytics_assets.categorization.discovery import discover, terms_of_texts
from analytics_assets.categorization.promote import (
    cluster_name,
    promote,
    taxonomy_document,
)
from analytics_assets.categorization.taxonomy import load_taxonomy, parse_taxonomy
from analytics_assets.cli import main
from analytics_assets.settings import get_settings
from analytics_assets.storage.lake import Lake

DAY = date(2026, 11, 20)
SHIPPING = [
    "Where is my parcel? The courier delivery never came.",
    "My parcel delivery is late, the courier says lost.",
    "Courier left the parcel at the wrong door, delivery failed.",
    "Can the courier deliver my parcel on Saturday?",
]
RECIPES = [
    "Give me a recipe for vegan lasagna dinner",
    "What recipe can I cook for dinner with rice?",
    "A quick dinner recipe with chicken please",
]


def clusters() -> pl.DataFrame:
    texts = SHIPPING + RECIPES
    # Two clean directions stand in for embeddings: the test is about naming, not k-means.
    vectors = np.array([[1.0, 0.0]] * len(SHIPPING) + [[0.0, 1.0]] * len(RECIPES))
    return discover(texts, vectors, max_clusters=2)


def test_clusters_are_named_by_their_most_distinctive_terms():
    found = clusters()
    names = set(found["name"])
    assert any("parcel" in n or "courier" in n or "delivery" in n for n in names), names
    assert any("recipe" in n or "dinner" in n for n in names), names
    assert cluster_name([], 3) == "cluster_3"
    assert cluster_name(["Lieferung", "Paket"], 0) == "lieferung_paket"


def test_a_cluster_in_one_language_is_not_named_by_that_languages_function_words():
    """A cluster is often one language, and its function words are rare in the others: by
    lift alone a Spanish cluster was `las_que` with keywords `las, que, con`, a topic that
    would match nearly every Spanish text once promoted."""
    spanish = [
        "Quiero saber por qué la factura de este mes es más alta que la anterior",
        "La factura que me llegó tiene un cargo que no reconozco, con IVA doble",
        "Necesito la factura con los datos de la empresa para las cuentas",
        "Me cobraron dos veces la misma factura, las dos con el mismo número",
    ]
    texts = spanish + SHIPPING + RECIPES
    vectors = np.array([[1.0, 0.0, 0.0]] * 4 + [[0.0, 1.0, 0.0]] * 4 + [[0.0, 0.0, 1.0]] * 3)
    found = discover(texts, vectors, max_clusters=3)
    terms = next(row["terms"] for row in found.to_dicts() if row["examples"][0] in spanish)
    assert "factura" in terms
    assert not {"que", "las", "con", "los", "para", "por"} & set(terms), terms
    document = promote(
        taxonomy_document("support"),
        name="invoice_questions",
        terms=["factura", "que", "Las", "con", "cargo"],
        examples=spanish[:2],
        day=DAY,
    )
    assert document["topics"]["invoice_questions"]["keywords"] == ["factura", "cargo"]


def test_terms_keep_topic_words_and_whole_words_of_scripts_with_vowel_signs():
    """Czech's function-word list has `email`, a topic word; a letters-only pattern cut
    Devanagari words at their vowel signs ("सकता" -> "सकत")."""
    email = [f"My email {n} does not sync, email settings lost" for n in ("one", "two", "three")]
    vectors = np.array([[1.0, 0.0]] * 3 + [[0.0, 1.0]] * len(RECIPES))
    found = discover(email + RECIPES, vectors, max_clusters=2)
    assert "email" in next(row["terms"] for row in found.to_dicts() if row["examples"][0] in email)
    # Question words stay common, in every language (taking the taxonomies' keywords as
    # topic words had brought `что`, `как`, `cómo` and `dan` back).
    assert not set().union(*terms_of_texts(["что как почему", "cómo qué", "saya dan kamu"]))
    (hindi,) = terms_of_texts(["मेरा खाता बंद है और मैं लॉगिन नहीं कर सकता"])
    # "सकता" (can) is on Hindi's list of common words; its fragment was not.
    assert {"खाता", "लॉगिन"} <= hindi and not {"सकत", "सकता"} & hindi


def test_a_promoted_cluster_becomes_a_topic_the_rules_label():
    shipping = clusters().filter(pl.col("terms").list.contains("parcel")).row(0, named=True)
    before = load_taxonomy()
    texts = pl.DataFrame({"id": ["new"], "text": ["the courier lost my parcel again"]})
    # No keyword decides it (the support topic head may guess, with a taxonomy that has no
    # shipping topic; once the taxonomy changes, that head no longer fits and stays out).
    unpromoted = categorize_texts(texts, before).row(0, named=True)
    assert unpromoted["topic"] != "shipping" and unpromoted["topic_method"] != "rules"

    document = promote(
        taxonomy_document(None), name="shipping", terms=shipping["terms"],
        examples=shipping["examples"], day=DAY,
    )  # fmt: skip
    after = parse_taxonomy(document)
    assert "shipping" in after.names("topic")
    assert after.version == f"{before.version}+shipping"
    promoted = categorize_texts(texts, after).row(0, named=True)
    assert (promoted["topic"], promoted["topic_method"]) == ("shipping", "rules")
    with pytest.raises(ValueError, match="already has"):
        promote(document, name="Shipping", terms=["x"], examples=[], day=DAY)


def test_the_promote_command_reads_discovery_from_the_lake(tmp_path, monkeypatch, capsys):
    lake = Lake.at(str(tmp_path / "lake"))
    lake.write_day(tables.TOPIC_DISCOVERY, DAY, clusters().with_columns(pl.lit(DAY).alias("day")))
    cluster = clusters().filter(pl.col("terms").list.contains("recipe"))["cluster"][0]
    monkeypatch.setenv("ANALYTICS_LAKE_URL", str(tmp_path / "lake"))
    get_settings.cache_clear()
    output = tmp_path / "taxonomy.yaml"
    try:
        code = main(["promote-topic", DAY.isoformat(), str(cluster), "--name", "cooking",
                     "--output", str(output)])  # fmt: skip
        assert code == 0, capsys.readouterr().out
        assert "cooking" in load_taxonomy(str(output)).names("topic")
        assert main(["promote-topic", DAY.isoformat(), "99", "--output", str(output)]) == 1
    finally:
        get_settings.cache_clear()


def test_a_promoted_topic_keeps_the_shipped_heads_and_its_keywords_win():
    """Adding one topic made every shipped topic head unfit (they fitted only a taxonomy
    with exactly their labels): on the support set `other` went from 34 % to 81 %."""
    import yaml

    from analytics_assets.categorization.conversations import categorize_texts
    from analytics_assets.categorization.ngram_heads import ngram_heads
    from analytics_assets.categorization.taxonomy import DEFAULT_TAXONOMY, parse_taxonomy

    document = yaml.safe_load(DEFAULT_TAXONOMY.read_text())
    document["topics"]["shipping"] = {
        "description": "Where a parcel is, couriers, delivery dates.",
        "examples": ["where is my parcel"],
        "keywords": ["parcel", "courier"],
    }
    extended = parse_taxonomy(document)
    assert {"topic", "intent", "sentiment"} <= set(ngram_heads(extended))
    texts = pl.DataFrame({"id": ["a"], "text": ["where is my parcel? the courier never came"]})
    assert categorize_texts(texts, extended)["topic"].to_list() == ["shipping"]


@pytest.mark.parametrize("name", ["--", "   ", "Other"])
def test_a_name_with_no_letters_or_the_fallback_is_not_promoted(name):
    """`--` was written as a topic with an empty name; `other`, the fallback, became a topic
    a head could be sure of, which is no abstention."""
    with pytest.raises(ValueError, match=r"no topic name|fallback"):
        promote(taxonomy_document("assistant"), name=name, terms=["parcel"], examples=["x"],
                day=date(2026, 11, 30))  # fmt: skip
