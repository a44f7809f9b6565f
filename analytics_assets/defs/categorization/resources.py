"""The categorization resource: which tier runs, on which device, with which heads."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from dagster import ConfigurableResource
from dagster_aws.s3 import S3Resource
from pydantic import Field

from analytics_assets.categorization.device import resolve_device
from analytics_assets.categorization.feedback import (
    current_heads,
    encoder_heads_dir,
    load_model_tier,
)
from analytics_assets.categorization.taxonomy import Taxonomy, load_taxonomy
from analytics_assets.defs.storage.lake import s3fs_options


class CategorizationResource(ConfigurableResource):
    """`rules` needs nothing beyond the base install; `model` needs the `ml` extra and adds
    a multilingual encoder with trained heads (or zero-shot) where the rules are not sure."""

    tier: Literal["rules", "model"] = Field(default="rules", description="rules | model")
    device: Literal["auto", "cuda", "cpu"] = Field(
        default="auto", description="auto: CUDA when torch sees it, else the CPU."
    )
    encoder: Literal["use-m3", "e5-small", "minilm"] = Field(
        default="use-m3",
        description="Sentence encoder: use-m3 (multilingual, CPU or CUDA), e5-small "
        "(multilingual, CPU), minilm (English).",
    )
    threshold: float = Field(
        default=0.5, description="Below this confidence a label is other/uncertain."
    )
    taxonomy_path: str | None = Field(
        default=None, description="The taxonomy YAML (ANALYTICS_TAXONOMY); None: the shipped one."
    )
    heads_dir: str | None = Field(
        default=None,
        description="Folder or s3:// URL of trained heads (written by category_heads; "
        "production: ANALYTICS_STATE_URL/heads, shared by every worker).",
    )
    heads_s3: S3Resource | None = Field(
        default=None, description="Endpoint, region or keys for an s3:// heads_dir."
    )
    batch_size: int = Field(default=128, description="Texts per embedding batch.")
    feedback_file: str | None = Field(
        default=None, description="Corrections file (JSON, JSONL or CSV) for category_heads."
    )
    feedback_table: str | None = Field(
        default=None,
        description="Side table of corrections in the record source (a NocoDB table id or "
        "title, an export file's stem); takes precedence over feedback_file.",
    )

    def taxonomy(self) -> Taxonomy:
        return load_taxonomy(self.taxonomy_path)

    def resolved_device(self) -> str:
        return resolve_device(self.device)

    def encoder_heads_dir(self) -> Path | None:
        """The heads trained on this encoder's embeddings."""
        return encoder_heads_dir(self.heads_dir, self.encoder, self.heads_storage_options())

    def heads_storage_options(self) -> dict:
        return s3fs_options(self.heads_dir or "", self.heads_s3)

    def current_heads(self) -> dict[str, str]:
        return current_heads(self.encoder_heads_dir())

    def model_tier(self, taxonomy: Taxonomy):
        """None for the rules tier; else the model tier on the resolved device."""
        if self.tier == "rules":
            return None
        return load_model_tier(
            taxonomy,
            device=self.device,
            batch_size=self.batch_size,
            threshold=self.threshold,
            heads_dir=self.heads_dir,
            encoder=self.encoder,
            heads_storage_options=self.heads_storage_options(),
        )


class LlmResource(ConfigurableResource):
    """The optional LLM tier (`categorization/llm.py`): an OpenAI-compatible chat endpoint
    labels the conversations the rules and the model tier abstained on. Off without a URL."""

    base_url: str | None = Field(
        default=None, description="OpenAI-compatible API base (…/v1); None: the tier is off."
    )
    model: str = Field(default="gpt-4o-mini", description="The model name sent to the API.")
    api_key: str | None = Field(default=None, description="Bearer token (an EnvVar).")
    budget: int = Field(default=200, description="Requests per run, at most.")
    price_per_1k_tokens: float = Field(default=0.0, description="For the cost in metadata.")
    cache_path: str | None = Field(
        default=None, description="SQLite file of answers by text hash; None: per process."
    )

    @property
    def enabled(self) -> bool:
        return bool(self.base_url)

    def labeler(self):
        from analytics_assets.categorization.llm import LlmLabeler

        return LlmLabeler(
            self.base_url,
            self.model,
            api_key=self.api_key,
            budget=self.budget,
            price_per_1k_tokens=self.price_per_1k_tokens,
            cache_path=self.cache_path,
        )
