"""The taxonomy fits the conversations: a deployment whose chats the shipped default does
not fit (81 % of real open-domain chats were `other`) is told which taxonomy does."""

from __future__ import annotations

import itertools

import polars as pl
from dagster import DagsterInstance

from analytics_assets.categorization.fit import CONFIGURED, alternatives, fit_verdict
from analytics_assets.categorization.taxonomy import load_taxonomy
from analytics_assets.sources.generator import SampleSpec, generate_sample, write_export
from analytics_assets_tests.conftest import export_definitions, range_tags


def _categories(topics: list[str]) -> pl.DataFrame:
    return pl.DataFrame({"topic": topics})


def test_more_than_half_other_warns_and_names_a_taxonomy_that_fits_better():
    support = load_taxonomy("support")
    unfit = _categories(["other"] * 30 + ["billing"] * 10)
    verdict = fit_verdict(unfit, support, {CONFIGURED: 0.8, "assistant": 0.2}, 40)
    assert not verdict.passed and verdict.metadata["other_share"] == 0.75
    assert verdict.metadata["other_share_on_sample"] == 0.8
    assert verdict.metadata["other_share_with_assistant"] == 0.2
    assert verdict.metadata["suggestion"].startswith("ANALYTICS_TAXONOMY=assistant leaves 20%")
    # Judged against the same sample measured alike (the day's own share may come from the
    # model tier): not better by enough there, no suggestion, still a warning.
    close = fit_verdict(unfit, support, {CONFIGURED: 0.3, "assistant": 0.2}, 40)
    assert not close.passed and "suggestion" not in close.metadata
    # A fit, and a day too small to judge.
    assert fit_verdict(_categories(["billing"] * 30 + ["other"] * 10), support).passed
    assert fit_verdict(_categories(["other"] * 10), support).passed


def test_a_custom_taxonomy_is_judged_by_its_own_fallback_and_compared_with_both_shipped(tmp_path):
    custom = tmp_path / "pets.yaml"
    custom.write_text(
        "version: pets-1\nfallbacks: {topic: misc}\n"
        "topics: {food: {keywords: [kibble]}, misc: {}}\nintents: {ask: {keywords: [how]}}\n"
    )
    taxonomy = load_taxonomy(str(custom))
    assert set(alternatives(str(custom))) == {"support", "assistant"}
    assert set(alternatives(None)) == {"assistant"} and set(alternatives("assistant")) == {
        "support"
    }
    assert not fit_verdict(_categories(["misc"] * 25 + ["food"] * 5), taxonomy).passed
    assert fit_verdict(_categories(["other"] * 25 + ["food"] * 5), taxonomy).passed


def _check_results(result) -> dict[str, dict]:
    return {
        evaluation.partition: evaluation
        for evaluation in result.get_asset_check_evaluations()
        if evaluation.check_name == "taxonomy_fits_the_conversations"
    }


def test_real_open_domain_chats_under_the_support_taxonomy_are_told_to_use_the_assistant_one(
    tmp_path, mongo_server
):
    from analytics_assets_tests.sharegpt import openings

    spec = SampleSpec(days=2, conversations=120, users=20, seed=4, with_bad_records=False)
    data = generate_sample(spec)
    # The support bot's generated openings become real ShareGPT openings (English ones).
    real = (text for text in openings().values() if text.isascii() and len(text) > 40)
    first_turns: dict[str, dict] = {}
    for message in sorted(data.messages, key=lambda m: (m["created_at"] or "", m["message_id"])):
        if message["role"] == "user":
            first_turns.setdefault(message["conversation_id"], message)
    for message, text in zip(first_turns.values(), itertools.islice(real, None), strict=False):
        message["content"] = text
    write_export(data, tmp_path / "export")
    defs, _, _ = export_definitions(tmp_path, mongo_server, "taxonomy_fit_open_domain")
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(), tags=range_tags(spec.start, spec.end)
    )
    assert result.success  # a WARN check blocks nothing
    evaluations = _check_results(result)
    assert sorted(evaluations) == [spec.start.isoformat(), spec.end.isoformat()]
    unfit = [e for e in evaluations.values() if not e.passed]
    assert unfit and all(e.severity.value == "WARN" for e in unfit)
    last = evaluations[max(e.partition for e in unfit)].metadata
    assert last["other_share"].value > 0.5
    on_sample = last["other_share_on_sample"].value
    assert last["other_share_with_assistant"].value <= on_sample - 0.15
    assert last["suggestion"].value.startswith("ANALYTICS_TAXONOMY=assistant")


def test_the_support_bots_own_chats_fit_the_support_taxonomy(tmp_path, mongo_server):
    spec = SampleSpec(days=2, conversations=120, users=20, seed=4, with_bad_records=False)
    write_export(generate_sample(spec), tmp_path / "export")
    defs, _, _ = export_definitions(tmp_path, mongo_server, "taxonomy_fit_support")
    result = defs.resolve_job_def("ingestion_job").execute_in_process(
        instance=DagsterInstance.ephemeral(), tags=range_tags(spec.start, spec.end)
    )
    evaluations = _check_results(result)
    assert len(evaluations) == 2 and all(e.passed for e in evaluations.values())
    assert all(e.metadata["other_share"].value <= 0.5 for e in evaluations.values())
