"""The walls between the pure cores and the Dagster wiring, and the shape of the code
location, checked so that they stay where docs/architecture.md draws them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from dagster import AssetKey

from analytics_assets.defs.ingestion.jobs import MODEL_TIER_KIND
from analytics_assets.defs.partitions import daily_partitions
from analytics_assets.defs.storage.placement import mirrors_of
from analytics_assets.storage.placement import LAKE_AND_MONGO_IO_MANAGER

PACKAGE = Path(__file__).resolve().parents[1] / "analytics_assets"
# Everything but the Dagster wiring (defs/), the code location that merges it
# (definitions.py, deployments.py) and the commands that run it (cli.py).
WIRING = {"defs", "definitions.py", "deployments.py", "cli.py"}


def _imports_in_a_fresh_interpreter(modules: list[str]) -> set[str]:
    """The top-level packages loaded by importing `modules` in a new Python process."""
    code = (
        f"import sys\nfor name in {modules!r}: __import__(name)\n"
        "print('\\n'.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(loaded.split())


def test_the_pure_cores_and_the_api_load_without_dagster():
    loaded = _imports_in_a_fresh_interpreter(
        [
            "analytics_assets.transforms.records",
            "analytics_assets.categorization.rules",
            "analytics_assets.nocodb.client",
            "analytics_assets.api.app",
            "analytics_assets.api.main",
            "analytics_assets.storage.lake",
            "analytics_assets.privacy.erasure",
            "analytics_assets.webhooks.delivery",
            "analytics_assets.settings",
        ]
    )
    assert "dagster" not in loaded


def _pure_modules() -> list[Path]:
    return sorted(
        path for path in PACKAGE.rglob("*.py") if path.relative_to(PACKAGE).parts[0] not in WIRING
    )


@pytest.mark.parametrize("path", _pure_modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_pure_module_imports_dagster_or_the_wiring(path):
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    offending = sorted(
        name
        for name in imported
        if name.split(".")[0] in ("dagster", "dagster_aws")
        or name.startswith(("analytics_assets.defs", "analytics_assets.deployments"))
    )
    assert not offending, f"{path.relative_to(PACKAGE)} imports {offending}"


def test_the_environment_is_read_only_by_the_settings():
    """One typed settings object reads the environment; nothing else does (DAGSTER_HOME,
    Dagster's own variable, excepted)."""
    readers = []
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        for needle in ("os.environ.get(", "os.getenv(", "os.environ["):
            for line in text.splitlines():
                if needle in line and "DAGSTER_HOME" not in line:
                    readers.append(f"{path.relative_to(PACKAGE)}: {line.strip()}")
    assert readers == []


def test_every_daily_asset_is_in_the_daily_job(local_definitions):
    """A new daily asset joins `ingestion_job` (and so its schedule and the sync sensors)
    without anyone adding it to a list; the model tier's run in their own jobs."""
    defs = local_definitions
    job_keys = defs.resolve_job_def("ingestion_job").asset_layer.executable_asset_keys
    daily = {
        spec.key
        for definition in defs.assets
        if getattr(definition, "partitions_def", None) == daily_partitions
        for spec in definition.specs
        if MODEL_TIER_KIND not in spec.kinds
    }
    assert daily and job_keys == daily
    assert AssetKey("topic_discovery") not in job_keys


def test_each_mirrored_asset_names_its_collection_in_its_own_definition(local_definitions):
    mirrors = mirrors_of(local_definitions)
    assert mirrors["daily_report"].collection == "analytics_reports"
    assert mirrors["translation_errors"].slice_scope == {"stage": "translate"}
    for definition in local_definitions.assets:
        for spec in definition.specs:
            key = definition.get_io_manager_key_for_asset_key(spec.key)
            assert (key == LAKE_AND_MONGO_IO_MANAGER) == (spec.key.path[-1] in mirrors)


def test_each_domain_exposes_its_own_definitions():
    from analytics_assets.definitions import DOMAINS

    names = {
        spec.key.path[-1] for domain in DOMAINS for a in domain.assets or [] for spec in a.specs
    }
    assert {"nocodb_raw_pages", "conversation_categories", "daily_report"} <= names
    assert all(not (domain.resources or {}) for domain in DOMAINS)


def test_every_asset_has_its_constant_in_tables_and_every_constant_an_asset(local_definitions):
    """`analytics_assets.tables` names each asset key once: a new asset gets its constant, a
    removed or renamed one takes its constant along."""
    from analytics_assets import tables

    constants = {
        name: value
        for name, value in vars(tables).items()
        if name.isupper() and isinstance(value, str)
    }
    keys = [key.to_user_string() for key in local_definitions.resolve_all_asset_keys()]
    assert sorted(constants.values()) == sorted(keys)
    assert all(name == value.upper() for name, value in constants.items())


@pytest.fixture
def local_definitions():
    from analytics_assets.definitions import build_definitions
    from analytics_assets.settings import Settings

    return build_definitions(Settings(deployment="local"))


def test_dg_loads_the_project():
    """`dg dev` / `dg launch` load the same code location ([tool.dg] in pyproject.toml)."""
    dg = Path(sys.executable).with_name("dg")
    checked = subprocess.run(
        [str(dg), "check", "defs"],
        cwd=PACKAGE.parent,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr
