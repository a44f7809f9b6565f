#!/usr/bin/env bash
# Installs what the dashboard's browser test (analytics_assets_tests/test_dashboard_browser.py)
# drives: Debian's Chromium (apt, only when /usr/bin/chromium is missing) and playwright-core
# pinned by package-lock.json (npm, into a cache folder outside git, reused while the lock
# file is unchanged). playwright-core downloads no browser of its own.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
if [ ! -x /usr/bin/chromium ]; then
  command -v apt-get >/dev/null || { echo "/usr/bin/chromium is missing and there is no apt-get: install Chromium" >&2; exit 1; }
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "Installing Debian's Chromium ..."
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
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
