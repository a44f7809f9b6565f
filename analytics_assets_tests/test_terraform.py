"""deployments/terraform: every file parses and passes checkov's AWS policies
(encryption, versioning, public access, private endpoints, logging, least privilege), each
skipped check says why, and no IAM statement names a wildcard action. checkov is installed by
`make test` (scripts/iac/install.sh) into a venv of its own."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TERRAFORM = ROOT / "deployments" / "terraform"
TOOLS = Path(os.environ.get("ANALYTICS_TOOLS_HOME", Path.home() / ".cache" / "analytics-assets"))
CHECKOV = TOOLS / "checkov-venv" / "bin" / "checkov"
MODULES = sorted(path for path in (TERRAFORM / "modules").iterdir() if path.is_dir())


@pytest.fixture(scope="module")
def scan() -> dict:
    if not CHECKOV.exists():
        pytest.fail(f"checkov is not installed at {CHECKOV}: run `bash scripts/iac/install.sh`")
    result = subprocess.run(
        # Not --quiet: its JSON would hold the failed checks only.
        [str(CHECKOV), "-d", str(TERRAFORM), "--framework", "terraform", "--output", "json",
         "--skip-download", "--compact"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    return report[0] if isinstance(report, list) else report


def test_checkov_passes_every_policy_it_evaluates(scan):
    summary = scan["summary"]
    failed = [
        (c["check_id"], c["resource"], c["file_path"]) for c in scan["results"]["failed_checks"]
    ]
    assert not failed, failed
    assert summary["parsing_errors"] == 0
    # Every module is scanned: a file that stopped parsing would lower this.
    assert summary["passed"] >= 150
    scanned = {check["file_path"].split("/")[2] for check in scan["results"]["passed_checks"]
               if check["file_path"].startswith("/modules/")}  # fmt: skip
    # checkov has no policy for the Atlas resources of modules/mongodb: its module is covered
    # by the parse (parsing_errors) and the interface test below only.
    assert scanned >= {"lake", "secrets", "eks", "iam", "kms_key"}


def test_each_skipped_check_gives_its_reason(scan):
    skipped = scan["results"]["skipped_checks"]
    assert skipped  # the skips below are deliberate; none may be silent
    for check in skipped:
        reason = check.get("check_result", {}).get("suppress_comment", "")
        assert len(reason) > 30, (check["check_id"], check["resource"], reason)


def test_no_iam_statement_names_a_wildcard_action():
    wildcard = re.compile(r'"[a-z0-9-]+:[A-Za-z]*\*"')
    offending = [
        f"{path.relative_to(TERRAFORM)}:{number}: {line.strip()}"
        for path in TERRAFORM.rglob("*.tf")
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if wildcard.search(line)
    ]
    assert not offending, offending


@pytest.mark.parametrize("module", MODULES, ids=lambda path: path.name)
def test_modules_declare_their_interface(module):
    """Each module has its variables and outputs, every one described."""
    for name in ("main.tf", "variables.tf", "outputs.tf"):
        assert (module / name).exists(), f"{module.name} has no {name}"
    for name in ("variables.tf", "outputs.tf"):
        text = (module / name).read_text()
        blocks = re.findall(r'^(?:variable|output) "([^"]+)" \{(.*?)^\}', text, re.M | re.S)
        assert blocks, f"{module.name}/{name} declares nothing"
        undescribed = [block for block, body in blocks if "description" not in body]
        assert not undescribed, f"{module.name}/{name}: {undescribed} have no description"


def test_the_roles_reach_the_compute_logs_where_the_instance_writes_them():
    """The instance writes each step's logs to S3 (`computeLogManager`); no role could reach
    that prefix, so no step's logs reached the UI once its pod was gone."""
    import yaml

    values = yaml.safe_load((ROOT / "deployments" / "k8s" / "values.yaml").read_text())
    prefix = values["computeLogManager"]["config"]["s3ComputeLogManager"]["prefix"]
    variables = (TERRAFORM / "modules" / "iam" / "variables.tf").read_text()
    block = variables.split('variable "compute_logs_prefix"')[1].split("}")[0]
    assert f'default     = "{prefix}"' in block
    policies = (TERRAFORM / "modules" / "iam" / "main.tf").read_text()
    pipeline = policies.split('"pipeline" {')[1].split('data "aws_iam_policy_document"')[0]
    dagster = policies.split('"dagster" {')[1].split("locals {")[0]
    assert '"s3:PutObject"' in pipeline.split('"WriteComputeLogs"')[1].split("}")[0]
    assert "local.compute_log_objects" in dagster and '"kms:Decrypt"' in dagster
