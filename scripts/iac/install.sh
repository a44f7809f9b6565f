#!/usr/bin/env bash
# Installs checkov, which analytics_assets_tests/test_terraform.py scans deployments/terraform
# with, into a virtual environment of its own: its pins (boto3, networkx, ...) must not move
# the project's. No Terraform or OpenTofu binary installs from the registries this project
# reaches (the npm wrappers download one at run time), so `terraform validate` and `fmt` are
# not run here; checkov parses every file (HCL2) and evaluates its policies offline.
set -euo pipefail
VERSION=3.3.30
HOME_DIR="${ANALYTICS_TOOLS_HOME:-$HOME/.cache/analytics-assets}"
VENV="$HOME_DIR/checkov-venv"
if [ -x "$VENV/bin/checkov" ] && [ "$("$VENV/bin/checkov" --version 2>/dev/null)" = "$VERSION" ]; then
  echo "checkov $VERSION already installed: $VENV/bin/checkov"
  exit 0
fi
mkdir -p "$HOME_DIR"
python3 -m venv "$VENV"
"$VENV/bin/pip" install --quiet --disable-pip-version-check "checkov==$VERSION"
echo "checkov installed: $VENV/bin/checkov ($("$VENV/bin/checkov" --version))"
