#!/usr/bin/env bash
# Installs what analytics_assets_tests/test_delivery.py validates docker-compose.yml with:
# Debian's docker-compose (apt, only when `docker-compose` is missing). `docker-compose config`
# needs no Docker engine; --no-install-recommends keeps the engine (docker.io) out.
set -euo pipefail
if command -v docker-compose >/dev/null; then
  echo "docker-compose already installed: $(command -v docker-compose)"
  exit 0
fi
command -v apt-get >/dev/null || { echo "docker-compose is missing and there is no apt-get: install docker-compose (1.29+) or Compose v2 as docker-compose" >&2; exit 1; }
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "Installing Debian's docker-compose ..."
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
echo "docker-compose installed: $(command -v docker-compose)"
