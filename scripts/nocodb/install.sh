#!/usr/bin/env bash
# Installs the real NocoDB server (npm nocodb@0.262.5, the last release for Node 20) that the
# tests and benchmarks start. It lives in a cache folder outside git and is reused while the
# lock file is unchanged.
#   - xlsx is overridden (package.json) because nocodb's own xlsx dependency is a tarball
#     URL outside the npm registry;
#   - --ignore-scripts skips a preinstall script that insists on pnpm;
#   - sqlite3 is then compiled from source, offline (a few minutes the first time).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dest=${NOCODB_HOME:-$HOME/.cache/analytics-assets/nocodb-0.262.5}
stamp="$dest/.installed-$(sha256sum "$here/package-lock.json" | cut -c1-16)"
if [ -f "$stamp" ]; then
  echo "NocoDB test server already installed in $dest"
  exit 0
fi
command -v npm >/dev/null || { echo "npm (Node.js 20) is required for the NocoDB test server" >&2; exit 1; }
mkdir -p "$dest"
cp "$here/package.json" "$here/package-lock.json" "$here/server.js" "$dest/"
cd "$dest"
echo "Installing the NocoDB test server into $dest ..."
npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
npm rebuild sqlite3 --loglevel=error
touch "$stamp"
echo "NocoDB test server installed in $dest"
