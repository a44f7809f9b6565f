"""PII detection on a corpus with known spans: recall and precision per type, look-alikes
left alone, anonymization (redact and keyed pseudonyms)."""

from __future__ import annotations

from collections import Counter

import polars as pl
import pytest

from analytics_assets.privacy.pii import (
    API_KEY,
    CARD,
    EMAIL,
    GOV_ID,
    IBAN,
    IP,
    PHONE,
    URL_SECRET,
    anonymize,
    detect,
    iban_valid,
    luhn_valid,
    pseudonymize_id,
)
from analytics_assets_tests.pii_corpus import corpus

REQUIRED = {EMAIL: (0.99, 0.95), CARD: (0.99, 0.95), IBAN: (0.99, 0.95), IP: (0.99, 0.95),
            API_KEY: (0.99, 0.95)}  # fmt: skip


def scores() -> dict[str, tuple[float, float]]:
    rows = corpus()
    found = detect(pl.Series([text for text, _ in rows]))
    hits, expected, reported = Counter(), Counter(), Counter()
    for (text, truth), findings in zip(rows, found, strict=True):
        want = set(truth)
        got = {(finding.kind, finding.value) for finding in findings}
        for item in want:
            expected[item[0]] += 1
            hits[item[0]] += item in got
        for kind, _ in got:
            reported[kind] += 1
        for finding in findings:
            assert text[finding.start : finding.end] == finding.value  # spans are exact
    return {
        kind: (hits[kind] / expected[kind], hits[kind] / max(reported[kind], 1))
        for kind in expected
    }


def test_recall_and_precision_per_type_on_the_corpus():
    measured = scores()
    print("\n".join(f"{k}: recall {r:.3f} precision {p:.3f}" for k, (r, p) in measured.items()))
    for kind, (recall, precision) in REQUIRED.items():
        assert measured[kind][0] >= recall, (kind, measured[kind])
        assert measured[kind][1] >= precision, (kind, measured[kind])
    assert measured[URL_SECRET][0] >= 0.99
    # Not among the required types, but reported and held to a floor all the same.
    for kind in (PHONE, GOV_ID):
        assert min(measured[kind]) >= 0.95, (kind, measured[kind])


def test_lookalikes_are_left_alone():
    from analytics_assets_tests.pii_corpus import LOOKALIKES

    assert detect(pl.Series(LOOKALIKES)) == [[] for _ in LOOKALIKES]


def test_checksums():
    assert luhn_valid("4111 1111 1111 1111") and not luhn_valid("4111 1111 1111 1112")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid(
        "DE00 3704 0044 0532 0130 00"
    )


def test_redact_and_pseudonymize():
    texts = pl.Series(["mail me at ana@example.com or ana@example.com", None, "nothing here"])
    redacted, counts = anonymize(texts)
    assert redacted.to_list() == ["mail me at <EMAIL> or <EMAIL>", None, "nothing here"]
    assert counts == Counter({EMAIL: 2})
    first, _ = anonymize(texts, key=b"k1")
    again, _ = anonymize(texts, key=b"k1")
    other, _ = anonymize(texts, key=b"k2")
    assert first.to_list() == again.to_list()  # stable across runs
    token = first[0].split()[3]
    assert token.startswith("<EMAIL:") and first[0].count(token) == 2  # same value, same token
    assert other[0] != first[0]  # a new key gives new tokens
    assert pseudonymize_id("user-1", b"k1") == pseudonymize_id("user-1", b"k1")
    assert pseudonymize_id("user-1", b"k1") != pseudonymize_id("user-1", b"k2")
    assert pseudonymize_id(None, b"k1") is None


@pytest.mark.parametrize("text", ["v1.2.3", "OID 1.2.3.4.5", "call 555-0100", "2026-11-30"])
def test_no_false_alarm_on_short_numbers(text):
    assert detect(pl.Series([text]))[0] == []


def _export_with_pii(folder, seed: int = 3):
    from analytics_assets.sources.generator import SampleSpec, generate_sample, write_export

    spec = SampleSpec(days=1, conversations=30, users=10, seed=seed, with_bad_records=False)
    data = generate_sample(spec)
    planted = {}
    for index, message in enumerate(m for m in data.messages if m["role"] == "user"):
        if index % 5 == 0:
            value = f"user{index}@example.com" if index % 10 == 0 else "4111 1111 1111 1111"
            message["content"] = f"{message['content']} {value}"
            planted[message["message_id"]] = value
    write_export(data, folder)
    return spec, planted


@pytest.mark.parametrize("policy", ["redact", "pseudonymize"])
def test_no_raw_pii_reaches_the_analytics_tables(tmp_path, mongo_server, policy):
    from dagster import DagsterInstance

    from analytics_assets.definitions import build_definitions
    from analytics_assets.defs.ingestion.resources import ExportSourceResource
    from analytics_assets.defs.privacy.resources import PrivacyResource
    from analytics_assets.defs.storage.lake import ParquetLakeIOManager
    from analytics_assets.defs.storage.resources import MongoResource
    from analytics_assets.deployments import storage_resources
    from analytics_assets_tests.conftest import range_tags
    from analytics_assets_tests.test_assets import read_asset

    spec, planted = _export_with_pii(tmp_path / "export")

    def run(key: str, lake_dir: str):
        lake = ParquetLakeIOManager(base_url=str(tmp_path / lake_dir))
        mongo = MongoResource(uri=mongo_server, database=f"pii_{policy}_{lake_dir}")
        defs = build_definitions(
            resources={
                "record_source": ExportSourceResource(export_dir=str(tmp_path / "export")),
                "privacy": PrivacyResource(default_policy=policy, pseudonym_key=key),
                **storage_resources({"base_url": lake.base_url}, mongo),
            }
        )
        result = defs.resolve_job_def("ingestion_job").execute_in_process(
            instance=DagsterInstance.ephemeral(), tags=range_tags(spec.start, spec.start)
        )
        assert result.success
        return lake, mongo, result

    lake, mongo, result = run("key-1", "lake1")
    stored = dict(read_asset(lake, "conversation_messages").select("message_id", "content")
                  .iter_rows())  # fmt: skip
    documents = {d["message_id"]: d["content"] for d in mongo.db()["conversation_messages"].find()}
    for message_id, value in planted.items():
        assert value not in stored[message_id] and value not in documents[message_id]
        assert ("<EMAIL" if "@" in value else "<CARD") in stored[message_id]
    # The raw records keep what the source said (the restricted raw table).
    raw = read_asset(lake, "nocodb_raw_pages")["record"]
    assert all(raw.str.contains(value, literal=True).any() for value in planted.values())
    metadata = next(
        m.metadata for m in result.asset_materializations_for_node("validated_records")
        if m.asset_key.path[-1] == "conversation_messages"
    )  # fmt: skip
    assert sum(metadata["pii_findings"].data.values()) == len(planted)
    if policy == "pseudonymize":
        again, _, _ = run("key-1", "lake2")
        other, _, _ = run("key-2", "lake3")
        first = read_asset(lake, "conversation_messages").sort("message_id")["content"]
        assert (
            read_asset(again, "conversation_messages").sort("message_id")["content"].equals(first)
        )  # stable across runs
        assert (
            not read_asset(other, "conversation_messages")
            .sort("message_id")["content"]
            .equals(first)
        )  # a new key gives new tokens


def test_the_polars_sift_passes_every_row_the_exact_patterns_match():
    import re

    from analytics_assets.privacy.pii import PATTERNS, candidate_mask
    from analytics_assets.sources.generator import SampleSpec, generate_sample

    texts = [text for text, _ in corpus()]
    texts += [m["content"] or "" for m in generate_sample(SampleSpec(days=1, conversations=300))
              .messages]  # fmt: skip
    # PII right beside non-ASCII letters, where Unicode and ASCII word boundaries differ.
    texts += ["данные:192.168.1.20", "né4111 1111 1111 1111", "日本ana@example.com", "ü123-45-6789"]
    exact = re.compile("|".join(f"(?:{pattern})" for pattern in PATTERNS.values()))
    sifted = candidate_mask(pl.Series(texts)).to_list()
    assert all(sifted[row] for row, text in enumerate(texts) if exact.search(text))
