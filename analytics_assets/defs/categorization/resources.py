"""The categorization resource: which tier runs, on which device, with which heads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field

from analytics_assets.categorization.device import resolve_device
from analytics_assets.categorization.feedback import HEADS_INDEX
from analytics_assets.categorization.taxonomy import Taxonomy


class CategorizationResource(ConfigurableResource):
    """`rules` needs nothing beyond the base install; `model` needs the `ml` extra and adds
    MiniLM zero-shot (or trained heads) where the rules are not sure."""

    tier: Literal["rules", "model"] = Field(default="rules", description="rules | model")
    device: Literal["auto", "cuda", "cpu"] = Field(
        default="auto", description="auto: CUDA when torch sees it, else the CPU."
    )
    threshold: float = Field(
        default=0.5, description="Below this confidence a label is other/uncertain."
    )
    heads_dir: str | None = Field(
        default=None, description="Folder of trained heads (written by category_heads)."
    )
    batch_size: int = Field(default=128, description="Texts per embedding batch.")
    feedback_file: str | None = Field(
        default=None, description="Corrections file (JSON, JSONL or CSV) for category_heads."
    )
    feedback_table: str | None = Field(
        default=None,
        description="NocoDB table (id or title) of corrections, read through the record "
        "source when it is NocoDB; takes precedence over feedback_file.",
    )

    def resolved_device(self) -> str:
        return resolve_device(self.device)

    def current_heads(self) -> dict[str, str]:
        """dimension -> head version chosen by the last training that beat its predecessor."""
        if not self.heads_dir:
            return {}
        index = Path(self.heads_dir) / HEADS_INDEX
        return json.loads(index.read_text()) if index.exists() else {}

    def model_tier(self, taxonomy: Taxonomy):
        """None for the rules tier; else the model tier on the resolved device."""
        if self.tier == "rules":
            return None
        from analytics_assets.categorization.embeddings import shared_embedder
        from analytics_assets.categorization.model_tier import Head, ModelTier

        embedder = shared_embedder(self.resolved_device(), self.batch_size)
        heads = {
            dimension: Head.load(Path(self.heads_dir), version)
            for dimension, version in self.current_heads().items()
        }
        return ModelTier.build(embedder, taxonomy, heads, threshold=self.threshold)
