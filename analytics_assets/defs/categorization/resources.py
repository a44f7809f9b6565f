"""The categorization resource: which tier runs, on which device, with which heads."""

from __future__ import annotations

from typing import Literal

from dagster import ConfigurableResource
from pydantic import Field

from analytics_assets.categorization.device import resolve_device
from analytics_assets.categorization.feedback import current_heads, load_model_tier
from analytics_assets.categorization.taxonomy import Taxonomy, load_taxonomy


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
    taxonomy_path: str | None = Field(
        default=None, description="The taxonomy YAML (ANALYTICS_TAXONOMY); None: the shipped one."
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
        description="Side table of corrections in the record source (a NocoDB table id or "
        "title, an export file's stem); takes precedence over feedback_file.",
    )

    def taxonomy(self) -> Taxonomy:
        return load_taxonomy(self.taxonomy_path)

    def resolved_device(self) -> str:
        return resolve_device(self.device)

    def current_heads(self) -> dict[str, str]:
        return current_heads(self.heads_dir)

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
        )
