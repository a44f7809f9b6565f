"""Every asset's MongoDB mirror, read off the asset definitions (see storage/placement.py)."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from typing import Any

from dagster import AssetsDefinition, AssetSpec, Definitions, RepositoryDefinition

from analytics_assets.storage.placement import MongoMirror, mirror_from_metadata


def mongo_mirrors(assets: Iterable[Any]) -> dict[str, MongoMirror]:
    """asset name -> its collection, for every mirrored asset among `assets`."""
    mirrors = {}
    for definition in assets:
        if not isinstance(definition, AssetsDefinition):
            continue
        for spec in definition.specs:
            mirror = mirror_from_metadata(spec.metadata)
            if mirror is not None:
                mirrors[spec.key.path[-1]] = mirror
    return mirrors


def mirrors_of(definitions: Definitions | RepositoryDefinition) -> dict[str, MongoMirror]:
    """The mirrors of a set of definitions."""
    if isinstance(definitions, Definitions):
        definitions = definitions.get_repository_def()
    return mongo_mirrors(definitions.assets_defs_by_key.values())


@cache
def code_location_mirrors() -> dict[str, MongoMirror]:
    """The mirrors of every domain's assets, for steps that act on other assets' collections
    (retention, the PII check). Imported when first called: the domains import this module."""
    from analytics_assets.definitions import DOMAINS

    return mongo_mirrors(asset for domain in DOMAINS for asset in domain.assets or [])


def stored_spec(key: str, placement: dict[str, Any], **kwargs: Any) -> AssetSpec:
    """An `AssetSpec` for a multi-asset, stored where `placement` (`lake_only()`,
    `lake_and_mongo(...)`) says."""
    spec = AssetSpec(key, metadata=placement.get("metadata"), **kwargs)
    return spec.with_io_manager_key(placement["io_manager_key"])
