#!/usr/bin/env bash
# Installs what the dashboard's browser test (analytics_assets_tests/test_dashboard_browser.py)
# drives: Debian's Chromium (apt, only when /usr/bin/chromium is missing) and playwright-core
# pinned by package-lock.json (npm, into a cache folder outside git, reused while the lock
# file is unchanged). playwright-core downloads no browser of its own.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/../lib/apt.sh"
apt_install_if_missing '[ -x /usr/bin/chromium ]' chromium "install Chromium as /usr/bin/chromium"
dest=${BROWSER_TEST_HOME:-$HOME/.cache/analytics-assets/browser-test}
stamp="$dest/.installed-$(sha256sum "$here/package-lock.json" | cut -c1-16)"
if [ -f "$stamp" ]; then
  echo "playwright-core already installed in $dest"
  exit 0
fi
command -v npm >/dev/null || { echo "npm (Node.js 20) is required for the dashboard's browser test" >&2; exit 1; }
mkdir -p "$dest"
cp "$here/package.json" "$here/package-lock.json" "$dest/"
cd "$dest"
echo "Installing playwright-core into $dest ..."
npm ci --no-audit --no-fund --loglevel=error
touch "$stamp"
echo "playwright-core installed in $dest"
