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
        assert_postgres_engine_builds(database)
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


def assert_postgres_engine_builds(database: dict) -> None:
    """dagster-postgres's URL for the block, made into SQLAlchemy's engine as it does when
    the instance starts, without connecting: the engine loads the driver the URL names.
    SQLAlchemy 2.1 reads a bare `postgresql://` as psycopg 3, which no image installs, and
    every process that loaded the production instance failed at start."""
    import sqlalchemy
    from dagster_postgres.utils import pg_url_from_config

    placeholders = {
        field: "x" if isinstance(value, dict) and set(value) == {"env"} else value
        for field, value in database.items()
    }
    engine = sqlalchemy.create_engine(pg_url_from_config({"postgres_db": placeholders}))
    assert engine.dialect.driver == "psycopg2"
    engine.dispose()


KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters: [{name: test, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: test, user: {token: test}}]
contexts: [{name: test, context: {cluster: test, user: test}}]
current-context: test
"""


def test_the_instance_config_the_helm_chart_renders_loads(tmp_path):
    """deployments/k8s/values.yaml as the chart renders it into dagster.yaml (written out in
    helm_values.py): K8sRunLauncher, S3 compute logs, Postgres, queued runs limited by tag.
    Dagster validates every block against the pinned dagster, dagster-k8s and dagster-aws and
    builds the instance. Postgres is swapped for SQLite as above, and the launcher reads a
    kubeconfig file instead of the pod's in-cluster account (it opens no connection)."""
    from dagster_aws.s3.compute_log_manager import S3ComputeLogManager
    from dagster_k8s import K8sRunLauncher

    from analytics_assets_tests.helm_values import render_instance_config

    config = render_instance_config()
    for block in ("run_storage", "event_log_storage", "schedule_storage"):
        database = config.pop(block)["config"]["postgres_db"]
        # The password is the chart's secret, through the environment; the rest is not secret.
        assert database["password"] == {"env": "DAGSTER_PG_PASSWORD"}
        assert database["params"] == {"sslmode": "require"}
        assert_postgres_engine_builds(database)
    config["storage"] = {"sqlite": {"base_dir": str(tmp_path / "storage")}}
    launcher = config["run_launcher"]["config"]
    assert launcher["load_incluster_config"] is True
    (tmp_path / "kubeconfig").write_text(KUBECONFIG)
    launcher.update(load_incluster_config=False, kubeconfig_file=str(tmp_path / "kubeconfig"))
    (tmp_path / "dagster.yaml").write_text(yaml.safe_dump(config))

    with DagsterInstance.from_config(str(tmp_path)) as instance:
        assert isinstance(instance.run_launcher, K8sRunLauncher)
        assert instance.run_launcher.job_namespace == "analytics"
        assert instance.run_launcher.env_secrets == ["analytics-assets-env"]
        assert instance.run_launcher.run_k8s_config["pod_spec_config"]["nodeSelector"] == {
            "analytics-assets/pool": "cpu"
        }
        assert isinstance(instance.compute_log_manager, S3ComputeLogManager)
        queue = instance.get_concurrency_config().run_queue_config
        prod = yaml.safe_load((ROOT / "deployments/prod/dagster.yaml").read_text())
        # The same limits as the prod instance: runs at once, one writer per partition.
        assert queue.max_concurrent_runs == prod["concurrency"]["runs"]["max_concurrent_runs"]
        assert queue.tag_concurrency_limits == [
            {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        ]
        assert instance.run_monitoring_enabled
        assert instance.run_retries_max_retries == 2
