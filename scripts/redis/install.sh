#!/usr/bin/env bash
# Installs Debian's redis-server (apt, only when it is missing): the Celery broker that
# analytics_assets_tests/test_celery.py starts on loopback. Production runs its own Redis.
set -euo pipefail
if command -v redis-server >/dev/null; then
  echo "redis-server already installed: $(command -v redis-server)"
  exit 0
fi
command -v apt-get >/dev/null || { echo "redis-server is missing and there is no apt-get: install Redis" >&2; exit 1; }
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "Installing Debian's redis-server ..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
echo "redis-server installed: $(command -v redis-server)"
