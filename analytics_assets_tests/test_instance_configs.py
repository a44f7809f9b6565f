"""Every Dagster instance config in the repository loads with the pinned Dagster."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from dagster import DagsterInstance

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted(
    path for path in ROOT.rglob("dagster.yaml") if not {".venv", ".local"} & set(path.parts)
)


def test_the_repository_has_its_instance_configs():
    assert {path.relative_to(ROOT).as_posix() for path in CONFIGS} >= {
        "dagster.yaml",
        "deployments/prod/dagster.yaml",
    }


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_instance_config_loads(path, tmp_path):
    """The whole file is validated and the instance built. A Postgres storage block is
    swapped for SQLite (no Postgres server runs here); its own shape is checked below."""
    config = yaml.safe_load(path.read_text())
    postgres = (config.get("storage") or {}).get("postgres")
    if postgres is not None:
        config["storage"] = {"sqlite": {"base_dir": str(tmp_path / "storage")}}
        database = postgres["postgres_db"]
        # Credentials come from the environment, never from the file.
        for field in ("hostname", "db_name", "username", "password"):
            assert set(database[field]) == {"env"}, field
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        queue = instance.get_concurrency_config().run_queue_config
        assert queue.max_concurrent_runs >= 1
    if path.parent.name == "prod":
        # At most one writer per partition, whichever machine launched the run.
        assert queue.tag_concurrency_limits == [
            {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        ]
        assert "dagster._" not in path.read_text()
